import CLZ4
import Crypto
import Foundation
import Synchronization

/// Checks an LZ4 frame (the LZ4 frame format, as `lz4 -c` writes it) while it is appended to a
/// file, and hashes the bytes it holds, so that an upload is verified by the time its last byte
/// is in.
///
/// It reads the file, not the network: the coordinator writes each piece of a request body
/// first, then asks the verifier to check every unit of the frame that the file now holds whole
/// (the header, a block, the end mark). An upload in progress therefore costs only this small
/// state (the block digests, the running content checksum, and for linked blocks the last
/// 64 KiB decoded); the two 4 MiB buffers a block is decoded in are borrowed for that moment
/// (`BlockBuffers`). The state can be saved (`checkpoint()`) and taken up again by the next
/// request, or after a restart, which then re-reads only the bytes since that checkpoint.
///
/// The frame is parsed here because LZ4F (liblz4's frame API) keeps its state where it cannot
/// be saved. The blocks are decoded by the functions LZ4F calls itself
/// (`LZ4_decompress_safe`, and `LZ4_decompress_safe_usingDict` for linked blocks), and the checks
/// are LZ4F's: magic number and version, reserved bits, the header checksum, block sizes, block
/// and content checksums (XXH32, `xxh32.h`), the content size when the header gives one. A
/// frame this accepts is one a worker's LZ4F decodes (a test compares the two on damaged
/// frames). Skippable frames and anything after the end of the frame are refused.
///
/// One rule is stricter than the format: every block but the last must hold the frame's full
/// block size, as `lz4` and LZ4F's own compressor write them. The block sizes (64 KiB to 4 MiB)
/// divide the content hash's 4 MiB blocks, so the decoded size then reaches a hash-block
/// boundary at least every 4 MiB, and a checkpoint is never far behind; a frame of short
/// blocks would never reach one, and every request would decode it again from the start.
public final class FrameVerifier: @unchecked Sendable {
    /// The uncompressed size announced; decoding more than this fails at once.
    public let expectedSize: UInt64
    /// Compressed bytes checked: the next unit of the frame starts here.
    public private(set) var consumed: UInt64 = 0
    /// Uncompressed bytes decoded so far.
    public private(set) var size: UInt64 = 0
    /// Whether the end mark (and content checksum) has been checked.
    public private(set) var finished = false
    private var descriptor: Descriptor?
    private var hasher = ContentHasher()
    private var contentChecksum = DFXXH32State()
    /// The last 64 KiB decoded: the dictionary of the next block in a frame of linked blocks.
    private var dictionary: [UInt8] = []
    /// Whether the last block held less than the full block size (then it must be the last).
    /// Never true at a checkpoint: a short block ends the content before a hash-block boundary.
    private var lastBlockWasShort = false
    /// The newest state a checkpoint can hold: one on a content-hash block boundary, where the
    /// block digests and sizes are the whole of the hash's state.
    private var mark: Mark

    /// The frame decodes to more bytes than announced.
    public struct Overflow: Error, CustomStringConvertible {
        public var expectedSize: UInt64
        public var description: String { "the upload holds more than the \(expectedSize) bytes announced" }
    }

    /// The frame has not ended yet: more bytes are needed.
    public struct Incomplete: Error, CustomStringConvertible {
        public var decoded: UInt64
        public var expectedSize: UInt64
        public var description: String { "the upload's LZ4 frame is cut short: \(decoded) of \(expectedSize) bytes decoded so far" }
    }

    /// The frame ended, but what it holds is not what was announced.
    public struct Mismatch: Error, CustomStringConvertible {
        public var description: String
    }

    struct Descriptor: Equatable {
        var linked: Bool
        var blockChecksum: Bool
        var contentChecksum: Bool
        /// From the header; 0 or absent means unknown (LZ4F checks it only when non-zero).
        var contentSize: UInt64
        var maxBlockSize: Int
    }

    struct Mark {
        var consumed: UInt64
        var size: UInt64
        var finished: Bool
        var descriptor: Descriptor?
        var digestBytes: Int
        var contentChecksum: DFXXH32State
        var dictionary: [UInt8]
    }

    public init(expectedSize: UInt64) {
        self.expectedSize = expectedSize
        dfxxh32_reset(&contentChecksum, 0)
        mark = Mark(consumed: 0, size: 0, finished: false, descriptor: nil, digestBytes: 0, contentChecksum: contentChecksum, dictionary: [])
    }

    // MARK: checking

    static let magic: UInt32 = 0x184D_2204
    static let dictionaryLimit = 64 << 10

    /// Checks every unit of the frame that lies wholly in the file `fd` between `consumed` and
    /// `end`, and stops at the first unit that is not all there yet. With `budget`, stops once
    /// that many compressed bytes were checked, so that a long catch-up can give its thread up
    /// between slices.
    public func advance(_ fd: Int32, upTo end: UInt64, budget: UInt64 = .max) throws {
        let start = consumed
        while consumed < end && consumed - start < budget {
            guard !finished else { throw LZ4Error("data after the end of the frame") }
            guard let descriptor else {
                guard try readHeader(fd, available: end - consumed) else { return }
                continue
            }
            guard end - consumed >= 4 else { return }
            let word = try Self.read(fd, at: consumed, count: 4).littleEndianWord(at: 0)
            if word == 0 {
                guard try readEndMark(fd, available: end - consumed, descriptor) else { return }
                continue
            }
            let stored = Int(word & 0x7FFF_FFFF)
            guard stored <= descriptor.maxBlockSize else {
                throw LZ4Error("a block of \(stored) bytes at byte \(consumed) is larger than the frame's \(descriptor.maxBlockSize)")
            }
            let length = 4 + stored + (descriptor.blockChecksum ? 4 : 0)
            guard end - consumed >= UInt64(length) else { return }
            try readBlock(fd, stored: stored, uncompressed: word & 0x8000_0000 != 0, descriptor)
            consumed += UInt64(length)
            if hasher.isAtBlockBoundary { remember() }
        }
    }

    /// Reads the frame header when the file holds it all; false when it does not yet.
    private func readHeader(_ fd: Int32, available: UInt64) throws -> Bool {
        guard available >= 7 else { return false }
        let head = try Self.read(fd, at: consumed, count: Int(min(available, 19)))
        let magic = head.littleEndianWord(at: 0)
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 { throw LZ4Error("a skippable frame, not a dump's frame") }
        guard magic == Self.magic else { throw LZ4Error("not an LZ4 frame (magic number \(String(magic, radix: 16)))") }
        let flags = head[4], blockDescriptor = head[5]
        guard flags >> 6 == 1 else { throw LZ4Error("frame format version \(flags >> 6), not 1") }
        guard flags & 0x02 == 0, blockDescriptor & 0x8F == 0 else { throw LZ4Error("reserved bits are set in the frame header") }
        let sizeCode = Int(blockDescriptor >> 4) & 7
        guard sizeCode >= 4 else { throw LZ4Error("block size code \(sizeCode) is not one of 4 to 7") }
        let hasContentSize = flags & 0x08 != 0, hasDictionaryId = flags & 0x01 != 0
        let length = 7 + (hasContentSize ? 8 : 0) + (hasDictionaryId ? 4 : 0)
        guard head.count >= length else { return false }
        var state = DFXXH32State()
        dfxxh32_reset(&state, 0)
        head.withUnsafeBytes { dfxxh32_update(&state, $0.baseAddress! + 4, length - 5) }
        guard UInt8((dfxxh32_digest(&state) >> 8) & 0xFF) == head[length - 1] else { throw LZ4Error("the frame header's checksum is wrong") }
        // A dictionary id only names the dictionary the compressor used; LZ4F decodes such a
        // frame without one, and so does this (blocks made with a dictionary then fail to decode).
        descriptor = Descriptor(linked: flags & 0x20 == 0, blockChecksum: flags & 0x10 != 0, contentChecksum: flags & 0x04 != 0,
                                contentSize: hasContentSize ? head.littleEndianDoubleWord(at: 6) : 0, maxBlockSize: 1 << (8 + 2 * sizeCode))
        consumed += UInt64(length)
        remember()
        return true
    }

    private func readEndMark(_ fd: Int32, available: UInt64, _ descriptor: Descriptor) throws -> Bool {
        let length = 4 + (descriptor.contentChecksum ? 4 : 0)
        guard available >= UInt64(length) else { return false }
        if descriptor.contentChecksum {
            let stored = try Self.read(fd, at: consumed + 4, count: 4).littleEndianWord(at: 0)
            guard dfxxh32_digest(&contentChecksum) == stored else { throw LZ4Error("the frame's content checksum is wrong") }
        }
        if descriptor.contentSize != 0 && descriptor.contentSize != size {
            throw LZ4Error("the frame header says it holds \(descriptor.contentSize) bytes, its blocks hold \(size)")
        }
        consumed += UInt64(length)
        finished = true
        if hasher.isAtBlockBoundary { remember() }
        return true
    }

    private func readBlock(_ fd: Int32, stored: Int, uncompressed: Bool, _ descriptor: Descriptor) throws {
        try BlockBuffers.borrow { input, output in
            let length = stored + (descriptor.blockChecksum ? 4 : 0)
            try Self.read(fd, at: consumed + 4, into: UnsafeMutableRawBufferPointer(rebasing: input[0..<length]))
            if descriptor.blockChecksum {
                var state = DFXXH32State()
                dfxxh32_reset(&state, 0)
                dfxxh32_update(&state, input.baseAddress, stored)
                guard dfxxh32_digest(&state) == UnsafeRawBufferPointer(rebasing: input[stored..<length]).littleEndianWord(at: 0) else {
                    throw LZ4Error("the checksum of the block at byte \(consumed) is wrong")
                }
            }
            let decoded: UnsafeRawBufferPointer
            if uncompressed {
                decoded = UnsafeRawBufferPointer(rebasing: input[0..<stored])
            } else {
                let count = dictionary.withUnsafeBufferPointer { dictionary -> Int32 in
                    let source = input.baseAddress!.assumingMemoryBound(to: CChar.self)
                    let target = output.baseAddress!.assumingMemoryBound(to: CChar.self)
                    guard descriptor.linked, let start = dictionary.baseAddress, !dictionary.isEmpty else {
                        return LZ4_decompress_safe(source, target, Int32(stored), Int32(descriptor.maxBlockSize))
                    }
                    return LZ4_decompress_safe_usingDict(source, target, Int32(stored), Int32(descriptor.maxBlockSize),
                                                         UnsafeRawPointer(start).assumingMemoryBound(to: CChar.self), Int32(dictionary.count))
                }
                guard count >= 0 else { throw LZ4Error("the block at byte \(consumed) does not decode") }
                decoded = UnsafeRawBufferPointer(rebasing: output[0..<Int(count)])
            }
            guard !lastBlockWasShort else {
                throw LZ4Error("a block before the one at byte \(consumed) holds less than the frame's \(descriptor.maxBlockSize) bytes; only the last may")
            }
            lastBlockWasShort = decoded.count < descriptor.maxBlockSize
            guard size + UInt64(decoded.count) <= expectedSize else { throw Overflow(expectedSize: expectedSize) }
            if descriptor.contentChecksum { dfxxh32_update(&contentChecksum, decoded.baseAddress, decoded.count) }
            hasher.update(decoded)
            size += UInt64(decoded.count)
            if descriptor.linked { keepDictionary(after: decoded) }
        }
    }

    private func keepDictionary(after decoded: UnsafeRawBufferPointer) {
        if decoded.count >= Self.dictionaryLimit {
            dictionary = Array(decoded.suffix(Self.dictionaryLimit))
        } else {
            var joined = dictionary
            joined.append(contentsOf: decoded)
            dictionary = Array(joined.suffix(Self.dictionaryLimit))
        }
    }

    private func remember() {
        mark = Mark(consumed: consumed, size: size, finished: finished, descriptor: descriptor, digestBytes: hasher.blockDigests.count,
                    contentChecksum: contentChecksum, dictionary: dictionary)
    }

    /// Throws unless the frame ended and held exactly `expectedSize` bytes hashing to
    /// `contentHash`: `Incomplete` while it has not ended, `Mismatch` when it holds other bytes.
    public func check(contentHash: String) throws {
        guard finished else { throw Incomplete(decoded: size, expectedSize: expectedSize) }
        guard size == expectedSize else { throw Mismatch(description: "the upload holds \(size) bytes, not the \(expectedSize) announced") }
        var copy = hasher
        let actual = copy.finalize()
        guard actual == contentHash else { throw Mismatch(description: "content hash mismatch: announced \(contentHash), the bytes hash to \(actual)") }
    }

    // MARK: checkpoints

    /// The verifier's state as bytes, to be given to `init(checkpoint:expectedSize:)` later: the
    /// newest point on a content-hash block boundary (at most 4 MiB of content behind), with a
    /// SHA-256 of its own so that a torn or damaged file is noticed rather than trusted.
    public func checkpoint() -> [UInt8] {
        var bytes: [UInt8] = Array("DFV1".utf8)
        bytes.appendLittleEndian(expectedSize)
        bytes.appendLittleEndian(mark.consumed)
        bytes.appendLittleEndian(mark.size)
        let descriptor = mark.descriptor
        var flags: UInt8 = mark.finished ? 0x20 : 0
        if let descriptor {
            flags |= 0x01 | (descriptor.linked ? 0x02 : 0) | (descriptor.blockChecksum ? 0x04 : 0) | (descriptor.contentChecksum ? 0x08 : 0)
        }
        bytes.append(flags)
        bytes.appendLittleEndian(UInt32(descriptor?.maxBlockSize ?? 0))
        bytes.appendLittleEndian(descriptor?.contentSize ?? 0)
        let checksum = mark.contentChecksum
        bytes.appendLittleEndian(checksum.total)
        for lane in [checksum.lanes.0, checksum.lanes.1, checksum.lanes.2, checksum.lanes.3] { bytes.appendLittleEndian(lane) }
        bytes.appendLittleEndian(checksum.buffered)
        withUnsafeBytes(of: checksum.buffer) { bytes.append(contentsOf: $0) }
        bytes.appendLittleEndian(UInt32(mark.dictionary.count))
        bytes += mark.dictionary
        bytes.appendLittleEndian(UInt32(mark.digestBytes))
        bytes += hasher.blockDigests.prefix(mark.digestBytes)
        bytes += Self.seal(bytes)
        return bytes
    }

    /// A verifier that goes on from a checkpoint; nil when the bytes are not a sound checkpoint
    /// of an upload of `expectedSize` bytes (then verify from the start).
    public convenience init?(checkpoint bytes: [UInt8], expectedSize: UInt64) {
        guard bytes.count > 32, Self.seal(bytes.dropLast(32)) == Array(bytes.suffix(32)) else { return nil }
        var reader = LittleEndianReader(bytes: bytes.dropLast(32))
        guard reader.take(4) == Array("DFV1".utf8), reader.doubleWord() == expectedSize,
              let consumed = reader.doubleWord(), let size = reader.doubleWord(), let flags = reader.byte(),
              let maxBlockSize = reader.word(), let contentSize = reader.doubleWord(), let total = reader.doubleWord(),
              let lane0 = reader.word(), let lane1 = reader.word(), let lane2 = reader.word(), let lane3 = reader.word(),
              let buffered = reader.word(), buffered < 16, let buffer = reader.take(16),
              let dictionaryCount = reader.word(), dictionaryCount <= Self.dictionaryLimit, let dictionary = reader.take(Int(dictionaryCount)),
              let digestCount = reader.word(), digestCount % 32 == 0, let digests = reader.take(Int(digestCount)), reader.isAtEnd,
              size == UInt64(digestCount / 32) * UInt64(ContentHasher.blockSize), size <= expectedSize,
              flags & 0x01 != 0 || (consumed == 0 && size == 0)
        else { return nil }
        self.init(expectedSize: expectedSize)
        if flags & 0x01 != 0 {
            guard [1 << 16, 1 << 18, 1 << 20, 1 << 22].contains(Int(maxBlockSize)) else { return nil }
            descriptor = Descriptor(linked: flags & 0x02 != 0, blockChecksum: flags & 0x04 != 0, contentChecksum: flags & 0x08 != 0,
                                    contentSize: contentSize, maxBlockSize: Int(maxBlockSize))
        }
        self.consumed = consumed
        self.size = size
        finished = flags & 0x20 != 0
        hasher.append(blockDigests: digests, bytes: size)
        contentChecksum.total = total
        contentChecksum.lanes = (lane0, lane1, lane2, lane3)
        contentChecksum.buffered = buffered
        withUnsafeMutableBytes(of: &contentChecksum.buffer) { $0.copyBytes(from: buffer) }
        self.dictionary = dictionary
        remember()
    }

    static func seal(_ bytes: some Collection<UInt8>) -> [UInt8] { Array(SHA256.hash(data: Array(bytes))) }

    // MARK: reading the file

    static func read(_ fd: Int32, at offset: UInt64, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try read(fd, at: offset, into: $0) }
        return bytes
    }

    static func read(_ fd: Int32, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var filled = 0
        while filled < buffer.count {
            let result = pread(fd, buffer.baseAddress! + filled, buffer.count - filled, off_t(offset) + off_t(filled))
            if result < 0 && errno == EINTR { continue }
            guard result > 0 else {
                throw BlobStore.Failure(description: result == 0 ? "the upload file ends at byte \(offset + UInt64(filled))"
                                                                 : "cannot read the upload file: \(String(cString: strerror(errno)))")
            }
            filled += result
        }
    }
}

/// The buffers a block is decoded in: the stored block (at most 4 MiB and its checksum) and
/// what it decodes to (at most 4 MiB). They are lent for one block at a time, so no more are
/// out than there are threads decoding, and a few are kept for the next block.
enum BlockBuffers {
    static let capacity = (4 << 20) + 8
    private static let idle = Mutex<[Pair]>([])
    private static let kept = 8

    final class Pair: @unchecked Sendable {
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: BlockBuffers.capacity, alignment: 64)
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: BlockBuffers.capacity, alignment: 64)
        deinit {
            input.deallocate()
            output.deallocate()
        }
    }

    static func borrow<T>(_ body: (UnsafeMutableRawBufferPointer, UnsafeMutableRawBufferPointer) throws -> T) rethrows -> T {
        let pair = idle.withLock { $0.popLast() } ?? Pair()
        defer { idle.withLock { if $0.count < kept { $0.append(pair) } } }
        return try body(pair.input, pair.output)
    }
}

// MARK: little-endian helpers

extension Collection where Element == UInt8, Index == Int {
    func littleEndianWord(at offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(self[startIndex + offset + $1]) << (8 * $1) }
    }

    func littleEndianDoubleWord(at offset: Int) -> UInt64 {
        (0..<8).reduce(0) { $0 | UInt64(self[startIndex + offset + $1]) << (8 * $1) }
    }
}

extension Array where Element == UInt8 {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

/// Reads little-endian fields from bytes, each nil past the end.
struct LittleEndianReader {
    let bytes: [UInt8]
    var offset = 0

    init(bytes: some Collection<UInt8>) { self.bytes = Array(bytes) }

    var isAtEnd: Bool { offset == bytes.count }

    mutating func take(_ count: Int) -> [UInt8]? {
        guard count >= 0, count <= bytes.count - offset else { return nil }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func byte() -> UInt8? { take(1)?[0] }
    mutating func word() -> UInt32? { take(4)?.littleEndianWord(at: 0) }
    mutating func doubleWord() -> UInt64? { take(8)?.littleEndianDoubleWord(at: 0) }
}
