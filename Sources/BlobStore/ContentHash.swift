import Crypto
import Dispatch
import Foundation

/// The name of a dump's content: SHA-256 over the concatenated SHA-256 digests of its 4 MiB
/// blocks (the last block may be shorter), written as 64 hex digits. This is the scheme of
/// Dropbox's `content_hash`.
///
/// Why not the SHA-256 of the whole file: that is one sequential chain at about 1.6 GB/s on one
/// core, and it runs twice per upload (the client hashes to ask whether the server has the dump
/// at all, the server checks what arrived). Block digests run on every core, and a block of
/// zeros, which is most of a full dump of a mostly idle VM, has a digest known in advance: a
/// scan at memory speed replaces the hashing. It is as collision-resistant as SHA-256.
public struct ContentHasher {
    public static let blockSize = 4 << 20

    /// The digest of a block of `blockSize` zeros.
    static let zeroBlockDigest: [UInt8] = Array(SHA256.hash(data: UnsafeRawBufferPointer(start: zeroBlock, count: blockSize)))
    /// A block of zeros to compare with; calloc'd and never written, so it costs no memory
    /// beyond the kernel's shared zero page.
    nonisolated(unsafe) static let zeroBlock: UnsafeMutableRawPointer = calloc(1, blockSize)!

    private var digests: [UInt8] = []
    /// The block being hashed, streamed rather than buffered (a buffered block cost every
    /// upload in progress 4 MiB): its length so far, and its SHA-256 once a non-zero byte came.
    /// While a block holds only zeros nothing is hashed: a whole zero block takes the known
    /// digest, a short one is hashed from the zero page when it ends.
    private var blockLength = 0
    private var blockHasher: SHA256?
    /// Bytes hashed so far.
    public private(set) var size: UInt64 = 0

    public init() {}

    /// Adds bytes, in pieces of any size.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        size += UInt64(bytes.count)
        var offset = 0
        while offset < bytes.count {
            if blockLength == 0 && bytes.count - offset >= Self.blockSize {
                digests += Self.digest(ofBlock: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + Self.blockSize]))
                offset += Self.blockSize
                continue
            }
            let taken = min(Self.blockSize - blockLength, bytes.count - offset)
            let piece = UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + taken])
            if blockHasher == nil && memcmp(piece.baseAddress!, Self.zeroBlock, taken) != 0 {
                var hasher = SHA256()
                hasher.update(bufferPointer: UnsafeRawBufferPointer(start: Self.zeroBlock, count: blockLength))
                blockHasher = hasher
            }
            blockHasher?.update(bufferPointer: piece)
            blockLength += taken
            offset += taken
            if blockLength == Self.blockSize { endBlock() }
        }
    }

    private mutating func endBlock() {
        if let hasher = blockHasher {
            digests += hasher.finalize()
        } else if blockLength == Self.blockSize {
            digests += Self.zeroBlockDigest
        } else {
            digests += SHA256.hash(data: UnsafeRawBufferPointer(start: Self.zeroBlock, count: blockLength))
        }
        blockLength = 0
        blockHasher = nil
    }

    /// Whether the bytes so far end on a block boundary, so that the block digests and the
    /// size say all there is to say (what `FrameVerifier` saves in a checkpoint).
    var isAtBlockBoundary: Bool { blockLength == 0 }

    /// The digests of the whole blocks so far, 32 bytes each.
    var blockDigests: [UInt8] { digests }

    /// Adds whole blocks whose digests were computed elsewhere (in parallel, or before a
    /// checkpoint); only valid on a block boundary.
    mutating func append(blockDigests: [UInt8], bytes: UInt64) {
        precondition(blockLength == 0, "block digests appended after a partial block")
        digests += blockDigests
        size += bytes
    }

    /// The content hash: 64 lower-case hex digits.
    public mutating func finalize() -> String {
        if blockLength > 0 { endBlock() }
        return SHA256.hash(data: digests).map { String(format: "%02x", $0) }.joined()
    }

    static func digest(ofBlock block: UnsafeRawBufferPointer) -> [UInt8] {
        if block.count == blockSize && memcmp(block.baseAddress!, zeroBlock, blockSize) == 0 { return zeroBlockDigest }
        return Array(SHA256.hash(data: block))
    }

    /// The content hash and size of a file, its blocks hashed on `threads` threads. Blocks that
    /// lie in a hole of a sparse file (SEEK_DATA finds no data in them) are zeros without being
    /// read: a forged or copied full dump of a 16 GiB VM is mostly holes.
    public static func ofFile(_ path: String, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                              progress: (UInt64) -> Void = { _ in }) throws -> (hash: String, size: UInt64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BlobStore.Failure(description: "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw BlobStore.Failure(description: "cannot stat \(path): \(String(cString: strerror(errno)))") }
        let size = UInt64(status.st_size)
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        let window = max(1, threads) * 2
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: window * blockSize, alignment: 4096)
        defer { buffer.deallocate() }
        let digests = UnsafeMutableBufferPointer<[UInt8]>.allocate(capacity: window)
        defer { digests.deallocate() }
        var hasher = ContentHasher()
        let wholeBlocks = size / UInt64(blockSize)
        var block: UInt64 = 0
        while block < wholeBlocks {
            let count = Int(min(UInt64(window), wholeBlocks - block))
            var holes = [Bool](repeating: false, count: count)
            for index in 0..<count {
                let start = (block + UInt64(index)) * UInt64(blockSize)
                let data = lseek(fd, off_t(start), seekData)
                holes[index] = (data < 0 && errno == ENXIO) || (data >= 0 && UInt64(data) >= start + UInt64(blockSize))
                if !holes[index] {
                    try readFully(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[index * blockSize..<(index + 1) * blockSize]), at: start, path: path)
                }
            }
            let shared = SendableBlocks(buffer: UnsafeRawBufferPointer(buffer), digests: digests)
            let holeFlags = holes
            DispatchQueue.concurrentPerform(iterations: count) { index in
                let digest = holeFlags[index] ? zeroBlockDigest
                    : ContentHasher.digest(ofBlock: UnsafeRawBufferPointer(rebasing: shared.buffer[index * blockSize..<(index + 1) * blockSize]))
                shared.digests.baseAddress!.advanced(by: index).initialize(to: digest)
            }
            hasher.append(blockDigests: digests[0..<count].flatMap { $0 }, bytes: UInt64(count * blockSize))
            digests.baseAddress!.deinitialize(count: count)
            block += UInt64(count)
            progress(block * UInt64(blockSize))
        }
        let tail = Int(size - wholeBlocks * UInt64(blockSize))
        if tail > 0 {
            let rest = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<tail])
            try readFully(fd, into: rest, at: wholeBlocks * UInt64(blockSize), path: path)
            hasher.update(UnsafeRawBufferPointer(rest))
            progress(size)
        }
        return (hasher.finalize(), hasher.size)
    }

    /// lseek's SEEK_DATA on Linux; Glibc shows it to C only with _GNU_SOURCE, so not to Swift.
    private static let seekData: Int32 = 3

    private static func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, path: String) throws {
        var filled = 0
        while filled < buffer.count {
            let read = pread(fd, buffer.baseAddress! + filled, buffer.count - filled, off_t(offset) + off_t(filled))
            guard read > 0 else {
                throw BlobStore.Failure(description: read == 0 ? "\(path) shrank while it was read" : "cannot read \(path): \(String(cString: strerror(errno)))")
            }
            filled += read
        }
    }

    /// Raw buffers handed to `concurrentPerform`; each iteration touches its own block and slot.
    private struct SendableBlocks: @unchecked Sendable {
        let buffer: UnsafeRawBufferPointer
        let digests: UnsafeMutableBufferPointer<[UInt8]>
    }
}
