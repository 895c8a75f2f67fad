import CPageCodecs
import DumpFormat
import Synchronization

/// The pages of a kdump-compressed file, read one at a time: a rank index over the stored-pages
/// bitmap finds a page's descriptor (the n-th set bit is the n-th descriptor), and its bytes are
/// decompressed on first read and kept in a small cache. Nothing is decompressed at open, so an
/// analysis reads only the pages it touches, as with a memory-mapped full dump.
final class CompressedPages: Sendable {
    let file: KdumpFile
    /// rank[w] = set bits in stored-bitmap words 0 ..< w.
    let rank: [UInt32]
    let storedPages: UInt64
    private let cache = Mutex(PageCache())

    /// A direct-mapped cache of decompressed pages: page-table walks and list walks come back
    /// to the same few pages again and again, and a slot per PFN bucket needs no bookkeeping.
    struct PageCache {
        static let slots = 1024  // 4 MiB of pages
        var pfns = [UInt64](repeating: .max, count: slots)
        var pages = [[UInt8]](repeating: [], count: slots)
        /// The last page decompressed, by where its bytes are stored: QEMU stores one zero
        /// page for every zero PFN, and a scan of physical memory meets it again and again.
        var lastStored: (offset: UInt64, size: UInt32, page: [UInt8])?
    }

    /// liblzo2 asks for lzo_init() before use (it checks the library matches its header).
    static let lzoReady = df_lzo_init() == LZO_E_OK

    init(_ file: KdumpFile) {
        self.file = file
        var rank: [UInt32] = []
        rank.reserveCapacity(file.storedBitmap.count + 1)
        var running: UInt64 = 0
        for word in file.storedBitmap {
            rank.append(UInt32(running))  // below 2^32: the bitmap has at most 2^32 bits
            running += UInt64(word.nonzeroBitCount)
        }
        self.rank = rank
        storedPages = running
    }

    /// The descriptor number of page `pfn`, or nil when the file does not store it.
    func descriptorIndex(of pfn: UInt64) -> UInt64? {
        guard pfn < file.pageCount else { return nil }
        let word = file.storedBitmap[Int(pfn >> 6)], bit = pfn & 63
        guard word & (1 << bit) != 0 else { return nil }
        return UInt64(rank[Int(pfn >> 6)]) + UInt64((word & ((1 << bit) - 1)).nonzeroBitCount)
    }

    /// Runs of stored pages, as `PhysicalMemory.runs(limit:)` gives them.
    func presentRuns(limit: Int) -> (runs: [(basePage: UInt64, pageCount: UInt64)], total: Int) {
        BitmapIndex.presentRuns(bitCount: file.pageCount, limit: limit) { file.storedBitmap[Int($0)] }
    }

    /// Page `pfn`'s 4 KiB, or the error for reading `address` through it.
    func page(_ pfn: UInt64, reading address: UInt64) throws(MemoryError) -> [UInt8] {
        let slot = Int(pfn % UInt64(PageCache.slots))
        if let cached = cache.withLock({ $0.pfns[slot] == pfn ? $0.pages[slot] : nil }) { return cached }
        guard let index = descriptorIndex(of: pfn) else {
            throw MemoryError(.physicalPageNotInDump, address: address, physicalAddress: pfn << 12)
        }
        guard let descriptor = try? file.descriptor(index) else {
            throw MemoryError(.truncated, address: address, physicalAddress: pfn << 12)
        }
        // No writer stores more than a page for a page: a larger size is damage, refused
        // before its bytes are gathered.
        guard descriptor.size > 0, UInt64(descriptor.size) <= file.blockSize else {
            throw MemoryError(.undecodable, address: address, physicalAddress: pfn << 12)
        }
        let bytes: [UInt8]
        if let last = cache.withLock({ $0.lastStored }), last.offset == descriptor.offset, last.size == descriptor.size {
            bytes = last.page
        } else {
            guard let stored = try? file.storedBytes(descriptor) else { throw MemoryError(.truncated, address: address, physicalAddress: pfn << 12) }
            guard let page = Self.decompress(stored, descriptor, from: file.source) else {
                throw MemoryError(.undecodable, address: address, physicalAddress: pfn << 12)
            }
            bytes = page
        }
        cache.withLock { cache in
            cache.pfns[slot] = pfn
            cache.pages[slot] = bytes
            cache.lastStored = (descriptor.offset, descriptor.size, bytes)
        }
        return bytes
    }

    /// A page's bytes from its stored form; nil unless it comes out exactly one page long.
    static func decompress(_ stored: KdumpFile.StoredBytes, _ descriptor: KdumpFile.PageDescriptor, from source: ByteSource) -> [UInt8]? {
        let pageSize = Int(PhysicalMemory.pageSize)
        func withInput<T>(_ body: (UnsafeRawBufferPointer) -> T?) -> T? {
            switch stored {
            case .inFile(let offset): source.withUnsafeBytes(at: offset, count: UInt64(descriptor.size), body)
            case .copied(let bytes): bytes.withUnsafeBytes(body)
            }
        }
        if descriptor.compression == .none {
            return descriptor.size == pageSize ? withInput { Array($0) } : nil
        }
        var page = [UInt8](repeating: 0, count: pageSize)
        let produced: Int? = page.withUnsafeMutableBytes { output in
            withInput { input -> Int? in
                guard let inputBase = input.baseAddress, let outputBase = output.baseAddress else { return nil }
                switch descriptor.compression {
                case .zlib:
                    var length = uLongf(pageSize)
                    let status = uncompress(outputBase.assumingMemoryBound(to: Bytef.self), &length, inputBase.assumingMemoryBound(to: Bytef.self), uLong(input.count))
                    return status == Z_OK ? Int(length) : nil
                case .lzo:
                    guard lzoReady else { return nil }
                    var length = lzo_uint(pageSize)
                    let status = lzo1x_decompress_safe(inputBase.assumingMemoryBound(to: UInt8.self), lzo_uint(input.count),
                                                       outputBase.assumingMemoryBound(to: UInt8.self), &length, nil)
                    return status == LZO_E_OK ? Int(length) : nil
                case .snappy:
                    var length = pageSize
                    let status = snappy_uncompress(inputBase.assumingMemoryBound(to: CChar.self), input.count, outputBase.assumingMemoryBound(to: CChar.self), &length)
                    return status == SNAPPY_OK ? length : nil
                case .none, .unsupported:
                    return nil
                }
            }
        }
        return produced == pageSize ? page : nil
    }
}
