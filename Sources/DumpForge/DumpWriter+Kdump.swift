/// The forged machine as a kdump-compressed file, the other format QEMU's `dump-guest-memory`
/// writes (`format: kdump-zlib|kdump-lzo|kdump-snappy`), written from QEMU's dump/dump.c and
/// makedumpfile's diskdump_mod.h and kept apart from the parser's reading:
///
///     block 0   disk_dump_header ("KDUMP   ", version 6, block size 4096)
///     block 1   kdump_sub_header, the vCPU notes right after it (offset_note 4096 + 104)
///     bitmaps   RAM pages, then stored pages (one bit per PFN, each half whole blocks)
///     then      a 24-byte page descriptor per stored page, in PFN order
///     then      the page data; every zero page shares one stored copy, as QEMU does
///
/// The forge has no compressors of its own: `compress` (a test's, from the real libraries)
/// turns a page into (bytes, method flag), and a page it returns nil for is stored as is, as
/// makedumpfile does when compression does not help.
extension DumpWriter {
    func kdump(_ options: KdumpOptions) -> ForgedDump {
        let block = 0x1000
        let pageCount = Int(description.memory.map(\.upperBound).max() ?? 0)
        let notes = vcpuNotes()
        let subHeaderBlocks = (104 + notes.count + block - 1) / block
        let halfBitmapBlocks = max(1, (pageCount + 8 * block - 1) / (8 * block))
        let bitmapAt = (1 + subHeaderBlocks) * block
        let descriptorsAt = bitmapAt + 2 * halfBitmapBlocks * block

        func isRAM(_ pfn: Int) -> Bool { description.memory.contains { $0.contains(UInt64(pfn)) } }
        let ramPages = (0..<pageCount).filter(isRAM)
        let storedPages = options.omitZeroPages ? ramPages.filter { ram.pages[UInt64($0)]?.contains { $0 != 0 } == true } : ramPages
        let dataAt = descriptorsAt + storedPages.count * 24

        var header = ByteBuffer(count: descriptorsAt)
        header.putASCII("KDUMP   ", at: 0)
        header.put32(6, at: 8)
        header.putASCII("x86_64", at: 12 + 4 * 65)          // utsname.machine
        header.put64(1_796_400_000, at: 408)                 // timestamp.tv_sec
        header.put32(UInt32(block), at: 428)
        header.put32(UInt32(subHeaderBlocks), at: 432)
        header.put32(UInt32(2 * halfBitmapBlocks), at: 436)
        header.put32(UInt32(pageCount), at: 440)             // max_mapnr
        header.put32(UInt32(kernel.processors.count), at: 460)
        header.put32(options.omitZeroPages ? 1 : 0, at: block + 8)  // dump_level
        header.put64(UInt64(block + 104), at: block + 48)    // offset_note
        header.put64(UInt64(notes.count), at: block + 56)
        header.put64(UInt64(pageCount), at: block + 96)      // max_mapnr_64
        header.put(notes.bytes, at: block + 104)
        func setBit(_ pfn: Int, half: Int) {
            let at = bitmapAt + half * halfBitmapBlocks * block + pfn / 8
            header.put8(header.bytes[at] | UInt8(1 << (pfn % 8)), at: at)
        }
        ramPages.forEach { setBit($0, half: 0) }
        storedPages.forEach { setBit($0, half: 1) }

        var descriptors = ByteBuffer(count: storedPages.count * 24)
        var data = ByteBuffer()
        var zeroPageAt: (offset: Int, stored: (bytes: [UInt8], flag: UInt32))?
        for (index, pfn) in storedPages.enumerated() {
            let page = ram.pages[UInt64(pfn)]
            let shared = page == nil ? zeroPageAt : nil
            let offset = shared?.offset ?? dataAt + data.count
            var stored = shared?.stored ?? (bytes: page ?? [UInt8](repeating: 0, count: block), flag: 0)
            if shared == nil {
                if let compressed = options.compress?(stored.bytes), compressed.bytes.count < block { stored = compressed }
                data.put(stored.bytes, at: data.count)
                if page == nil { zeroPageAt = (offset, stored) }
            }
            descriptors.put64(UInt64(offset), at: 24 * index)
            descriptors.put32(UInt32(stored.bytes.count), at: 24 * index + 8)
            descriptors.put32(stored.flag, at: 24 * index + 12)
        }
        let file = header.bytes + descriptors.bytes + data.bytes
        guard options.flattened else { return ForgedDump(size: UInt64(file.count), chunks: [.init(offset: 0, bytes: file)], kernel: kernel) }
        // Out of file order, as a streaming writer may send them: the reader must place each.
        let secondHalf = bitmapAt + halfBitmapBlocks * block
        let dataStart = descriptorsAt + descriptors.count
        return flattened(file, pieces: [0..<464, block..<bitmapAt, secondHalf..<descriptorsAt, bitmapAt..<secondHalf, dataStart..<file.count, descriptorsAt..<dataStart],
                         chunkSize: 0x4000)
    }

    /// `file` as makedumpfile's flattened stream: a 4 KiB header, then (offset, size) pairs in
    /// big-endian, each followed by its bytes, then (-1, -1). The pieces go out in the order
    /// given, in chunks of at most `chunkSize`.
    func flattened(_ file: [UInt8], pieces: [Range<Int>], chunkSize: Int) -> ForgedDump {
        var stream = ByteBuffer(count: 0x1000)
        stream.putASCII("makedumpfile", at: 0)
        func putBigEndian(_ value: UInt64, at offset: Int) { stream.put64(value.byteSwapped, at: offset) }
        putBigEndian(1, at: 16)  // type: flat header
        putBigEndian(1, at: 24)  // version
        func chunk(_ range: Range<Int>) {
            let at = stream.count
            putBigEndian(UInt64(range.lowerBound), at: at)
            putBigEndian(UInt64(range.count), at: at + 8)
            stream.put(Array(file[range]), at: at + 16)
        }
        for piece in pieces {
            var start = piece.lowerBound
            while start < piece.upperBound {
                let end = min(start + chunkSize, piece.upperBound)
                chunk(start..<end)
                start = end
            }
        }
        putBigEndian(UInt64.max, at: stream.count)
        putBigEndian(UInt64.max, at: stream.count)
        return ForgedDump(size: UInt64(stream.count), chunks: [.init(offset: 0, bytes: stream.bytes)], kernel: kernel)
    }
}

/// How `Forge.kdump` writes the file.
public struct KdumpOptions {
    public var compress: (([UInt8]) -> (bytes: [UInt8], flag: UInt32)?)?
    /// Write it as a pipe would carry it (makedumpfile's flattened format).
    public var flattened: Bool
    /// Leave zero pages out of the stored-pages bitmap, as makedumpfile's dump level 1 does.
    public var omitZeroPages: Bool

    public init(compress: (([UInt8]) -> (bytes: [UInt8], flag: UInt32)?)? = nil, flattened: Bool = false, omitZeroPages: Bool = false) {
        self.compress = compress
        self.flattened = flattened
        self.omitZeroPages = omitZeroPages
    }
}
