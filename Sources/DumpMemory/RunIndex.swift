import DumpFormat

/// Physical page runs stored back to back in the file (full and range dumps).
///
/// Pages are stored in the order of the run table, so a page's file offset is the start of its
/// run's data plus 0x1000 per page into the run, not PFN * 0x1000: the holes between runs (such
/// as a VM's PCI hole below 4 GiB) take no space. Lookup is a binary search over runs sorted
/// by PFN.
struct RunIndex: Sendable {
    struct Run: Sendable {
        var basePage: UInt64
        var pageCount: UInt64
        var fileOffset: UInt64
    }

    /// Sorted by `basePage`, no two overlapping, no empty runs.
    let runs: [Run]
    let storedPages: UInt64
    let missingPages: UInt64
    let notes: [String]

    init(runs fileOrder: [(UInt64, UInt64)], firstOffset: UInt64, fileSize: UInt64) throws {
        var placed: [Run] = []
        var offset = firstOffset
        for (basePage, pageCount) in fileOrder where pageCount > 0 {
            placed.append(Run(basePage: basePage, pageCount: pageCount, fileOffset: offset))
            offset = try Checked.add(offset, try Checked.multiply(pageCount, PhysicalMemory.pageSize, "run at PFN 0x\(hex(basePage))"), "end of the run table's data")
        }
        try self.init(placed: placed, fileSize: fileSize)
    }

    /// Runs each at its own file offset (an ELF core's PT_LOAD segments).
    init(placed: [Run], fileSize: UInt64) throws {
        var runs: [Run] = []
        var stored: UInt64 = 0
        var missing: UInt64 = 0
        for run in placed where run.pageCount > 0 {
            _ = try Checked.add(run.basePage, run.pageCount, "run at PFN 0x\(hex(run.basePage))")
            _ = try Checked.add(run.fileOffset, try Checked.multiply(run.pageCount, PhysicalMemory.pageSize, "run at PFN 0x\(hex(run.basePage))"),
                                "end of the run at PFN 0x\(hex(run.basePage))")
            runs.append(run)
            stored = try Checked.add(stored, run.pageCount, "total pages of the run table")
            // Pages of this run whose data would lie beyond the end of the file.
            let available = run.fileOffset >= fileSize ? 0 : (fileSize - run.fileOffset) / PhysicalMemory.pageSize
            missing += run.pageCount - min(run.pageCount, available)  // never more than `stored`
        }
        runs.sort { $0.basePage < $1.basePage }
        for (previous, next) in zip(runs, runs.dropFirst()) where previous.basePage + previous.pageCount > next.basePage {
            throw DumpError(.corrupt, "physical memory runs overlap: PFN 0x\(hex(previous.basePage)) + 0x\(hex(previous.pageCount)) pages runs into the run at PFN 0x\(hex(next.basePage))")
        }
        self.runs = runs
        self.storedPages = stored
        self.missingPages = missing
        self.notes = missing > 0 ? ["the file ends early: \(missing) of \(stored) pages are missing"] : []
    }

    /// File offset of page `pfn`, or nil when no run holds it.
    func fileOffset(of pfn: UInt64) -> UInt64? {
        var low = 0
        var high = runs.count
        while low < high {  // first run whose basePage > pfn
            let middle = (low + high) / 2
            if runs[middle].basePage <= pfn { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        let run = runs[low - 1]
        let delta = pfn - run.basePage
        return delta < run.pageCount ? run.fileOffset + delta * PhysicalMemory.pageSize : nil
    }
}
