import DumpFormat

/// Where the bytes of one physical page are, if anywhere.
public enum PageLocation: Sendable, Equatable {
    /// The page is stored at this file offset.
    case inFile(UInt64)
    /// The dump does not contain this page (a hole between runs, a clear bitmap bit). Normal for
    /// kernel and bitmap dumps, which leave out free and user pages.
    case notInDump
    /// The dump's tables say the page is stored at this offset, but the file ends before it:
    /// the dump was truncated (page file or dedicated dump file too small, copy cut short).
    case beyondEndOfFile(UInt64)
    /// The page is stored compressed, described by this page descriptor (kdump-compressed files).
    case compressed(descriptor: UInt64)
}

/// The physical memory stored in a dump or a hypervisor's capture: an index from PFN to where
/// the page is (a file offset, or a compressed page's descriptor), built once at open time and
/// small (O(runs + bitmap/64)), plus reads that honour it. Every container plugs in here, so the
/// address spaces above never learn where their bytes came from.
public struct PhysicalMemory: Sendable {
    public static let pageSize: UInt64 = 0x1000

    enum Index: Sendable {
        case runs(RunIndex)
        case bitmap(BitmapIndex)
        case compressed(CompressedPages)
    }

    public let source: ByteSource
    let index: Index
    /// Pages the dump claims to hold.
    public let storedPages: UInt64
    /// Of those, pages whose bytes lie past the end of the file.
    public let missingPages: UInt64
    /// Things found while indexing that a reader should know (inconsistent counts, truncation).
    public let notes: [String]

    /// Indexes a run-based dump (DumpType 1): pages stored run after run from `dataOffset`.
    public init(source: ByteSource, runs: [PhysicalMemoryDescriptor.Run], dataOffset: UInt64) throws {
        let index = try RunIndex(runs: runs.map { ($0.basePage, $0.pageCount) }, firstOffset: dataOffset, fileSize: source.count)
        self.init(source: source, index: .runs(index), stored: index.storedPages, missing: index.missingPages, notes: index.notes)
    }

    /// Indexes a range dump (DumpType 8, 9, 0xA): the same shape as runs.
    public init(source: ByteSource, ranges: RangeDumpHeader) throws {
        let index = try RunIndex(runs: ranges.ranges.map { ($0.basePage, $0.pageCount) }, firstOffset: ranges.firstPageOffset, fileSize: source.count)
        self.init(source: source, index: .runs(index), stored: index.storedPages, missing: index.missingPages, notes: index.notes)
    }

    /// Indexes an ELF core (QEMU's dump-guest-memory): each PT_LOAD segment's whole pages at
    /// its own file offset. Bytes a segment declares but did not write (p_memsz beyond
    /// p_filesz) are not in the dump.
    public init(source: ByteSource, elf: ElfCore) throws {
        let runs = elf.segments.map { RunIndex.Run(basePage: $0.physicalAddress / Self.pageSize, pageCount: $0.fileSize / Self.pageSize, fileOffset: $0.fileOffset) }
        let index = try RunIndex(placed: runs, fileSize: source.count)
        let unwritten = elf.segments.filter { $0.memorySize > $0.fileSize }.count
        self.init(source: source, index: .runs(index), stored: index.storedPages, missing: index.missingPages,
                  notes: index.notes + (unwritten > 0 ? ["\(unwritten) PT_LOAD segments declare more memory than they hold; the rest is not in the dump"] : []))
    }

    /// Indexes a kdump-compressed file (QEMU's `dump-guest-memory` with a kdump format): pages
    /// are decompressed one at a time as they are read.
    public init(kdump file: KdumpFile) {
        let pages = CompressedPages(file)
        self.init(source: file.source, index: .compressed(pages), stored: pages.storedPages, missing: 0, notes: [])
    }

    /// A raw image of physical memory: page N at file offset N × 0x1000.
    public init(rawImage source: ByteSource) throws {
        let index = try RunIndex(placed: [RunIndex.Run(basePage: 0, pageCount: source.count / Self.pageSize, fileOffset: 0)], fileSize: source.count)
        self.init(source: source, index: .runs(index), stored: index.storedPages, missing: index.missingPages, notes: index.notes)
    }

    /// Indexes a bitmap dump (DumpType 2, 5, 6).
    public init(source: ByteSource, bitmap: BitmapDumpHeader) throws {
        let index = try BitmapIndex(source: source, header: bitmap)
        self.init(source: source, index: .bitmap(index), stored: index.presentPages, missing: index.missingPages, notes: index.notes)
    }

    private init(source: ByteSource, index: Index, stored: UInt64, missing: UInt64, notes: [String]) {
        self.source = source
        self.index = index
        self.storedPages = stored
        self.missingPages = missing
        self.notes = notes
    }

    /// Where page `pfn` is.
    public func locate(pfn: UInt64) -> PageLocation {
        let offset: UInt64?
        switch index {
        case .runs(let runs): offset = runs.fileOffset(of: pfn)
        case .bitmap(let bitmap): offset = bitmap.fileOffset(of: pfn)
        case .compressed(let pages): return pages.descriptorIndex(of: pfn).map { .compressed(descriptor: $0) } ?? .notInDump
        }
        guard let offset else { return .notInDump }
        return source.contains(offset: offset, length: Self.pageSize) ? .inFile(offset) : .beyondEndOfFile(offset)
    }

    /// True for bitmap dumps, false for run-based (full and range) dumps.
    public var isBitmap: Bool {
        if case .bitmap = index { return true }
        return false
    }

    /// Bytes the index itself holds in memory (the run table or the rank array).
    public var indexByteCount: Int {
        switch index {
        case .runs(let runs): runs.runs.count * MemoryLayout<RunIndex.Run>.stride
        case .bitmap(let bitmap): bitmap.rank.count * MemoryLayout<UInt32>.stride
        case .compressed(let pages): pages.rank.count * MemoryLayout<UInt32>.stride + pages.file.storedBitmap.count * MemoryLayout<UInt64>.stride
        }
    }

    /// The first `limit` runs of stored pages as (first PFN, page count), and how many runs
    /// there are in all; for reports.
    public func runs(limit: Int = .max) -> (runs: [(basePage: UInt64, pageCount: UInt64)], total: Int) {
        switch index {
        case .runs(let index): (index.runs.prefix(limit).map { ($0.basePage, $0.pageCount) }, index.runs.count)
        case .bitmap(let bitmap): bitmap.presentRuns(limit: limit)
        case .compressed(let pages): pages.presentRuns(limit: limit)
        }
    }

    /// Reads a little-endian u64 at physical address `pa`, which must not cross a page.
    public func u64(physical pa: UInt64) -> PhysicalRead<UInt64> {
        switch locate(pfn: pa >> 12) {
        case .inFile(let offset): .value(source.uncheckedU64(at: offset + (pa & 0xFF8)))
        case .notInDump: .notInDump
        case .beyondEndOfFile: .beyondEndOfFile
        case .compressed: (try? u64(at: pa & ~7, reading: pa)).map { .value($0) } ?? .beyondEndOfFile
        }
    }

    /// The little-endian u64 at physical address `pa` (which must not cross a page), or the
    /// error for reading `address` through it.
    func u64(at pa: UInt64, reading address: UInt64) throws(MemoryError) -> UInt64 {
        if case .compressed(let pages) = index {
            return try pages.page(pa >> 12, reading: address).littleEndian(at: Int(pa & 0xFFF), width: 8)
        }
        return source.uncheckedU64(at: try fileOffset(physical: pa, reading: address))
    }

    /// File offset of the byte at physical address `pa`, or the error for reading the (virtual or
    /// physical) address `address` through it. A page stored compressed has no offset of its
    /// own: it is `.undecodable` here, and read with `read(physical:count:)`.
    public func fileOffset(physical pa: UInt64, reading address: UInt64) throws(MemoryError) -> UInt64 {
        switch locate(pfn: pa >> 12) {
        case .inFile(let offset): return offset + (pa & 0xFFF)
        case .notInDump: throw MemoryError(.physicalPageNotInDump, address: address, physicalAddress: pa)
        case .beyondEndOfFile: throw MemoryError(.truncated, address: address, physicalAddress: pa)
        case .compressed: throw MemoryError(.undecodable, address: address, physicalAddress: pa)
        }
    }

    /// Copies `count` bytes at physical address `pa`; fails if any page is absent.
    public func read(physical pa: UInt64, count: Int) throws -> [UInt8] {
        try gather(count: count, from: pa) { $0 }
    }

    /// Copies `count` bytes page by page from `start` on; `physicalAddress` maps an address to
    /// the physical address of its byte or throws. Allocation grows with what is actually read,
    /// so a huge count fails at the first missing page, not in malloc.
    func gather(count: Int, from start: UInt64, _ physicalAddress: (UInt64) throws -> UInt64) throws -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(min(max(count, 0), 0x1_0000))
        var address = start
        while result.count < count {
            let inPage = Int(min(Self.pageSize - (address & 0xFFF), UInt64(count - result.count)))
            let pa = try physicalAddress(address)
            if case .compressed(let pages) = index {
                let page = try pages.page(pa >> 12, reading: address)
                result += page[Int(pa & 0xFFF)..<Int(pa & 0xFFF) + inPage]
            } else {
                result += try source.bytes(at: fileOffset(physical: pa, reading: address), count: UInt64(inPage))
            }
            address &+= UInt64(inPage)
        }
        return result
    }
}

/// The outcome of a physical read that may legitimately miss.
public enum PhysicalRead<Value: Sendable>: Sendable {
    case value(Value)
    case notInDump
    case beyondEndOfFile
}
