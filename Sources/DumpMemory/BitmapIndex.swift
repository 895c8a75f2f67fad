import DumpFormat

/// A rank index over a bitmap dump's page bitmap.
///
/// Bit i set means PFN i is stored; its data is the n-th stored page where n is the number of
/// set bits before i. Counting bits on every lookup would be O(bitmap), and a dictionary of
/// every page would cost tens of bytes per page, so this keeps one running count per 64-bit word
/// (4 bytes per 256 KiB of RAM) and reads the word itself from the mapped file: one load, one
/// mask and one popcount per lookup.
struct BitmapIndex: Sendable {
    let source: ByteSource
    let bitCount: UInt64
    let firstPageOffset: UInt64
    /// 64-bit words wholly inside the bit count; the bits after them are `tailWord`.
    let fullWords: UInt64
    let tailWord: UInt64
    /// rank[w] = number of set bits in words 0 ..< w.
    let rank: [UInt32]
    let presentPages: UInt64
    let missingPages: UInt64
    let notes: [String]

    init(source: ByteSource, header: BitmapDumpHeader) throws {
        let start = BitmapDumpHeader.bitmapOffset
        guard header.bitCount <= UInt64(UInt32.max) else {
            throw DumpError(.unsupported, "bitmap of 0x\(hex(header.bitCount)) pages (over 16 TiB) is not supported", offset: BitmapDumpHeader.offset + 0x30)
        }
        let byteCount = (header.bitCount + 7) / 8
        guard source.contains(offset: start, length: byteCount) else {
            throw DumpError(.truncated, "the page bitmap (0x\(hex(header.bitCount)) bits) runs past the end of the file", offset: start)
        }
        guard header.firstPageOffset >= start + byteCount else {
            throw DumpError(.corrupt, "first page offset 0x\(hex(header.firstPageOffset)) lies inside the page bitmap", offset: BitmapDumpHeader.offset + 0x20)
        }
        self.source = source
        self.bitCount = header.bitCount
        self.firstPageOffset = header.firstPageOffset
        // Words wholly inside the bit count are read from the file on each lookup; the bits of
        // the last, partial word are gathered once, and bits past the count mean nothing.
        fullWords = header.bitCount / 64
        let tailBits = header.bitCount % 64
        var tail: UInt64 = 0
        for i in 0..<(tailBits + 7) / 8 { tail |= UInt64(try source.u8(at: start + fullWords * 8 + i)) << (8 * i) }
        tailWord = tailBits == 0 ? 0 : tail & (UInt64.max >> (64 - tailBits))

        var rank: [UInt32] = []
        rank.reserveCapacity(Int(fullWords) + 1)
        var running: UInt64 = 0
        for w in 0..<fullWords {
            rank.append(UInt32(running))
            running += UInt64(source.uncheckedU64(at: start + 8 * w).nonzeroBitCount)
        }
        rank.append(UInt32(running))
        running += UInt64(tailWord.nonzeroBitCount)
        self.rank = rank
        presentPages = running

        var notes: [String] = []
        if header.presentPages != running {
            notes.append("the bitmap header counts \(header.presentPages) stored pages but the bitmap has \(running) set bits; the bitmap was used")
        }
        let fileSize = source.count
        let available = header.firstPageOffset >= fileSize ? 0 : (fileSize - header.firstPageOffset) / PhysicalMemory.pageSize
        missingPages = running - min(running, available)
        if missingPages > 0 { notes.append("the file ends early: \(missingPages) of \(running) pages are missing") }
        self.notes = notes
    }

    func word(_ w: UInt64) -> UInt64 {
        w < fullWords ? source.uncheckedU64(at: BitmapDumpHeader.bitmapOffset + 8 * w) : tailWord
    }

    /// File offset of page `pfn`, or nil when its bit is clear. (Checked arithmetic is not
    /// needed: the rank is below 2^32 and offsets of pages past the file end are reported as such.)
    func fileOffset(of pfn: UInt64) -> UInt64? {
        guard pfn < bitCount else { return nil }
        let w = pfn >> 6
        let bits = word(w)
        let bit = pfn & 63
        guard bits & (1 << bit) != 0 else { return nil }
        let before = UInt64(rank[Int(w)]) + UInt64((bits & ((1 << bit) - 1)).nonzeroBitCount)
        let (offset, overflow) = firstPageOffset.addingReportingOverflow(before << 12)
        return overflow ? UInt64.max : offset
    }

    /// The first `limit` maximal runs of stored pages and how many runs there are in all. Runs
    /// are found a word at a time (counting trailing zeros and ones), and only `limit` are kept,
    /// so a hostile alternating bitmap costs time in proportion to its size and no memory.
    func presentRuns(limit: Int) -> (runs: [(basePage: UInt64, pageCount: UInt64)], total: Int) {
        Self.presentRuns(bitCount: bitCount, limit: limit, word: word)
    }

    /// The runs of set bits among `bitCount` bits that `word` gives 64 at a time (word w holds
    /// bits 64w ..< 64w + 64).
    static func presentRuns(bitCount: UInt64, limit: Int, word: (UInt64) -> UInt64) -> (runs: [(basePage: UInt64, pageCount: UInt64)], total: Int) {
        var runs: [(basePage: UInt64, pageCount: UInt64)] = []
        var total = 0
        var runStart: UInt64?
        var pfn: UInt64 = 0
        func finish(_ end: UInt64) {
            if let start = runStart, total < Int.max {
                total += 1
                if runs.count < limit { runs.append((start, end - start)) }
            }
            runStart = nil
        }
        while pfn < bitCount {
            let bits = word(pfn >> 6) >> (pfn & 63)  // this PFN's bit first; zeros shifted in above
            let left = min(64 - (pfn & 63), bitCount - pfn)  // bits of this word still to look at
            if runStart == nil {
                let zeros = min(UInt64(bits.trailingZeroBitCount), left)
                pfn += zeros
                if zeros < left { runStart = pfn }
            } else {
                let ones = min(UInt64((~bits).trailingZeroBitCount), left)
                pfn += ones
                if ones < left { finish(pfn) }
            }
        }
        finish(pfn)
        return (runs, total)
    }
}
