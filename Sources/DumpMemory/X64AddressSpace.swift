import DumpFormat

/// x64 4-level address translation (PML4 -> PDPT -> PD -> PT) over a dump's physical memory,
/// for any directory table base: the kernel's from the header or a process's from its KPROCESS.
///
/// Handles 4 KiB, 2 MiB (PDE.PS) and 1 GiB (PDPTE.PS) pages, and Windows transition entries
/// (Valid 0, Transition 1, Prototype 0): the frame is still a real page on the standby or
/// modified list, and WinDbg reads it when the dump has it. Page-file and prototype entries
/// cannot be resolved from a kernel dump and fail with a `MemoryError` saying so.
public final class X64AddressSpace: KernelAddressSpace {
    public let physical: PhysicalMemory
    /// CR3 with the PCID bits (0-11) and bit 63 cleared.
    public let directoryTableBase: UInt64
    /// Undoes what Windows does to non-present entries against L1TF.
    private let swizzle: InvalidEntrySwizzle

    /// A direct-mapped cache of VA page -> PA page. Kernel walks touch the same few pages over
    /// and over (list heads, KPRCBs, stacks), so even 1024 slots catch most lookups.
    public static let defaultCacheSlots = 1024
    private let cacheMask: Int
    private var cacheTags: [UInt64]
    private var cachePages: [UInt64]

    /// Bits 12..51 of a present entry: the next table or page frame.
    static let frameMask: UInt64 = 0x000F_FFFF_FFFF_F000
    /// A transition entry's PageFrameNumber field (bits 12..47, `_MMPTE_TRANSITION`); the bits
    /// above it are software bits that Windows uses for other things.
    static let transitionFrameMask: UInt64 = 0x0000_FFFF_FFFF_F000

    /// - Parameters:
    ///   - cacheSlots: a power of two; 0 turns the cache off (benchmarks of the walk itself).
    ///   - swizzle: how non-present entries were swizzled against L1 Terminal Fault; undone
    ///     before a transition frame is used or an entry is classified.
    public init(physical: PhysicalMemory, directoryTableBase: UInt64, cacheSlots: Int = defaultCacheSlots,
                swizzle: InvalidEntrySwizzle = InvalidEntrySwizzle(highPhysicalBit: nil, swizzleBit: nil)) {
        precondition(cacheSlots == 0 || cacheSlots.nonzeroBitCount == 1, "cacheSlots must be 0 or a power of two")
        self.physical = physical
        self.directoryTableBase = directoryTableBase & Self.frameMask
        self.swizzle = swizzle
        cacheMask = cacheSlots - 1
        cacheTags = [UInt64](repeating: .max, count: max(cacheSlots, 1))
        cachePages = [UInt64](repeating: 0, count: max(cacheSlots, 1))
    }

    /// Translates `va` to a physical address.
    public func translate(_ va: UInt64) -> Result<UInt64, MemoryError> {
        let page = va >> 12
        guard cacheMask >= 0 else { return walk(va) }
        let slot = Int(page & UInt64(cacheMask))
        if cacheTags[slot] == page { return .success(cachePages[slot] | (va & 0xFFF)) }
        let result = walk(va)
        if case .success(let pa) = result {
            cacheTags[slot] = page
            cachePages[slot] = pa & ~0xFFF
        }
        return result
    }

    private func walk(_ va: UInt64) -> Result<UInt64, MemoryError> {
        guard isCanonical(va) else { return .failure(MemoryError(.nonCanonical, address: va)) }
        var table = directoryTableBase
        for level in [PagingLevel.pml4, .pdpt, .pd, .pt] {
            let entryAddress = table | ((va >> level.shift) & 0x1FF) << 3
            let entry: UInt64
            switch physical.u64(physical: entryAddress) {
            case .value(let value): entry = value
            case .notInDump: return .failure(MemoryError(.physicalPageNotInDump, address: va, level: level, entryAddress: entryAddress, physicalAddress: entryAddress))
            case .beyondEndOfFile: return .failure(MemoryError(.truncated, address: va, level: level, entryAddress: entryAddress, physicalAddress: entryAddress))
            }
            if entry & 1 == 0 {
                let invalid = swizzle.unswizzled(entry)
                guard let frame = Self.transitionFrame(invalid) else {
                    return .failure(MemoryError(Self.absenceReason(invalid), address: va, level: level, entryAddress: entryAddress, entry: entry))
                }
                // In a non-present entry bit 7 is a protection bit, not PS: a transition entry
                // always names a 4 KiB frame (a page, or the next table in transition).
                table = frame
                continue
            }
            if entry & 0x80 != 0, level == .pdpt || level == .pd {
                let pageMask: UInt64 = level == .pdpt ? 0x3FFF_FFFF : 0x1F_FFFF
                return .success((entry & Self.frameMask & ~pageMask) | (va & pageMask))
            }
            table = entry & Self.frameMask
        }
        return .success(table | (va & 0xFFF))
    }

    /// The frame of a transition entry, or nil when `entry` is not one.
    static func transitionFrame(_ entry: UInt64) -> UInt64? {
        let transition = entry & (1 << 11) != 0
        let prototype = entry & (1 << 10) != 0
        return transition && !prototype ? entry & transitionFrameMask : nil
    }

    /// Why a non-present, non-transition entry cannot be followed (`_MMPTE_SOFTWARE` and
    /// `_MMPTE_PROTOTYPE` in the kernel's symbols).
    static func absenceReason(_ entry: UInt64) -> MemoryError.Code {
        if entry & (1 << 10) != 0 { return .prototype }
        if entry >> 32 != 0 { return .inPageFile }  // PageFileHigh: an offset in a page file
        return .notPresent
    }

    public func read(_ va: UInt64, count: Int) throws -> [UInt8] {
        try physical.gather(count: count, from: va) { va in try translate(va).get() }
    }

    /// Fast path for the most common read in list and stack walks.
    public func u64(_ va: UInt64) throws -> UInt64 {
        guard va & 0xFFF <= 0xFF8 else { return try littleEndian(va, 8) }
        return try physical.u64(at: translate(va).get(), reading: va)
    }
}
