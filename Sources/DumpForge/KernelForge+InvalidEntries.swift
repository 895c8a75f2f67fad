/// Non-present page-table entries as Windows writes them, and the probes that check a reader
/// resolves or refuses each for its own reason.
extension KernelForge {
    /// The entry Windows stores for the software entry `entry` (MiSwizzleInvalidPte): with
    /// L1TF mitigation, an entry that has the high bit of its own gets SwizzleBit instead, any
    /// other gets the high bit, so that no non-present entry names a frame of real RAM.
    func swizzled(_ entry: UInt64) -> UInt64 {
        guard description.l1tfMitigation != .off else { return entry }
        let high: UInt64 = 1 << Layout19041.KDBG.l1tfBit
        return entry & high != 0 ? entry | 1 << Layout19041.KDBG.swizzleBit : entry | high
    }

    /// VAs whose translation must fail, each for its own reason, plus pages and a page table in
    /// transition that must resolve. Bits of `_MMPTE_TRANSITION` / `_MMPTE_SOFTWARE` /
    /// `_MMPTE_PROTOTYPE` (19041 symbols): Valid 0, Prototype 10, Transition 11, Protection 5-9,
    /// PageFrameNumber 12-47, PageFileHigh 32-63, ProtoAddress 16-63.
    func addFailureProbes() {
        typealias Probe = ForgedKernel.Probe
        let transition: UInt64 = 1 << 11, prototype: UInt64 = 1 << 10
        // Protection READWRITE (4) sets bit 7, which a reader that mistook a non-present entry
        // for a present one would take for a large page.
        let readWrite: UInt64 = 4 << 5
        // Pages past the pool, never mapped as such: their page table is created by setting the
        // entries directly, so they are not in the record of mappings.
        let base = (allocatePool(0, alignment: 0x1000) + 0x1_0000) & ~0xFFFF
        func pte(_ index: UInt64, _ software: UInt64) -> UInt64 {
            memory.setEntry(root: root, va: base + 0x1000 * index, level: 1, value: swizzled(software))
            return base + 0x1000 * index
        }
        // A page on the standby list: the frame is still real RAM.
        let frame = memory.ram.allocate() << 12
        memory.ram.write(Array("standby page in transition".utf8), at: frame)
        probes.append(Probe(va: pte(0, frame | transition | readWrite) + 0x10, expectation: .mapped(pa: frame + 0x10), why: "transition PTE"))
        // Paged out: PageFileHigh holds the page-file offset.
        probes.append(Probe(va: pte(1, 0x1234 << 32 | readWrite), expectation: .fails("inPageFile", level: 1), why: "page-file PTE"))
        // One whose offset is bit 13 of PageFileHigh (the entry's bit 45) alone: the swizzle
        // leaves it and sets SwizzleBit. Unswizzled and with KDBG silent, the same entry would
        // read as a swizzled demand-zero one, so only a mitigated Windows gets this probe.
        if description.l1tfMitigation != .off {
            probes.append(Probe(va: pte(2, 0x2000 << 32 | readWrite), expectation: .fails("inPageFile", level: 1), why: "page-file PTE with the high bit its own"))
        }
        // Demand-zero: protection only; swizzled, it has the high bit and nothing else above 12.
        probes.append(Probe(va: pte(3, readWrite) + 0x8, expectation: .fails("notPresent", level: 1), why: "demand-zero PTE"))
        // A prototype PTE pointing into section data, and one in transition's clothing.
        probes.append(Probe(va: pte(4, 0xFFFF_A123_4560 << 16 | prototype), expectation: .fails("prototype", level: 1), why: "prototype PTE"))
        probes.append(Probe(va: pte(5, frame | transition | prototype), expectation: .fails("prototype", level: 1), why: "prototype PTE with Transition set"))
        // Never written: the page table was zeroed when it was made.
        probes.append(Probe(va: base + 0x6000 + 0x8, expectation: .fails("notPresent", level: 1), why: "empty PTE"))
        // A page table in transition: the PDE is a transition entry whose frame is a page table
        // that still maps its page.
        let tableVA = (base + 0x40_0000) & ~0x1F_FFFF
        let table = memory.ram.allocate() << 12, page = memory.ram.allocate() << 12
        memory.ram.write64(page | ForgeMemory.present | ForgeMemory.writable | ForgeMemory.accessedDirty | ForgeMemory.noExecute, at: table + 8 * 3)
        memory.setEntry(root: root, va: tableVA, level: 2, value: swizzled(table | transition | readWrite))
        probes.append(Probe(va: tableVA + 0x3000 + 0x20, expectation: .mapped(pa: page + 0x20), why: "page table in transition"))
        // No PML4 entry at all (index 0x150 is never used).
        probes.append(Probe(va: 0xFFFF_A800_0000_0000, expectation: .fails("notPresent", level: 4), why: "empty PML4E"))
        probes.append(Probe(va: 0x0000_8000_0000_1000, expectation: .fails("nonCanonical", level: nil), why: "non-canonical address"))
    }
}
