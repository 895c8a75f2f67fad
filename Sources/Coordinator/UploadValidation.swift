import BlobStore
import DumpFormat
import FleetAPI

/// What an announcement may say, and how a plain upload's body must begin. Names (VM, host,
/// file name, tags) are labels shown in lists and pages and kept in indexed columns, never paths.
enum UploadValidation {
    /// Bytes of UTF-8 a name may have: a btree index row holds about 2,700, so 255 bytes is
    /// far inside it whatever the script (a 255-character limit let a 10 KB name through
    /// when the characters were wide).
    static let maxNameBytes = 255

    static func check(_ announcement: UploadAnnouncement, maxUploadBytes: UInt64) throws {
        do { try BlobStore.validate(announcement.contentHash) } catch { throw APIFailure(.badRequest, "\(error)") }
        guard announcement.size > 0 else { throw APIFailure(.badRequest, "an empty file is not a dump") }
        guard announcement.size <= maxUploadBytes else {
            throw APIFailure(.contentTooLarge, "the dump is \(announcement.size) bytes; this coordinator accepts at most \(maxUploadBytes)")
        }
        try checkLabels(announcement)
    }

    /// The announcement's names: VM (required), host, file name and tags.
    static func checkLabels(_ announcement: UploadAnnouncement) throws {
        try checkName(announcement.vm, what: "vm", allowEmpty: false)
        try checkName(announcement.host ?? "", what: "host", allowEmpty: true)
        try checkName(announcement.fileName ?? "", what: "fileName", allowEmpty: true)
        guard announcement.tags.count <= 32 else { throw APIFailure(.badRequest, "at most 32 tags") }
        for (key, value) in announcement.tags {
            try checkName(key, what: "tag name", allowEmpty: false)
            try checkName(value, what: "tag value", allowEmpty: true)
        }
    }

    /// How much of a plain upload's body is looked at before anything of it is stored: the
    /// 64-bit dump header.
    static let dumpStartBytes = Int(DumpHeader64.size)

    /// Throws (422) unless `start`, the first `dumpStartBytes` of a body (or all of a shorter
    /// one), begins as `KernelDump(source:)` takes a dump to begin: a QEMU ELF core, a
    /// kdump-compressed file (in place or flattened), or a dump header that `DumpHeader64`
    /// parses. A 32-bit dump, a user-mode minidump or any other file is refused with the
    /// parser's reason.
    static func checkDumpStart(_ start: [UInt8]) throws {
        let source = ByteSource(copying: start)
        if ElfCore.looksLikeElfCore(source) || KdumpFile.looksLikeKdump(source) { return }
        do {
            _ = try DumpHeader64(parsing: source)
        } catch {
            throw APIFailure(.unprocessableContent, "the body is not a dump a worker can read: \(error)")
        }
    }

    /// At most `maxNameBytes` bytes of UTF-8, and only characters that show as themselves:
    /// no control characters, no invisible format characters (zero-width spaces and joiners,
    /// bidirectional overrides and isolates, which make one name look like another or reorder
    /// a page), no line or paragraph separators, no private-use, unassigned or surrogate code
    /// points, and no spaces at either end.
    static func checkName(_ text: String, what: String, allowEmpty: Bool) throws {
        guard allowEmpty || !text.isEmpty else { throw APIFailure(.badRequest, "\(what) is empty") }
        guard text.utf8.count <= maxNameBytes else {
            throw APIFailure(.badRequest, "\(what) is \(text.utf8.count) bytes of UTF-8; at most \(maxNameBytes) are allowed")
        }
        if let scalar = text.unicodeScalars.first(where: isHidden) {
            throw APIFailure(.badRequest, "\(what) holds U+\(String(scalar.value, radix: 16, uppercase: true)), a character that does not show as itself")
        }
        if let first = text.unicodeScalars.first, let last = text.unicodeScalars.last,
           first.properties.isWhitespace || last.properties.isWhitespace {
            throw APIFailure(.badRequest, "\(what) begins or ends with a space")
        }
    }

    static func isHidden(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .privateUse, .unassigned, .surrogate: true
        default: false
        }
    }
}
