import DumpFormat

/// The kernel virtual memory a minidump captured: its data blocks, the crashing thread's stack
/// window, the data page and the KDBG copy, as disjoint segments searchable by address.
///
/// Captured blocks may overlap (a 256-byte window inside a captured page); overlaps are trimmed
/// so that each byte has one home. Blocks whose bytes lie outside the file are left
/// out and counted in `notes`, so a damaged minidump still reads what it can. It keeps no cache,
/// so one instance can serve every thread.
public final class TriageMemory: KernelAddressSpace, Sendable {
    struct Segment: Sendable {
        var address: UInt64
        var size: UInt64
        var fileOffset: UInt64
    }

    /// One captured range of virtual memory, before merging.
    public struct Block: Sendable {
        public var address: UInt64
        public var fileOffset: UInt64
        public var size: UInt64
        public init(address: UInt64, fileOffset: UInt64, size: UInt64) {
            self.address = address
            self.fileOffset = fileOffset
            self.size = size
        }
    }

    public let source: ByteSource
    /// Sorted by address and disjoint.
    let segments: [Segment]
    public let notes: [String]

    public init(source: ByteSource, blocks: [Block]) {
        self.source = source
        var dropped = 0
        var pieces: [Segment] = []
        for block in blocks where block.size > 0 {
            let (end, wraps) = block.address.addingReportingOverflow(block.size)
            guard source.contains(offset: block.fileOffset, length: block.size), !wraps, end != 0 else {
                dropped += 1
                continue
            }
            pieces.append(Segment(address: block.address, size: block.size, fileOffset: block.fileOffset))
        }
        self.segments = Self.disjoint(pieces)
        self.notes = dropped > 0 ? ["\(dropped) captured memory block(s) point outside the file and were ignored"] : []
    }

    /// Sorts the pieces by address and trims each to start where the previous ones end. Two
    /// blocks that overlap copy the same kernel memory, so which one serves a byte is immaterial.
    static func disjoint(_ pieces: [Segment]) -> [Segment] {
        var result: [Segment] = []
        var coveredEnd: UInt64 = 0
        for var piece in pieces.sorted(by: { $0.address < $1.address }) {
            let end = piece.address + piece.size
            if !result.isEmpty, end <= coveredEnd { continue }
            if !result.isEmpty, piece.address < coveredEnd {
                let skip = coveredEnd - piece.address
                piece = Segment(address: coveredEnd, size: piece.size - skip, fileOffset: piece.fileOffset + skip)
            }
            result.append(piece)
            coveredEnd = end
        }
        return result
    }

    /// Total captured bytes.
    public var capturedBytes: UInt64 { segments.reduce(0) { $0 + $1.size } }

    /// The captured bytes around `va` (one of the disjoint pieces the blocks were cut into),
    /// nil when the minidump did not capture it.
    public func capturedRange(containing va: UInt64) -> Range<UInt64>? {
        segment(containing: va).map { $0.address..<$0.address &+ $0.size }
    }

    func segment(containing va: UInt64) -> Segment? {
        var low = 0
        var high = segments.count
        while low < high {
            let middle = (low + high) / 2
            if segments[middle].address <= va { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        let segment = segments[low - 1]
        return va - segment.address < segment.size ? segment : nil
    }

    public func read(_ va: UInt64, count: Int) throws -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(min(max(count, 0), 0x1_0000))
        var address = va
        while result.count < count {
            guard let segment = segment(containing: address) else { throw MemoryError(.notCaptured, address: address) }
            let into = address - segment.address
            let take = min(segment.size - into, UInt64(count - result.count))
            result += try source.bytes(at: segment.fileOffset + into, count: take)
            address &+= take
        }
        return result
    }

    public func u64(_ va: UInt64) throws -> UInt64 { try littleEndian(va, 8) }
}
