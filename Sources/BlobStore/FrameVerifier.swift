import Foundation

/// Decodes an LZ4 frame as it arrives and hashes the bytes it holds, so an upload is verified
/// by the time its last byte is in, on a core of its own while the client is still sending.
/// Verification can also catch up from the file the frame is being written to (after a resumed
/// upload, or when nothing watched the bytes arrive).
public final class FrameVerifier: @unchecked Sendable {
    /// The uncompressed size announced; decoding more than this fails at once.
    public let expectedSize: UInt64
    /// Compressed bytes fed so far.
    public private(set) var consumed: UInt64 = 0
    /// Uncompressed bytes decoded so far.
    public private(set) var size: UInt64 = 0
    private let decoder: LZ4FrameDecoder
    private var hasher = ContentHasher()

    /// The frame decodes to more bytes than announced.
    public struct Overflow: Error, CustomStringConvertible {
        public var expectedSize: UInt64
        public var description: String { "the upload holds more than the \(expectedSize) bytes announced" }
    }

    public init(expectedSize: UInt64) throws {
        self.expectedSize = expectedSize
        decoder = try LZ4FrameDecoder()
    }

    public func feed(_ compressed: UnsafeRawBufferPointer) throws {
        try decoder.decompress(compressed) { bytes in
            size += UInt64(bytes.count)
            guard size <= expectedSize else { throw Overflow(expectedSize: expectedSize) }
            hasher.update(bytes)
        }
        consumed += UInt64(compressed.count)
    }

    /// Feeds the bytes of `file` from `consumed` up to `end`.
    public func catchUp(from file: String, upTo end: UInt64) throws {
        guard consumed < end else { return }
        guard let input = FileHandle(forReadingAtPath: file) else { throw BlobStore.Failure(description: "cannot open \(file)") }
        defer { try? input.close() }
        try input.seek(toOffset: consumed)
        while consumed < end {
            let data = try input.read(upToCount: Int(min(UInt64(BlobStore.chunkSize), end - consumed))) ?? Data()
            guard !data.isEmpty else { throw BlobStore.Failure(description: "\(file) ends at \(consumed), before \(end)") }
            try data.withUnsafeBytes { try feed($0) }
        }
    }

    /// Throws unless the frame ended properly and held exactly `expectedSize` bytes hashing to
    /// `contentHash`.
    public func check(contentHash: String) throws {
        guard decoder.finished else { throw BlobStore.Failure(description: "the upload's LZ4 frame is cut short after \(size) bytes") }
        guard size == expectedSize else { throw BlobStore.Failure(description: "the upload holds \(size) bytes, not the \(expectedSize) announced") }
        let actual = hasher.finalize()
        guard actual == contentHash else { throw BlobStore.Failure(description: "content hash mismatch: announced \(contentHash), the bytes hash to \(actual)") }
    }
}
