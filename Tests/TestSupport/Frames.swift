import FleetClient
import Foundation
import NIOCore

/// LZ4 frames as the uploader sends them, whole in memory, and fed back as a request body in
/// pieces: for tests and benchmarks that drive the upload protocol by hand.
public enum Frames {
    /// The frame `dumpfleet upload` would send for the file at `path`.
    public static func of(_ path: String) async throws -> [UInt8] {
        var frame: [UInt8] = []
        for try await chunk in CompressedFileChunks(path: path, skip: 0, progress: { _ in }) { frame += chunk.readableBytesView }
        return frame
    }

    /// `bytes` as a request body, 64 KiB at a time.
    public static func stream(_ bytes: ArraySlice<UInt8>) -> AsyncStream<ByteBuffer> {
        AsyncStream { continuation in
            var rest = bytes
            while !rest.isEmpty {
                continuation.yield(ByteBuffer(bytes: rest.prefix(65536)))
                rest = rest.dropFirst(65536)
            }
            continuation.finish()
        }
    }

    public static func stream(_ bytes: [UInt8]) -> AsyncStream<ByteBuffer> { stream(bytes[...]) }
}
