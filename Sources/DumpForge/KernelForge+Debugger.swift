/// KDDEBUGGER_DATA64, the 1 GiB mapping and the per-process page tables.
extension KernelForge {
    func writeDebuggerData() {
        typealias D = Layout19041.KDBG
        var kdbg = ByteBuffer(count: D.size)
        let listHead = globals + Self.debuggerListHead
        kdbg.put64(listHead, at: 0)
        kdbg.put64(listHead, at: 8)
        kdbg.putASCII("KDBG", at: 0x10)
        kdbg.put32(UInt32(D.size), at: 0x14)
        kdbg.put64(kernelBase, at: D.kernBase)
        kdbg.put64(globals + Self.loadedModuleListOffset, at: D.psLoadedModuleList)
        kdbg.put64(globals + Self.activeProcessHeadOffset, at: D.psActiveProcessHead)
        kdbg.put64(globals + Self.pfnDatabaseOffset, at: D.mmPfnDatabase)
        kdbg.put64(globals + Self.buildLabOffset, at: D.ntBuildLab)
        kdbg.put64(globals + Self.processorBlockOffset, at: D.kiProcessorBlock)
        kdbg.put64(globals + Self.unloadedDriversOffset, at: D.mmUnloadedDrivers)
        kdbg.put64(globals + Self.lastUnloadedDriverOffset, at: D.mmLastUnloadedDriver)
        kdbg.put64(pteBase, at: D.pteBase)
        if description.l1tfMitigation == .swizzledNamedInDebuggerData {
            kdbg.put8(UInt8(D.l1tfBit), at: D.l1tfHighPhysicalBitIndex)
            kdbg.put8(UInt8(D.swizzleBit), at: D.l1tfSwizzleBitIndex)
        }
        for (offset, value) in layout.debuggerDataOffsets16 { kdbg.put16(value, at: offset) }
        // KTHREAD StackLimit and StackBase are the same in every build; QueueListEntry and
        // ETHREAD IrpList are known only for 19041.
        for (offset, value) in D.offsets32 where layout.knowsEveryField || offset < 0x348 { kdbg.put32(value, at: offset) }
        write(globals + Self.kdbgOffset, description.debuggerDataEncoded ? encoded(kdbg) : kdbg)
        write64(listHead, globals)
        write64(listHead + 8, globals)
        write64(globals + Self.pfnDatabaseOffset, 0xFFFF_BE80_0000_0000)
        var lab = ByteBuffer()
        lab.putASCII("\(description.buildNumber).1.amd64fre.vb_release.191206-1406", at: 0)
        write(globals + Self.buildLabOffset, lab)
    }

    /// KdEncodeDataBlock's output for `block`: each qword q becomes
    /// ROR(BSWAP(q XOR KiWaitAlways) XOR &KdpDataBlockEncoded, KiWaitNever & 63) XOR KiWaitNever,
    /// the inverse of the decoding Volatility and QEMU's elf2dmp apply (format notes §4.4). The
    /// keys are random per dump; the flag variable's address is in the kernel's globals.
    func encoded(_ block: ByteBuffer) -> ByteBuffer {
        var keys = SeededRandom(seed: description.layoutSeed ^ 0x4B44_4247)
        let never = keys.next(), always = keys.next(), flag = globals + 0xF00
        let rotation = never & 63
        func ror(_ value: UInt64) -> UInt64 { rotation == 0 ? value : value >> rotation | value << (64 - rotation) }
        var out = ByteBuffer(count: block.count)
        for at in stride(from: 0, to: block.count & ~7, by: 8) {
            let q = block.bytes[at..<at + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            out.put64(ror((q ^ always).byteSwapped ^ flag) ^ never, at: at)
        }
        return out
    }

    /// The IDT: 256 interrupt gates (16 bytes: offset 0..15, selector, IST and type, offset
    /// 16..31, offset 32..63), every vector at an ntoskrnl handler, named by each KPCR's IdtBase
    /// (+0x38). Written after everything else, from the end of pool, so nothing moves.
    func writeInterruptTable() -> UInt64 {
        let kernel = modules[0]
        func handler(_ name: String) -> UInt64 { kernel.functions[name]?.lowerBound ?? kernel.base + 0x1000 }
        let idt = allocatePool(0x1000, alignment: 0x1000)
        var gates = ByteBuffer(count: 0x1000)
        for vector in 0..<256 {
            let target = handler(vector == 2 ? "KiNmiInterrupt" : vector == 13 ? "KiGeneralProtectionFault" : "KiPageFault")
            gates.put16(UInt16(truncatingIfNeeded: target), at: 16 * vector)
            gates.put16(0x10, at: 16 * vector + 2)
            gates.put8(vector == 2 ? 3 : 0, at: 16 * vector + 4)  // the NMI runs on IST 3
            gates.put8(0x8E, at: 16 * vector + 5)                  // present, DPL 0, 64-bit interrupt gate
            gates.put16(UInt16(truncatingIfNeeded: target >> 16), at: 16 * vector + 6)
            gates.put32(UInt32(truncatingIfNeeded: target >> 32), at: 16 * vector + 8)
        }
        write(idt, gates)
        for processor in processors { write64(processor.kpcr + 0x38, idt) }
        return idt
    }

    /// KUSER_SHARED_DATA at 0xFFFFF78000000000, the page every x64 Windows kernel maps there:
    /// InterruptTime (+0x08) and SystemTime (+0x14) as KSYSTEM_TIME (LowPart, High1Time,
    /// High2Time), NtBuildNumber (+0x260), NtMajorVersion and NtMinorVersion (+0x26C, +0x270),
    /// ActiveProcessorCount (+0x3C0).
    func writeSharedUserData() {
        let va: UInt64 = 0xFFFF_F780_0000_0000
        memory.mapFresh(root: root, va: va, pages: 1)
        var page = ByteBuffer(count: 0x278)
        for (offset, value) in [(0x08, description.systemUpTime), (0x14, description.systemTime)] {
            page.put32(UInt32(truncatingIfNeeded: value), at: offset)
            page.put32(UInt32(truncatingIfNeeded: value >> 32), at: offset + 4)
            page.put32(UInt32(truncatingIfNeeded: value >> 32), at: offset + 8)
        }
        page.put32(0xF000_0000 | description.buildNumber, at: 0x260)  // free build
        page.put32(1, at: 0x264)                                       // NtProductWinNt
        page.put32(10, at: 0x26C)
        page.put32(0, at: 0x270)
        page.put32(UInt32(description.processors), at: 0x3C0)  // ActiveProcessorCount
        write(va, page)
    }

    /// Maps physical 0..1 GiB at one 1 GiB page, and probes a page through it.
    func mapDirectGigabyte() {
        let va = 0xFFFF_D000_0000_0000 + random.below(64) << 30
        memory.map(root: root, va: va, pa: 0, pageSize: 0x4000_0000)
        let kernelPA = memory.translate(root: root, va: kernelBase)!
        if kernelPA < 0x4000_0000 {
            probes.append(.init(va: va + kernelPA + 0x40, expectation: .mapped(pa: kernelPA + 0x40), why: "the kernel image through the 1 GiB page"))
        }
    }

    /// Each process's PML4 shares the kernel's upper half (entries 256-511), except the
    /// self-map entry, which points at the process's own PML4.
    func shareKernelHalf() {
        for processRoot in processRoots {
            for index in UInt64(256)..<512 {
                let entry = index == selfMapIndex ? processRoot | 0x63 : memory.ram.read64(root + 8 * index)
                if entry != 0 { memory.ram.write64(entry, at: processRoot + 8 * index) }
            }
        }
    }
}
