/// Serialises forged kernel state as DumpType 1 (runs), 5/6 (bitmap), 4 (minidump) and
/// 8/9/0xA (ranges, in DumpWriter+Ranges) files.
struct DumpWriter {
    let description: DumpDescription
    let kernel: ForgedKernel
    let memory: ForgeMemory
    var ram: PhysicalRAM { memory.ram }

    /// Windows fills unset header bytes with "PAGE".
    static let fill = Array("PAGE".utf8)

    /// The 0x2000-byte DUMP_HEADER64.
    func header(dumpType: UInt32, requiredSpace: UInt64) -> ByteBuffer {
        var h = ByteBuffer(Array((0..<0x800).flatMap { _ in Self.fill }))
        h.putASCII("PAGEDU64", at: 0)
        h.put32(0xF, at: 0x8)
        h.put32(description.buildNumber, at: 0xC)
        h.put64(kernel.directoryTableBase | 0x2, at: 0x10)  // a PCID in the low bits, as on real machines
        h.put64(kernel.kernelBase + 0x10_0000 + KernelForge.pfnDatabaseOffset, at: 0x18)
        h.put64(kernel.psLoadedModuleList, at: 0x20)
        h.put64(kernel.psActiveProcessHead, at: 0x28)
        h.put32(0x8664, at: 0x30)
        h.put32(UInt32(description.processors), at: 0x34)
        h.put32(description.bugCheckCode, at: 0x38)
        for (index, parameter) in kernel.bugCheckParameters.prefix(4).enumerated() { h.put64(parameter, at: 0x40 + 8 * index) }
        h.put64(kernel.debuggerDataBlock, at: 0x80)
        let crashing = kernel.processors[description.crashingProcessor]
        h.put(KernelForge.context(crashing.context), at: 0x348)
        // The exception record of a blue screen is KeBugCheckEx's breakpoint.
        h.put(Array(repeating: 0, count: 0x98), at: 0xF00)
        h.put32(0x8000_0003, at: 0xF00)
        h.put64(kernel.modules[0].functions["KeBugCheckEx"]?.lowerBound ?? crashing.context.rip, at: 0xF10)
        h.put32(dumpType, at: 0xF98)
        h.put64(requiredSpace, at: 0xFA0)
        h.put64(description.systemTime, at: 0xFA8)
        if let comment = description.comment {
            h.put(Array(repeating: 0, count: 128), at: 0xFB0)
            h.putASCII(String(comment.prefix(127)), at: 0xFB0)
        }
        h.put64(description.systemUpTime, at: 0x1030)
        h.put32(0, at: 0x103C)  // SecondaryDataState
        h.put32(1, at: 0x1040)  // ProductType: WinNT workstation
        h.put32(0x110, at: 0x1044)  // SuiteMask: TerminalServer | SingleUserTS
        h.put32(0, at: 0x1048)  // WriterStatus
        h.put32(0, at: 0x104C)  // Unused1, KdSecondaryVersion, Unused
        return h
    }

    /// DumpType 1: the run table in the header, then every RAM page run after run.
    func fullDump() -> ForgedDump {
        precondition(description.memory.count <= 42, "forge: a full dump's header holds at most 42 runs")
        let totalPages = description.memory.reduce(0) { $0 + UInt64($1.count) }
        let size = 0x2000 + totalPages * 0x1000
        var h = header(dumpType: 1, requiredSpace: size)
        h.put32(UInt32(description.memory.count), at: 0x88)
        h.put32(0, at: 0x8C)
        h.put64(totalPages, at: 0x90)
        var chunks: [ForgedDump.Chunk] = []
        var runStart: UInt64 = 0x2000
        for (index, range) in description.memory.enumerated() {
            h.put64(range.lowerBound, at: 0x98 + 16 * index)
            h.put64(UInt64(range.count), at: 0xA0 + 16 * index)
            for (pfn, page) in ram.pages where range.contains(pfn) {
                chunks.append(.init(offset: runStart + (pfn - range.lowerBound) * 0x1000, bytes: page))
            }
            runStart += UInt64(range.count) * 0x1000
        }
        chunks.insert(.init(offset: 0, bytes: h.bytes), at: 0)
        return ForgedDump(size: size, chunks: chunks, kernel: kernel)
    }

    /// DumpType 5 ("FDMP", every RAM page) or 6 ("SDMP", kernel pages only).
    func bitmapDump(kernelOnly: Bool) -> ForgedDump {
        let highest = description.memory.map(\.upperBound).max() ?? 0
        let bitCount = (highest + 31) / 32 * 32  // whole ULONGs, as RTL_BITMAP keeps them
        var bitmap = [UInt8](repeating: 0, count: Int(bitCount / 8))
        // Page number -> its position among stored pages.
        var present: [UInt64] = []
        if kernelOnly {
            present = Array(ram.usedFrames.union(ram.pages.keys).subtracting(ram.userFrames).filter(ram.isRAM)).sorted()
            for pfn in present { bitmap[Int(pfn / 8)] |= 1 << (pfn % 8) }
        } else {
            for range in description.memory { Self.setBits(&bitmap, range) }
        }
        let presentCount = kernelOnly ? UInt64(present.count) : ram.totalPages
        let firstPage = (0x2038 + UInt64(bitmap.count) + 0xFFF) & ~0xFFF
        let size = firstPage + presentCount * 0x1000

        var h = header(dumpType: kernelOnly ? 6 : 5, requiredSpace: size)
        h.putASCII(kernelOnly ? "SDMPDUMP" : "FDMPDUMP", at: 0x2000)
        h.put(Array(repeating: 0, count: 0x18), at: 0x2008)
        h.put64(firstPage, at: 0x2020)
        h.put64(presentCount, at: 0x2028)
        h.put64(bitCount, at: 0x2030)
        h.put(bitmap, at: 0x2038)

        let rank: (UInt64) -> UInt64?
        if kernelOnly {
            let positions = Dictionary(uniqueKeysWithValues: present.enumerated().map { ($1, UInt64($0)) })
            rank = { positions[$0] }
        } else {
            let ranges = description.memory
            rank = { pfn in
                var before: UInt64 = 0
                for range in ranges {
                    if range.contains(pfn) { return before + (pfn - range.lowerBound) }
                    before += UInt64(range.count)
                }
                return nil
            }
        }
        var chunks: [ForgedDump.Chunk] = [.init(offset: 0, bytes: h.bytes)]
        for (pfn, page) in ram.pages {
            if let position = rank(pfn) { chunks.append(.init(offset: firstPage + position * 0x1000, bytes: page)) }
        }
        return ForgedDump(size: size, chunks: chunks, kernel: kernel)
    }

    /// Sets bits `range` of a LSB-first bitmap, a byte at a time where it can.
    static func setBits(_ bitmap: inout [UInt8], _ range: Range<UInt64>) {
        var pfn = range.lowerBound
        while pfn < range.upperBound {
            if pfn % 8 == 0, pfn + 8 <= range.upperBound {
                bitmap[Int(pfn / 8)] = 0xFF
                pfn += 8
            } else {
                bitmap[Int(pfn / 8)] |= 1 << (pfn % 8)
                pfn += 1
            }
        }
    }
}
