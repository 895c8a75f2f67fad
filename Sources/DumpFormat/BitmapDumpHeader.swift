/// The "SDMP"/"FDMP" header at 0x2000 of bitmap dumps (DumpType 2, 5 and 6).
///
/// Bit i of the bitmap (LSB first in each byte) says whether physical page i is in the file;
/// present pages are stored back to back from `firstPageOffset` in PFN order, so the data of a
/// page is at `firstPageOffset + 0x1000 * (number of set bits before it)`. Projects disagree on
/// the field names at 0x28/0x30 but agree on the offsets.
public struct BitmapDumpHeader: Sendable {
    public static let offset: UInt64 = 0x2000
    /// Where the bitmap itself starts in the file.
    public static let bitmapOffset: UInt64 = offset + 0x38

    /// "SDMP" or "FDMP".
    public var signature: String
    /// File offset of the first stored page.
    public var firstPageOffset: UInt64
    /// The writer's count of stored pages (set bits); checked against the bitmap by the index.
    public var presentPages: UInt64
    /// Number of bits in the bitmap (highest PFN + 1, rounded).
    public var bitCount: UInt64

    public init(parsing source: ByteSource) throws {
        let h = try source.record(at: Self.offset, length: 0x38, "the bitmap dump header at 0x2000")
        let tag = try h.u32(0)
        switch tag {
        case 0x504D_4453: signature = "SDMP"
        case 0x504D_4446: signature = "FDMP"
        default: throw DumpError(.corrupt, "bitmap dump header signature is 0x\(hex(tag)), expected \"SDMP\" or \"FDMP\"", offset: Self.offset)
        }
        guard try h.u32(4) == 0x504D_5544 else {
            throw DumpError(.corrupt, "bitmap dump header lacks the \"DUMP\" marker", offset: Self.offset + 4)
        }
        firstPageOffset = try h.u64(0x20)
        presentPages = try h.u64(0x28)
        bitCount = try h.u64(0x30)
    }
}

/// The "RDMP" header at 0x2000 of range dumps (DumpType 8, 9 and 0xA; written by newer WinDbg).
/// Only one public reader documents it (kdmp-parser); the checks below follow that reading.
public struct RangeDumpHeader: Sendable {
    public static let offset: UInt64 = 0x2000

    /// A run of physical pages stored back to back.
    public struct Range: Sendable, Equatable {
        public var basePage: UInt64
        public var pageCount: UInt64
    }

    public var metadataSize: UInt64
    public var firstPageOffset: UInt64
    public var ranges: [Range]

    public init(parsing source: ByteSource, type: DumpType) throws {
        let h = try source.record(at: Self.offset, length: 0x30, "the range dump header at 0x2000")
        guard try h.u32(4) == 0x504D_4452, try h.u32(8) == 0x504D_5544 else {  // "RDMP", "DUMP"
            throw DumpError(.corrupt, "range dump header lacks the \"RDMP\" / \"DUMP\" signature", offset: Self.offset + 4)
        }
        metadataSize = try h.u64(0x10)
        firstPageOffset = try h.u64(0x18)
        // The writer's own consistency rule: metadata ends where the first page starts.
        guard metadataSize >= 0x20, firstPageOffset >= 0x2040, metadataSize - 0x20 == firstPageOffset - 0x2040 else {
            throw DumpError(.corrupt, "range dump metadata size 0x\(hex(metadataSize)) does not match first page offset 0x\(hex(firstPageOffset))", offset: Self.offset + 0x10)
        }
        let listStart = Self.offset + 0x30
        let listEnd = min(try Checked.add(Self.offset + 0x20, metadataSize, "range dump metadata"), source.count)
        var ranges: [Range] = []
        var entry = listStart
        if type == .rangeComplete {
            // NumberOfRanges at +0x20 and TotalNumberOfPages at +0x28; stop once the pages add up.
            let total = try h.u64(0x28)
            var seen: UInt64 = 0
            while seen < total, entry + 16 <= listEnd {
                let range = Range(basePage: try source.u64(at: entry), pageCount: try source.u64(at: entry + 8))
                seen = try Checked.add(seen, range.pageCount, "range dump page total")
                ranges.append(range)
                entry += 16
            }
        } else {
            // Kernel variants: pairs until a zero PFN or the end of the metadata.
            while entry + 16 <= listEnd {
                let base = try source.u64(at: entry)
                if base == 0 { break }
                ranges.append(Range(basePage: base, pageCount: try source.u64(at: entry + 8)))
                entry += 16
            }
        }
        self.ranges = ranges
    }
}
