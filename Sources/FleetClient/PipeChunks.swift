import Foundation
import Glibc
import NIOCore

/// The read end of a pipe another process writes a dump into, as a request body
/// (`FleetClient.putPlain`): each `next` returns what one read gives, up to 1 MiB, so a slow
/// network slows the writer instead of filling memory.
///
/// `close()` may come from another task at any time (the request failed, the writer is to stop):
/// the descriptor is closed at once, or right after a read under way returns, never under
/// it. Once it is closed the writer's next write fails (EPIPE) instead of blocking on a full pipe.
public final class PipeChunks: AsyncSequence, @unchecked Sendable {
    public typealias Element = ByteBuffer

    /// Why the body stopped: the pipe was closed under it, or a read failed.
    public struct ReadFailure: Error, CustomStringConvertible {
        public var description: String
    }

    private let lock = NSLock()
    private var fd: Int32
    private var reading = false
    private var closing = false
    private var count: UInt64 = 0
    /// Called at the end of the pipe, before the body ends: throwing aborts the request, for
    /// a writer that closed its end without finishing.
    private let atEnd: @Sendable () async throws -> Void

    /// Takes `fd` over: it is closed by `close()` or when this is released.
    public init(reading fd: Int32, atEnd: @escaping @Sendable () async throws -> Void) {
        self.fd = fd
        self.atEnd = atEnd
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    /// Bytes read so far.
    public var bytesRead: UInt64 {
        lock.withLock { count }
    }

    public func close() {
        lock.withLock {
            closing = true
            if !reading, fd >= 0 {
                Glibc.close(fd)
                fd = -1
            }
        }
    }

    public func makeAsyncIterator() -> Iterator { Iterator(pipe: self) }

    public struct Iterator: AsyncIteratorProtocol {
        let pipe: PipeChunks
        var ended = false

        public mutating func next() async throws -> ByteBuffer? {
            guard !ended else { return nil }
            var buffer = ByteBufferAllocator().buffer(capacity: 1 << 20)
            if try pipe.read(into: &buffer) > 0 { return buffer }
            ended = true
            try await pipe.atEnd()
            return nil
        }
    }

    /// One read(2) into `buffer`; 0 at the end of the pipe.
    private func read(into buffer: inout ByteBuffer) throws -> Int {
        let fd: Int32 = try lock.withLock {
            guard !closing else { throw ReadFailure(description: "the pipe was closed") }
            reading = true
            return self.fd
        }
        var result = 0
        var failure: Int32 = 0
        repeat {
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 1 << 20) { bytes in
                result = Glibc.read(fd, bytes.baseAddress, bytes.count)
                failure = errno
                return Swift.max(result, 0)
            }
        } while result < 0 && failure == EINTR
        lock.withLock {
            reading = false
            if result > 0 { count += UInt64(result) }
            if closing, self.fd >= 0 {
                Glibc.close(self.fd)
                self.fd = -1
            }
        }
        guard result >= 0 else { throw ReadFailure(description: "cannot read the pipe: \(String(cString: strerror(failure)))") }
        return result
    }
}
