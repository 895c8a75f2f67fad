import DumpFile
import DumpFormat
import Foundation

/// A file in a watched folder, as `capture --watch` judges it: what it holds, whether it is
/// complete, and which VM it came from.
struct CoreFile: Hashable {
    let path: String
    let name: String

    /// What the file's first bytes say it is.
    enum Kind {
        case elfCore, kdump, flattenedKdump, windowsDump, other
    }

    /// Name, size and modification time: a core that is rewritten or grows is a new one.
    struct Identity: Hashable {
        var name: String
        var size: UInt64
        var modified: Int64  // nanoseconds since 1970
    }

    var identity: Identity? {
        var facts = stat()
        guard stat(path, &facts) == 0, (facts.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Identity(name: name, size: UInt64(facts.st_size), modified: Int64(facts.st_mtim.tv_sec) * 1_000_000_000 + Int64(facts.st_mtim.tv_nsec))
    }

    var kind: Kind {
        let head = read(at: 0, count: 8)
        if head.starts(with: [0x7F, 0x45, 0x4C, 0x46]) { return .elfCore }  // "\u{7F}ELF"
        let text = String(decoding: head, as: UTF8.self)
        if text == "KDUMP   " { return .kdump }
        if text == "makedump" { return .flattenedKdump }  // "makedumpfile": QEMU's kdump-zlib/lzo/snappy, flattened
        if text == "PAGEDU64" || text == "PAGEDUMP" || text.hasPrefix("MDMP") { return .windowsDump }
        return .other
    }

    /// For an ELF core, whether every memory segment its program headers describe lies in the
    /// file, as the parser reads them. QEMU writes the headers first and the memory after them,
    /// so a core still being written (or cut short) ends before its last segment does.
    var elfSegmentsAreComplete: Bool {
        guard let source = try? MappedFile.open(path), let core = try? ElfCore(parsing: source) else { return false }
        return core.segments.allSatisfy { source.contains(offset: $0.fileOffset, length: $0.fileSize) }
    }

    /// For a flattened kdump file, whether its stream ends with the end marker, (-1, -1) in
    /// big-endian: the writer's last act.
    var flattenedKdumpIsComplete: Bool {
        guard let size = identity?.size, size >= 16 else { return false }
        return read(at: size - 16, count: 16) == [UInt8](repeating: 0xFF, count: 16)
    }

    /// For a kdump file, in place or flattened, whether every stored page's bytes are in it, as
    /// the parser reads the file: the page data comes last, and its furthest page (not always
    /// the last PFN's: zero pages share one copy, written first) is the last thing written.
    var kdumpPagesAreComplete: Bool {
        guard let source = try? MappedFile.open(path), let file = try? KdumpFile(parsing: source) else { return false }
        let stored = file.storedBitmap.reduce(0) { $0 + UInt64($1.nonzeroBitCount) }
        var furthest: KdumpFile.PageDescriptor?
        for index in 0..<stored {
            guard let page = try? file.descriptor(index) else { return false }
            if furthest.map({ page.offset > $0.offset }) ?? true { furthest = page }
        }
        return furthest.map { (try? file.storedBytes($0)) != nil } ?? true
    }

    /// The VM, from libvirt's name for an automatic dump: `ID-NAME-YYYY-MM-DD-HH:MM:SS` (the
    /// domain's id and its name cut to 20 characters). Any other name is taken whole, without
    /// its extension.
    var vm: String {
        let stamp = #"-[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}:[0-9]{2}:[0-9]{2}$"#
        if let range = name.range(of: stamp, options: .regularExpression) {
            let rest = name[..<range.lowerBound]
            if let id = rest.range(of: #"^[0-9]+-"#, options: .regularExpression), id.upperBound < rest.endIndex { return String(rest[id.upperBound...]) }
            return String(rest)
        }
        let base = (name as NSString).deletingPathExtension
        return base.isEmpty ? name : base
    }

    private func read(at offset: UInt64, count: Int) -> [UInt8] {
        guard count > 0, offset < UInt64(Int64.max) else { return [] }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: count)
        let got = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, off_t(offset)) }
        return got > 0 ? Array(bytes[..<got]) : []
    }

    /// Files under `folder` that some process holds open for writing, with that process's id,
    /// from /proc (a process this user may not inspect is not seen: run the watcher as root).
    static func openForWriting(in folder: String) -> [String: Int32] {
        let manager = FileManager.default
        let prefix = (URL(fileURLWithPath: folder).resolvingSymlinksInPath().path) + "/"
        var writers: [String: Int32] = [:]
        for entry in (try? manager.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let descriptors = try? manager.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
            for descriptor in descriptors {
                guard let target = try? manager.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(descriptor)"), target.hasPrefix(prefix),
                      let info = try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(descriptor)", encoding: .utf8),
                      let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags:") })?.split(separator: "\t").last.flatMap({ Int32($0, radix: 8) })
                else { continue }
                if flags & O_ACCMODE != O_RDONLY { writers[target] = pid }
            }
        }
        return writers
    }
}
