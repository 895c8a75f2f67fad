/// The forge's model of a machine's physical memory: which frames exist (RAM ranges with holes,
/// such as a VM's PCI hole below 4 GiB), which have been handed out, and the bytes of every page
/// that is not all zeros. Untouched pages are zero and become holes in the written file.
struct PhysicalRAM {
    static let pageSize = 0x1000

    /// RAM as PFN ranges, sorted.
    let ranges: [Range<UInt64>]
    /// Contents of non-zero pages, by PFN.
    private(set) var pages: [UInt64: [UInt8]] = [:]
    /// Frames that belong to user-mode processes (left out of kernel bitmap dumps).
    private(set) var userFrames: Set<UInt64> = []
    /// Frames handed out (page tables and mapped pages), whatever their contents.
    private(set) var usedFrames: Set<UInt64> = []
    private var cursor: UInt64

    init(ranges: [Range<UInt64>], firstFrame: UInt64) {
        self.ranges = ranges
        cursor = firstFrame
    }

    var totalPages: UInt64 { ranges.reduce(0) { $0 + UInt64($1.count) } }

    func isRAM(_ pfn: UInt64) -> Bool { ranges.contains { $0.contains(pfn) } }

    /// Hands out `count` consecutive RAM frames aligned to `alignment` frames.
    mutating func allocate(count: UInt64 = 1, alignment: UInt64 = 1, user: Bool = false) -> UInt64 {
        while true {
            let start = (cursor + alignment - 1) / alignment * alignment
            guard let range = ranges.first(where: { $0.upperBound > start }) else {
                fatalError("forge: the described machine has too little RAM for its contents")
            }
            let first = max(start, (range.lowerBound + alignment - 1) / alignment * alignment)
            if first + count <= range.upperBound {
                cursor = first + count
                for pfn in first..<first + count {
                    usedFrames.insert(pfn)
                    if user { userFrames.insert(pfn) }
                }
                return first
            }
            cursor = range.upperBound
        }
    }

    /// Writes `data` at physical address `pa`, which may span pages.
    mutating func write(_ data: [UInt8], at pa: UInt64) {
        var written = 0
        while written < data.count {
            let address = pa + UInt64(written)
            let pfn = address >> 12
            let inPage = Int(address & 0xFFF)
            let take = min(Self.pageSize - inPage, data.count - written)
            var page = pages[pfn] ?? [UInt8](repeating: 0, count: Self.pageSize)
            page.replaceSubrange(inPage..<inPage + take, with: data[written..<written + take])
            pages[pfn] = page
            written += take
        }
    }

    mutating func write64(_ value: UInt64, at pa: UInt64) {
        write((0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }, at: pa)
    }

    func read(_ pa: UInt64, count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var address = pa
        while result.count < count {
            let inPage = Int(address & 0xFFF)
            let take = min(Self.pageSize - inPage, count - result.count)
            if let page = pages[address >> 12] {
                result += page[inPage..<inPage + take]
            } else {
                result += repeatElement(0, count: take)
            }
            address += UInt64(take)
        }
        return result
    }

    func read64(_ pa: UInt64) -> UInt64 {
        read(pa, count: 8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}
