import Foundation

/// A blob being written: raw dump bytes pushed in piece by piece, hashed (`ContentHasher`) and
/// LZ4-compressed into a file of the store's `tmp/` folder as they come. The file gets a blob's
/// name only through `BlobStore.publish(_:replacing:)`, once every byte is in and its hash is
/// known. `BlobStore.store` pushes the bytes it reads; the coordinator's plain uploads push a
/// request body as it arrives. It holds no more than the encoder's block (4 MiB) and its output.
///
/// A writer dropped before it was published deletes its file, so every way out of a write that
/// failed (an error anywhere, a client that went away) leaves nothing behind.
public final class BlobWriter: @unchecked Sendable {
    /// The temporary file (`tmp/UUID.partial`).
    public let path: String
    private let file: AppendingFile
    private let encoder: LZ4FrameEncoder
    private var hasher = ContentHasher()
    /// Set by `finish()`.
    public private(set) var contentHash: String?
    var published = false

    init(folder: String) throws {
        path = "\(folder)/\(UUID().uuidString).partial"
        file = try AppendingFile(path: path)
        encoder = try LZ4FrameEncoder()
    }

    deinit {
        if !published { unlink(path) }
    }

    /// Raw bytes hashed and written so far.
    public var size: UInt64 { hasher.size }

    /// Adds raw dump bytes, in pieces of any size. A full disk throws `AppendingFile.Failure`
    /// with `isDiskFull`.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        hasher.update(bytes)
        let compressed = try encoder.compress(bytes)
        try compressed.withUnsafeBytes { try file.write($0) }
    }

    /// Ends the frame, puts the file's bytes on disk (fsync) and returns the content hash.
    @discardableResult
    public func finish() throws -> String {
        try encoder.finish().withUnsafeBytes { try file.write($0) }
        try BlobStore.sync(path)
        let contentHash = hasher.finalize()
        self.contentHash = contentHash
        return contentHash
    }
}
