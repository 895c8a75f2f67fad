/// DumpType 8, 9 and 0xA: the "RDMP" range dumps newer WinDbg writes (`.dump /k`, `/ka`, `/f`).
///
/// Only kdmp-parser documents the layout. At 0x2000: Marker 0x40, "RDMP", "DUMP", a spare
/// u32, MetadataSize at +0x10 and FirstPageOffset at +0x18, with MetadataSize counted from +0x20
/// (so FirstPageOffset = 0x2020 + MetadataSize). At +0x20 the complete variant has
/// NumberOfRanges (u32), two u16s and TotalNumberOfPages (u64); the kernel variants have two u64s
/// nobody has named. From +0x30, {PFN, PageCount} pairs, ended by a zero PFN, and from
/// FirstPageOffset the pages in list order. Where the first page starts is not documented, so
/// the kernel variants put it right after the list and the complete one on a page boundary.
extension DumpWriter {
    enum RangeDumpContents {
        /// Type 8: kernel pages. Type 9: kernel and user pages. Type 0xA: every RAM page.
        case kernel, kernelAndUser, complete

        var dumpType: UInt32 {
            switch self {
            case .kernel: 8
            case .kernelAndUser: 9
            case .complete: 0xA
            }
        }
    }

    func rangeDump(_ contents: RangeDumpContents) -> ForgedDump {
        let ranges: [Range<UInt64>]
        switch contents {
        case .kernel: ranges = Self.consecutiveRuns(ram.usedFrames.union(ram.pages.keys).subtracting(ram.userFrames).filter(ram.isRAM).sorted())
        case .kernelAndUser: ranges = Self.consecutiveRuns(ram.usedFrames.union(ram.pages.keys).filter(ram.isRAM).sorted())
        case .complete: ranges = description.memory
        }
        let pageCount = ranges.reduce(0) { $0 + UInt64($1.count) }
        let listEnd = 0x2030 + 16 * UInt64(ranges.count + 1)  // with the zero terminator
        let firstPage = contents == .complete ? (listEnd + 0xFFF) & ~0xFFF : listEnd
        let size = firstPage + pageCount * 0x1000

        var h = header(dumpType: contents.dumpType, requiredSpace: size)
        h.put(Array(repeating: 0, count: Int(firstPage - 0x2000)), at: 0x2000)
        h.put32(0x40, at: 0x2000)
        h.putASCII("RDMPDUMP", at: 0x2004)
        h.put64(firstPage - 0x2020, at: 0x2010)
        h.put64(firstPage, at: 0x2018)
        h.put32(UInt32(ranges.count), at: 0x2020)
        h.put64(pageCount, at: 0x2028)
        for (index, range) in ranges.enumerated() {
            h.put64(range.lowerBound, at: 0x2030 + 16 * index)
            h.put64(UInt64(range.count), at: 0x2038 + 16 * index)
        }

        var chunks: [ForgedDump.Chunk] = [.init(offset: 0, bytes: h.bytes)]
        // Each range's pages follow the previous range's; only pages with data become chunks.
        var rangeStart = firstPage
        var starts: [(range: Range<UInt64>, offset: UInt64)] = []
        for range in ranges {
            starts.append((range, rangeStart))
            rangeStart += UInt64(range.count) * 0x1000
        }
        for (pfn, page) in ram.pages {
            guard let index = Self.index(of: pfn, in: ranges) else { continue }
            chunks.append(.init(offset: starts[index].offset + (pfn - ranges[index].lowerBound) * 0x1000, bytes: page))
        }
        return ForgedDump(size: size, chunks: chunks, kernel: kernel)
    }

    /// The position of the sorted, disjoint range that holds `pfn`.
    static func index(of pfn: UInt64, in ranges: [Range<UInt64>]) -> Int? {
        var low = 0, high = ranges.count
        while low < high {
            let middle = (low + high) / 2
            if ranges[middle].upperBound <= pfn { low = middle + 1 } else { high = middle }
        }
        return low < ranges.count && ranges[low].contains(pfn) ? low : nil
    }

    /// Sorted page numbers as runs of consecutive pages.
    static func consecutiveRuns(_ frames: [UInt64]) -> [Range<UInt64>] {
        var runs: [Range<UInt64>] = []
        for pfn in frames {
            if let last = runs.last, last.upperBound == pfn {
                runs[runs.count - 1] = last.lowerBound..<pfn + 1
            } else {
                runs.append(pfn..<pfn + 1)
            }
        }
        return runs
    }
}
