/// KDDEBUGGER_DATA64 ("KDBG"): the kernel's own table of its globals and structure offsets,
/// which is what lets an offline reader work without Microsoft's symbol files.
///
/// The block starts with DBGKD_DEBUG_DATA_HEADER64: a LIST_ENTRY64, OwnerTag "KDBG" at 0x10 and
/// Size at 0x14. Newer Windows versions append fields, so a field is only trusted when it lies
/// inside `Size`; the accessors return nil otherwise.
public struct DebuggerData: Sendable, Equatable {
    public static let ownerTag: UInt32 = 0x4742_444B  // "KDBG"
    /// Windows 10 and 11 write 0x340 to 0x3A0; a Size outside this window is not a KDBG.
    public static let plausibleSizes: ClosedRange<UInt32> = 0x300...0x1000

    /// The block's bytes: `size` of them, or fewer when the copy was cut short.
    public let bytes: [UInt8]
    /// The block's own Size field.
    public let size: UInt32
    /// True when fewer bytes than `size` were available; fields past them read as nil.
    public var isShort: Bool { bytes.count < size }

    /// Interprets `bytes` (at least the 0x18-byte header) as a clear-text KDBG. Throws when the
    /// tag is not "KDBG" or Size is implausible, which is what an encoded block looks like.
    /// Extra bytes are dropped; missing ones only make the fields past them unavailable.
    public init(bytes: [UInt8]) throws {
        guard bytes.count >= 0x18 else {
            throw DumpError(.truncated, "KDDEBUGGER_DATA64 needs at least 0x18 bytes, got \(bytes.count)")
        }
        let tag = Self.load32(bytes, 0x10)
        guard tag == Self.ownerTag else {
            throw DumpError(.corrupt, "KDDEBUGGER_DATA64 OwnerTag is 0x\(hex(tag)), not \"KDBG\" (the block is encoded or not there)")
        }
        let size = Self.load32(bytes, 0x14)
        guard Self.plausibleSizes.contains(size) else {
            throw DumpError(.corrupt, "KDDEBUGGER_DATA64 Size 0x\(hex(size)) is implausible")
        }
        self.size = size
        self.bytes = Array(bytes.prefix(Int(size)))
    }

    /// Reads the tag and Size of a block header (0x18 bytes) without validating them.
    public static func headerFields(_ header: [UInt8]) -> (tag: UInt32, size: UInt32)? {
        header.count >= 0x18 ? (load32(header, 0x10), load32(header, 0x14)) : nil
    }

    static func load32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(bytes[offset + $1]) << (8 * UInt32($1)) }
    }

    func field(_ offset: Int, width: Int) -> UInt64? {
        guard offset + width <= bytes.count else { return nil }
        return (0..<width).reduce(0) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    func u64(_ offset: Int) -> UInt64? { field(offset, width: 8) }
    func u32(_ offset: Int) -> UInt32? { field(offset, width: 4).map { UInt32($0) } }
    func u16(_ offset: Int) -> UInt16? { field(offset, width: 2).map { UInt16($0) } }

    // Pointers (§4.2 of the format notes).
    public var kernBase: UInt64? { u64(0x18) }
    public var psLoadedModuleList: UInt64? { u64(0x48) }
    public var psActiveProcessHead: UInt64? { u64(0x50) }
    public var pspCidTable: UInt64? { u64(0x58) }
    public var mmPfnDatabase: UInt64? { u64(0xC0) }
    public var ntBuildLab: UInt64? { u64(0x208) }
    public var kiProcessorBlock: UInt64? { u64(0x218) }
    public var mmUnloadedDrivers: UInt64? { u64(0x220) }
    public var mmLastUnloadedDriver: UInt64? { u64(0x228) }
    /// The randomized base of the PTE self-map (Windows 10 1607 and later).
    public var pteBase: UInt64? { u64(0x360) }
    /// Paging levels from the bitfield at 0x36 (bits 2-5); 0 when the writer left it unset.
    public var pagingLevels: UInt16? { u16(0x36).map { ($0 >> 2) & 0xF } }
    /// The physical-address bit Windows sets in non-present PTEs to defeat L1TF (19H1+); 0 = unset.
    public var l1tfHighPhysicalBitIndex: UInt8? { field(0x2C2, width: 1).map { UInt8($0) } }
    /// The bit of a non-present PTE that says it was *not* swizzled (`SwizzleBit`, 4); 0 = unset.
    public var l1tfSwizzleBitIndex: UInt8? { field(0x2C3, width: 1).map { UInt8($0) } }

    // Structure offsets (§4.3): what replaces the PDB.
    public var offsetKThreadNextProcessor: UInt16? { u16(0x298) }
    public var offsetKThreadTeb: UInt16? { u16(0x29A) }
    public var offsetKThreadKernelStack: UInt16? { u16(0x29C) }
    public var offsetKThreadInitialStack: UInt16? { u16(0x29E) }
    public var offsetKThreadApcProcess: UInt16? { u16(0x2A0) }
    public var offsetKThreadState: UInt16? { u16(0x2A2) }
    public var sizeEProcess: UInt16? { u16(0x2A8) }
    public var offsetEprocessPeb: UInt16? { u16(0x2AA) }
    public var offsetEprocessParentCID: UInt16? { u16(0x2AC) }
    public var offsetEprocessDirectoryTableBase: UInt16? { u16(0x2AE) }
    public var sizePrcb: UInt16? { u16(0x2B0) }
    public var offsetPrcbCurrentThread: UInt16? { u16(0x2B4) }
    public var offsetPrcbProcStateContext: UInt16? { u16(0x2BC) }
    public var offsetPrcbNumber: UInt16? { u16(0x2BE) }
    public var sizeEThread: UInt16? { u16(0x2C0) }
    public var offsetPrcbContext: UInt16? { u16(0x338) }
    public var offsetKThreadStackLimit: UInt32? { u32(0x340) }
    public var offsetKThreadStackBase: UInt32? { u32(0x344) }
    public var offsetPrcbIdleThread: UInt16? { u16(0x350) }
    public var offsetPrcbDpcStack: UInt16? { u16(0x354) }
    public var offsetPrcbIsrStack: UInt16? { u16(0x356) }
}
