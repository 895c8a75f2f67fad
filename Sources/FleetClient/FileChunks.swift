import BlobStore
import Foundation
import NIOCore

/// Reads a file front to back in 4 MiB pieces into one reused buffer.
final class ChunkReader {
    let path: String
    private let fd: Int32
    private var buffer: [UInt8]
    private(set) var offset: UInt64 = 0

    init(path: String, chunkSize: Int = BlobStore.chunkSize) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FleetClient.Failure(status: 0, message: "cannot open \(path): \(String(cString: strerror(errno)))") }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        buffer = [UInt8](repeating: 0, count: chunkSize)
    }

    deinit { close(fd) }

    /// Calls `body` with the next piece; returns false at the end of the file.
    func next(_ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        let count = buffer.count
        let read = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, count, off_t(offset)) }
        guard read >= 0 else { throw FleetClient.Failure(status: 0, message: "cannot read \(path): \(String(cString: strerror(errno)))") }
        if read == 0 { return false }
        offset += UInt64(read)
        try buffer.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0..<read])) }
        return true
    }
}

/// A file's LZ4 frame as a stream of buffers, produced as the HTTP client asks for them (so a
/// slow network slows the reading instead of filling memory). The first `skip` compressed bytes
/// are dropped: the frame is deterministic for the same bytes, so a resumed upload sends
/// exactly the bytes the server lacks.
public struct CompressedFileChunks: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer
    let path: String
    let skip: UInt64
    /// Called with the uncompressed bytes read so far.
    let progress: @Sendable (UInt64) -> Void

    public init(path: String, skip: UInt64, progress: @escaping @Sendable (UInt64) -> Void) {
        self.path = path
        self.skip = skip
        self.progress = progress
    }

    public func makeAsyncIterator() -> Iterator { Iterator(path: path, skip: skip, progress: progress) }

    public struct Iterator: AsyncIteratorProtocol {
        let path: String
        var skip: UInt64
        let progress: @Sendable (UInt64) -> Void
        var reader: ChunkReader?
        var encoder: LZ4FrameEncoder?
        var finished = false

        init(path: String, skip: UInt64, progress: @escaping @Sendable (UInt64) -> Void) {
            self.path = path
            self.skip = skip
            self.progress = progress
        }

        public mutating func next() async throws -> ByteBuffer? {
            if reader == nil {
                reader = try ChunkReader(path: path)
                encoder = try LZ4FrameEncoder()
            }
            guard let reader, let encoder else { return nil }
            while !finished {
                var produced: ByteBuffer?
                var compressed: ArraySlice<UInt8> = []
                let more = try reader.next { compressed = try encoder.compress($0) }
                if !more {
                    finished = true
                    compressed = ArraySlice(try encoder.finish())
                } else {
                    progress(reader.offset)
                }
                produced = dropSkipped(compressed)
                if let produced { return produced }
            }
            return nil
        }

        /// What is left of `bytes` once the bytes to skip are dropped; nil when nothing is.
        mutating func dropSkipped(_ bytes: ArraySlice<UInt8>) -> ByteBuffer? {
            var bytes = bytes
            if skip > 0 {
                let dropped = Int(Swift.min(skip, UInt64(bytes.count)))
                bytes = bytes.dropFirst(dropped)
                skip -= UInt64(dropped)
            }
            return bytes.isEmpty ? nil : ByteBuffer(bytes: bytes)
        }
    }
}
