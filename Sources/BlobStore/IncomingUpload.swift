import Foundation

/// The files of one upload session while its bytes arrive, in the blob store's `incoming/`
/// folder, each named by the session id (a UUID in lower case):
///
/// - `ID.part`: the LZ4 frame as received so far. It is only ever appended to, by one request
///   at a time, and leaves this folder by rename when it moves into the store.
/// - `ID.checkpoint`: how far its verification got (`FrameVerifier.checkpoint()`), so that the
///   next request, or the next coordinator process, goes on from there instead of decoding the
///   whole file again.
/// - `ID.publishing`: written once the frame verified and before it moves into the store; it
///   holds the frame's length. While it exists the bytes are known good, so a `finish` whose
///   database write failed after the move can be repeated without them.
public struct IncomingUpload: Sendable {
    public let session: String
    public let part: String
    public let checkpoint: String
    public let publishing: String

    init(folder: String, session: String) {
        self.session = session
        part = "\(folder)/\(session).part"
        checkpoint = "\(folder)/\(session).checkpoint"
        publishing = "\(folder)/\(session).publishing"
    }

    /// Compressed bytes received so far (for a session that is publishing, the whole frame,
    /// though it may have moved into the store already).
    public var received: UInt64 {
        var status = stat()
        if stat(part, &status) == 0 { return UInt64(status.st_size) }
        guard let marker = FileManager.default.contents(atPath: publishing) else { return 0 }
        return UInt64(String(decoding: marker, as: UTF8.self)) ?? 0
    }

    public var hasBytes: Bool { FileManager.default.fileExists(atPath: part) }
    public var isPublishing: Bool { FileManager.default.fileExists(atPath: publishing) }

    /// A verifier at the saved checkpoint, or at the start when there is none (or it is unsound).
    public func verifier(expectedSize: UInt64) -> FrameVerifier {
        if let data = FileManager.default.contents(atPath: checkpoint),
           let resumed = FrameVerifier(checkpoint: [UInt8](data), expectedSize: expectedSize) {
            return resumed
        }
        return FrameVerifier(expectedSize: expectedSize)
    }

    /// Checks what the file holds beyond where `verifier` stands, at most `budget` compressed
    /// bytes of it; returns the bytes read (0 once it is caught up with the file).
    @discardableResult
    public func catchUp(_ verifier: FrameVerifier, budget: UInt64) throws -> UInt64 {
        let fd = open(part, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return 0 }
            throw BlobStore.Failure(description: "cannot open upload \(session): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw BlobStore.Failure(description: "cannot stat upload \(session)") }
        let before = verifier.consumed
        try verifier.advance(fd, upTo: UInt64(status.st_size), budget: budget)
        return verifier.consumed - before
    }

    /// Saves the verifier's checkpoint, atomically (a new file renamed over the old).
    public func save(_ verifier: FrameVerifier) throws {
        let temporary = checkpoint + ".new"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(verifier.checkpoint())),
              rename(temporary, checkpoint) == 0 else {
            throw BlobStore.Failure(description: "cannot save the checkpoint of upload \(session): \(String(cString: strerror(errno)))")
        }
    }

    /// Opens the frame file for appending (creating it).
    public func appending() throws -> AppendingFile { try AppendingFile(path: part) }

    /// Marks the frame (of `length` bytes) as checked whole, before it moves into the store;
    /// the mark is on disk (fsync) when this returns.
    public func markPublishing(length: UInt64) throws {
        guard FileManager.default.createFile(atPath: publishing, contents: Data(String(length).utf8)) else {
            throw BlobStore.Failure(description: "cannot mark upload \(session) as publishing")
        }
        try BlobStore.sync(publishing)
        try BlobStore.sync(URL(fileURLWithPath: publishing).deletingLastPathComponent().path)
    }

    /// Removes every file of the session.
    public func remove() {
        for path in [part, checkpoint, checkpoint + ".new", publishing] { unlink(path) }
    }

    /// The sessions that have files in `incoming/`, with the newest modification time among them.
    public static func sessions(in store: BlobStore) -> [String: Date] {
        let folder = store.root.appendingPathComponent("incoming").path
        var found: [String: Date] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] {
            guard let id = name.split(separator: ".").first.map(String.init), UUID(uuidString: id) != nil else { continue }
            let modified = (try? FileManager.default.attributesOfItem(atPath: "\(folder)/\(name)"))?[.modificationDate] as? Date ?? .distantPast
            found[id] = max(found[id] ?? .distantPast, modified)
        }
        return found
    }
}

/// A file opened for appending, written with write(2); `descriptor` also reads it (pread), so
/// the verifier reads back what was just written through the same descriptor.
public final class AppendingFile: @unchecked Sendable {
    /// A write(2) or open(2) that failed, with its errno: the coordinator answers a full disk
    /// (ENOSPC, EDQUOT) differently from other failures.
    public struct Failure: Error, CustomStringConvertible {
        public var code: Int32
        public var description: String { "cannot write an upload: \(String(cString: strerror(code)))" }
        public var isDiskFull: Bool { code == ENOSPC || code == EDQUOT }
    }

    private let fd: Int32
    public var descriptor: Int32 { fd }

    init(path: String) throws {
        fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(code: errno) }
    }

    deinit { close(fd) }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let result = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else { throw Failure(code: result == 0 ? EIO : errno) }
            done += result
        }
    }
}
