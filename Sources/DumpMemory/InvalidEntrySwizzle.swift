/// How Windows hides the frame number of a non-present page-table entry from L1 Terminal Fault,
/// and how to undo it.
///
/// Since Windows 10 1803 every non-present entry the memory manager writes (transition,
/// page-file, demand-zero, prototype) goes through MiSwizzleInvalidPte. With InvalidPteMask M
/// (one physical-address bit above all RAM, bit 45 on most Intel CPUs; 0 where the CPU is not
/// affected), an entry that already has M set gets `SwizzleBit` (bit 4 of `_MMPTE_TRANSITION`,
/// `_MMPTE_SOFTWARE` and `_MMPTE_PROTOTYPE`) instead, and any other entry gets M ORed in. So a
/// reader clears M only where SwizzleBit is clear (IceBox `nt_memory.cpp`, libvmi and IntroVirt
/// do the same; WinDbg's `!pte` shows the frame without the bit).
///
/// KDDEBUGGER_DATA64 names both bits (L1tfHighPhysicalBitIndex, L1tfSwizzleBitIndex), but real
/// dumps leave them 0; then M is taken to be bit 45, as MemProcFS assumes when it cannot read
/// MiState.Hardware.InvalidPteMask. That misreads only an unswizzled page-file entry whose
/// PageFileHigh is exactly 0x2000 (classified "not present" instead of "in the page file").
public struct InvalidEntrySwizzle: Sendable, Equatable {
    /// InvalidPteMask: the bit Windows ORs into non-present entries.
    public let mask: UInt64
    /// SwizzleBit: set where the entry had `mask` of its own and was left alone.
    public let swizzleBit: UInt64

    /// The bit most Intel CPUs get (MAXPHYADDR 46, the highest bit below it).
    public static let commonHighBit: UInt8 = 45
    /// `SwizzleBit` in the kernel's symbols.
    public static let symbolSwizzleBit: UInt8 = 4

    /// From KDDEBUGGER_DATA64's two L1TF bytes; 0 or nil (unset) means the common values.
    /// A high bit outside the frame field (12-51) or a swizzle bit outside the software bits
    /// (1-11) is not one Windows would choose, and falls back the same way.
    public init(highPhysicalBit: UInt8?, swizzleBit: UInt8?) {
        let high = highPhysicalBit.flatMap { (12..<52).contains($0) ? $0 : nil } ?? Self.commonHighBit
        let swizzle = swizzleBit.flatMap { (1..<12).contains($0) ? $0 : nil } ?? Self.symbolSwizzleBit
        mask = 1 << UInt64(high)
        self.swizzleBit = 1 << UInt64(swizzle)
    }

    /// The entry as the memory manager meant it.
    public func unswizzled(_ entry: UInt64) -> UInt64 {
        entry & swizzleBit == 0 ? entry & ~mask : entry
    }
}
