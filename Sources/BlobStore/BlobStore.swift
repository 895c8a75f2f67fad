import Crypto
import Foundation

/// Content-addressed dump files on a directory (local disk or a shared mount): each blob is
/// the LZ4 frame of a dump, named by the content hash of the uncompressed bytes (`ContentHasher`)
/// (`ab/abcdef….lz4`). A blob is written to a temporary name and renamed only once its hash is
/// known to be right, so a crash mid-upload never leaves a name pointing at partial bytes.
/// Nothing here holds a whole dump in memory: bytes stream through in chunks.
public struct BlobStore: Sendable {
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// Writing the decompressed dump failed (the destination's disk is full, say): the
    /// destination's trouble, not the blob's.
    public struct OutputFailure: Error, CustomStringConvertible {
        public var code: Int32
        public var path: String
        public var description: String { "cannot write \(path): \(String(cString: strerror(code)))" }
        public var isDiskFull: Bool { code == ENOSPC || code == EDQUOT }
    }

    /// A blob's bytes are not what its name says: the frame is cut short, or they hash to
    /// another content hash. (A frame that does not decode at all throws `LZ4Error`.)
    public struct Damage: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public let root: URL
    /// Bytes per read; 4 MiB keeps the LZ4 blocks full.
    public static let chunkSize = 4 << 20

    public init(root: String) throws {
        self.root = URL(fileURLWithPath: root)
        try FileManager.default.createDirectory(at: self.root.appendingPathComponent("tmp"), withIntermediateDirectories: true)
    }

    /// A content hash: 64 lower-case hex digits, and nothing else (names come from outside).
    public static func validate(_ contentHash: String) throws {
        guard contentHash.count == 64, contentHash.allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) }) else {
            throw Failure(description: "not a content hash (64 lower-case hex digits): \"\(contentHash.prefix(80))\"")
        }
    }

    public func path(of contentHash: String) throws -> URL {
        URL(fileURLWithPath: try Self.path(of: contentHash, in: root.path))
    }

    /// Where the blob `contentHash` lives in the store at `root`, without touching the store
    /// (a worker reading a shared mount must not create anything in it).
    public static func path(of contentHash: String, in root: String) throws -> String {
        try validate(contentHash)
        return "\(root)/\(contentHash.prefix(2))/\(contentHash).lz4"
    }

    /// Whether `root` looks like a blob store the coordinator made (it has the `tmp` folder
    /// the coordinator creates): a wrong path, or a mount point with nothing mounted, does not.
    public static func looksLikeStore(_ root: String) -> Bool {
        var isFolder: ObjCBool = false
        return FileManager.default.fileExists(atPath: root + "/tmp", isDirectory: &isFolder) && isFolder.boolValue
    }

    /// Bytes free for an unprivileged writer on the store's filesystem, or nil when it cannot be told.
    public func freeBytes() -> UInt64? {
        var status = statvfs()
        guard statvfs(root.path, &status) == 0 else { return nil }
        return UInt64(status.f_bavail) * UInt64(status.f_frsize)
    }

    public func contains(_ contentHash: String) -> Bool {
        (try? path(of: contentHash)).map { FileManager.default.fileExists(atPath: $0.path) } ?? false
    }

    /// Stores the raw dump bytes that `read` yields chunk by chunk (nil at the end), hashing and
    /// compressing as they come. When `expected` is given and the bytes hash differently,
    /// nothing is kept. Returns the hash and the raw size.
    public func store(expected: String? = nil, _ read: () throws -> [UInt8]?) throws -> (contentHash: String, size: UInt64) {
        if let expected { try Self.validate(expected) }
        let writer = try self.writer()
        while let chunk = try read() {
            try chunk.withUnsafeBytes { try writer.write($0) }
        }
        let contentHash = try writer.finish()
        if let expected, expected != contentHash {
            throw Failure(description: "content hash mismatch: expected \(expected), got \(contentHash)")
        }
        try publish(writer, replacing: false)
        return (contentHash, writer.size)
    }

    /// A new blob to push raw dump bytes into (see `BlobWriter`).
    public func writer() throws -> BlobWriter {
        try BlobWriter(folder: root.appendingPathComponent("tmp").path)
    }

    /// Deletes the files of `tmp/` that nothing wrote to for `seconds`: blobs a process was
    /// writing when it was killed (a writer that fails or is dropped deletes its own). Returns
    /// how many went.
    @discardableResult
    public func removeAbandonedWrites(idleFor seconds: Double) -> Int {
        let folder = root.appendingPathComponent("tmp").path
        let cutoff = Date().addingTimeInterval(-seconds)
        var removed = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasSuffix(".partial") {
            let path = "\(folder)/\(name)"
            guard let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date, modified < cutoff else { continue }
            if unlink(path) == 0 { removed += 1 }
        }
        return removed
    }

    /// Stores a file, reading it chunk by chunk.
    public func store(file: String, expected: String? = nil) throws -> (contentHash: String, size: UInt64) {
        guard let input = FileHandle(forReadingAtPath: file) else { throw Failure(description: "cannot open \(file)") }
        defer { try? input.close() }
        return try store(expected: expected) {
            let data = try input.read(upToCount: Self.chunkSize) ?? Data()
            return data.isEmpty ? nil : [UInt8](data)
        }
    }

    /// The files of upload session `id` (a UUID, in any case: the files are named by its
    /// lower-case form, as PostgreSQL prints it).
    public func incoming(session id: String) throws -> IncomingUpload {
        guard let uuid = UUID(uuidString: id) else { throw Failure(description: "not an upload session id: \"\(id.prefix(80))\"") }
        let folder = root.appendingPathComponent("incoming")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return IncomingUpload(folder: folder.path, session: uuid.uuidString.lowercased())
    }

    /// Moves the verified frame of `upload` into the store under `contentHash` (see
    /// `publish(file:contentHash:replacing:)`).
    public func publish(_ upload: IncomingUpload, contentHash: String, replacing: Bool) throws {
        try publish(file: upload.part, contentHash: contentHash, replacing: replacing)
    }

    /// Moves the finished blob of `writer` into the store under its content hash (see
    /// `publish(file:contentHash:replacing:)`).
    public func publish(_ writer: BlobWriter, replacing: Bool) throws {
        guard let contentHash = writer.contentHash else { throw Failure(description: "a blob was published before it was finished") }
        try publish(file: writer.path, contentHash: contentHash, replacing: replacing)
        writer.published = true
    }

    /// Moves a verified LZ4 frame at `file` into the store under `contentHash`. A blob the store
    /// has already is kept and the new copy dropped, unless `replacing` (the stored copy was
    /// found damaged): then the old file goes to `quarantine/` first. The bytes and the new name
    /// are on disk (fsync) before this returns, since the database then records the dump as
    /// stored and a power cut must not leave it a short file.
    func publish(file: String, contentHash: String, replacing: Bool) throws {
        let final = try path(of: contentHash)
        try FileManager.default.createDirectory(at: final.deletingLastPathComponent(), withIntermediateDirectories: true)
        if FileManager.default.fileExists(atPath: final.path) {
            guard replacing else {
                try? FileManager.default.removeItem(atPath: file)
                return
            }
            _ = try quarantine(contentHash)
        }
        try Self.sync(file)
        guard rename(file, final.path) == 0 else {
            throw Failure(description: "cannot move the upload into the store: \(String(cString: strerror(errno)))")
        }
        try Self.sync(final.deletingLastPathComponent().path)
    }

    /// fsync(2) of a file or a folder (a folder's, so that a rename in it lasts).
    static func sync(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: "cannot open for fsync: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw Failure(description: "fsync failed: \(String(cString: strerror(errno)))") }
    }

    /// Moves a stored blob that failed verification out of the store, into `quarantine/` under
    /// its hash and the time, for an operator to look at; returns where it went (nil when there
    /// was no such blob).
    @discardableResult
    public func quarantine(_ contentHash: String) throws -> String? {
        let blob = try path(of: contentHash)
        guard FileManager.default.fileExists(atPath: blob.path) else { return nil }
        let folder = root.appendingPathComponent("quarantine")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let target = folder.appendingPathComponent("\(contentHash)-\(Int(Date().timeIntervalSince1970)).lz4").path
        guard rename(blob.path, target) == 0 else {
            throw Failure(description: "cannot move blob \(contentHash) to quarantine: \(String(cString: strerror(errno)))")
        }
        return target
    }

    /// Decompresses a blob of this store into `destination` (see `extract(blobAt:contentHash:to:)`).
    public func extract(_ contentHash: String, to destination: String) throws -> UInt64 {
        try Self.extract(blobAt: try path(of: contentHash).path, contentHash: contentHash, to: destination)
    }

    /// Decompresses the blob file at `blob` into `destination` as a sparse file: pages of zeros
    /// are skipped, so a 16 GiB dump that is mostly zeros takes little scratch space. Verifies
    /// the hash; returns the size.
    public static func extract(blobAt blob: String, contentHash: String, to destination: String) throws -> UInt64 {
        let fd = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw OutputFailure(code: errno, path: destination) }
        defer { close(fd) }
        let zeroPage = [UInt8](repeating: 0, count: 4096)
        var offset: UInt64 = 0
        let (actual, size) = try decode(blobAt: blob) { bytes in
            var start = 0
            while start < bytes.count {
                let length = min(4096, bytes.count - start)
                let page = UnsafeRawBufferPointer(rebasing: bytes[start..<start + length])
                if length < 4096 || memcmp(page.baseAddress!, zeroPage, 4096) != 0 {
                    var written = 0
                    while written < length {
                        let result = pwrite(fd, page.baseAddress! + written, length - written, off_t(offset) + off_t(start + written))
                        guard result > 0 else { throw OutputFailure(code: result == 0 ? EIO : errno, path: destination) }
                        written += result
                    }
                }
                start += length
            }
            offset += UInt64(bytes.count)
        }
        guard ftruncate(fd, off_t(size)) == 0 else { throw OutputFailure(code: errno, path: destination) }
        guard actual == contentHash else { throw Damage(description: "blob \(contentHash) holds bytes hashing to \(actual)") }
        return size
    }

    /// Streams the decompressed bytes of the LZ4 frame in `blob` through `output`, hashing
    /// them; throws when the frame is damaged or cut short.
    static func decode(blobAt blob: String, _ output: (UnsafeRawBufferPointer) throws -> Void) throws -> (contentHash: String, size: UInt64) {
        guard let input = FileHandle(forReadingAtPath: blob) else { throw Failure(description: "cannot open \(blob)") }
        defer { try? input.close() }
        let decoder = try LZ4FrameDecoder()
        var hasher = ContentHasher()
        var size: UInt64 = 0
        while let data = try input.read(upToCount: chunkSize), !data.isEmpty {
            try [UInt8](data).withUnsafeBytes { compressed in
                try decoder.decompress(compressed) { bytes in
                    hasher.update(bytes)
                    size += UInt64(bytes.count)
                    try output(bytes)
                }
            }
        }
        guard decoder.finished else { throw Damage(description: "the LZ4 frame in \(blob) is cut short") }
        return (hasher.finalize(), size)
    }
}
