/// The structure offsets that differ between the Windows builds the forge can write, one row
/// per build of shared/docs/kernel-offsets-by-build.txt (transcribed by a script, checked against
/// the document by SymbolOffsetOracleTests). Everything else comes from `Layout19041`: fields the
/// document shows the same in every build, and a few it does not list (KTHREAD's NextProcessor,
/// ApcState.Process and WaitReason), which are 19041's in every forged build. Fields known only
/// for 19041 (EPROCESS CreateTime and ActiveThreads, ETHREAD StartAddress, KPRCB MHz, CpuType,
/// VendorString, DpcStack, IsrStack) are written only there, and KDBG says 0 for them elsewhere.
struct BuildLayout: Sendable {
    var build: UInt32
    var eprocessSize, uniqueProcessId, parentId, peb, imageFileName, threadListHead: Int
    /// KPROCESS.UserDirectoryTableBase, where the build has one.
    var userDirectoryTableBase: Int?
    var ethreadSize, cid, threadListEntry: Int
    var kprcbSize, processorState, contextFrame, context, timerTable: Int
    /// KTIMER_TABLE.TimerEntries: 256 lists up to 18362, 512 from 19041 on.
    var timerLists: Int

    var activeProcessLinks: Int { uniqueProcessId + 8 }
    /// ProcessorState.SpecialRegisters.Cr3.
    var cr3: Int { processorState + 0x10 }
    /// The KPCR ends with its KPRCB.
    var kpcrSize: Int { Layout19041.KPCR.prcb + kprcbSize }
    /// Windows 10 2004 to 22H2 share 19041's kernel layout, every field of which the forge knows.
    var knowsEveryField: Bool { build == 19041 }

    /// KDDEBUGGER_DATA64's 16-bit offset fields for this build: 19041's, with this build's
    /// sizes and offsets where they differ, and 0 ("not given") for those known only for 19041.
    var debuggerDataOffsets16: [(Int, UInt16)] {
        guard !knowsEveryField else { return Layout19041.KDBG.offsets16 }
        let own: [Int: Int] = [0x2A8: eprocessSize, 0x2AA: peb, 0x2AC: parentId, 0x2B0: kprcbSize, 0x2BC: contextFrame,
                               0x2C0: ethreadSize, 0x2E0: kpcrSize, 0x2F2: processorState, 0x338: context]
        let onlyIn19041: Set<Int> = [0x2B2, 0x2B6, 0x2B8, 0x2BA, 0x354, 0x356, 0x358]  // DPC routine, MHz, CPU type, vendor, DPC and ISR stacks
        return Layout19041.KDBG.offsets16.map { offset, value in
            (offset, onlyIn19041.contains(offset) ? 0 : own[offset].map { UInt16($0) } ?? value)
        }
    }

    /// The row for `build`; 19042 to 19045, and builds the forge has no row for (a test of
    /// offset discovery names one), are written with 19041's.
    static func forging(_ build: UInt32, shift: Int = 0) -> BuildLayout {
        precondition(shift % 8 == 0 && shift >= 0, "forge: offsetShift must be a non-negative multiple of 8")
        guard var layout = rows.first(where: { $0.build == build }) ?? rows.first(where: { $0.build == 19041 }) else {
            preconditionFailure("forge: the 19041 row is missing")
        }
        guard shift != 0 else { return layout }
        layout.build = build
        layout.eprocessSize += shift
        layout.ethreadSize += shift
        for field in [\BuildLayout.uniqueProcessId, \.parentId, \.peb, \.imageFileName, \.threadListHead, \.cid, \.threadListEntry] {
            layout[keyPath: field] += shift
        }
        return layout
    }

    static let rows: [BuildLayout] = [
        BuildLayout(build: 10240, eprocessSize: 0x798, uniqueProcessId: 0x2e8, parentId: 0x3e0, peb: 0x3f8,
                    imageFileName: 0x448, threadListHead: 0x480, userDirectoryTableBase: nil,
                    ethreadSize: 0x7c0, cid: 0x628, threadListEntry: 0x690,
                    kprcbSize: 0x6900, processorState: 0x40, contextFrame: 0x120, context: 0x6280, timerTable: 0x3600, timerLists: 256),
        BuildLayout(build: 10586, eprocessSize: 0x788, uniqueProcessId: 0x2e8, parentId: 0x3e0, peb: 0x3f8,
                    imageFileName: 0x450, threadListHead: 0x488, userDirectoryTableBase: nil,
                    ethreadSize: 0x7c0, cid: 0x628, threadListEntry: 0x690,
                    kprcbSize: 0x6900, processorState: 0x40, contextFrame: 0x120, context: 0x6280, timerTable: 0x3600, timerLists: 256),
        BuildLayout(build: 14393, eprocessSize: 0x7c8, uniqueProcessId: 0x2e8, parentId: 0x3e0, peb: 0x3f8,
                    imageFileName: 0x450, threadListHead: 0x488, userDirectoryTableBase: 0x2c0,
                    ethreadSize: 0x7e0, cid: 0x630, threadListEntry: 0x698,
                    kprcbSize: 0x7ec0, processorState: 0x40, contextFrame: 0x120, context: 0x6300, timerTable: 0x3600, timerLists: 256),
        BuildLayout(build: 15063, eprocessSize: 0x818, uniqueProcessId: 0x2e0, parentId: 0x3e0, peb: 0x3f8,
                    imageFileName: 0x450, threadListHead: 0x488, userDirectoryTableBase: nil,
                    ethreadSize: 0x810, cid: 0x638, threadListEntry: 0x6a0,
                    kprcbSize: 0x6a40, processorState: 0x100, contextFrame: 0x1f0, context: 0x6380, timerTable: 0x3680, timerLists: 256),
        BuildLayout(build: 16299, eprocessSize: 0x838, uniqueProcessId: 0x2e0, parentId: 0x3e0, peb: 0x3f8,
                    imageFileName: 0x450, threadListHead: 0x488, userDirectoryTableBase: nil,
                    ethreadSize: 0x818, cid: 0x638, threadListEntry: 0x6a8,
                    kprcbSize: 0x6980, processorState: 0x100, contextFrame: 0x1f0, context: 0x62c0, timerTable: 0x3680, timerLists: 256),
        BuildLayout(build: 17134, eprocessSize: 0x848, uniqueProcessId: 0x2e0, parentId: 0x3e0, peb: 0x3f8,
                    imageFileName: 0x450, threadListHead: 0x488, userDirectoryTableBase: 0x278,
                    ethreadSize: 0x818, cid: 0x638, threadListEntry: 0x6a8,
                    kprcbSize: 0x7ec0, processorState: 0x100, contextFrame: 0x1f0, context: 0x62c0, timerTable: 0x3680, timerLists: 256),
        BuildLayout(build: 17763, eprocessSize: 0x850, uniqueProcessId: 0x2e0, parentId: 0x3e0, peb: 0x3f8,
                    imageFileName: 0x450, threadListHead: 0x488, userDirectoryTableBase: 0x278,
                    ethreadSize: 0x810, cid: 0x638, threadListEntry: 0x6a8,
                    kprcbSize: 0x7ec0, processorState: 0x100, contextFrame: 0x1f0, context: 0x62c0, timerTable: 0x3680, timerLists: 256),
        BuildLayout(build: 18326, eprocessSize: 0x880, uniqueProcessId: 0x2e8, parentId: 0x3e8, peb: 0x3f8,
                    imageFileName: 0x450, threadListHead: 0x488, userDirectoryTableBase: 0x280,
                    ethreadSize: 0x820, cid: 0x648, threadListEntry: 0x6b8,
                    kprcbSize: 0x8f00, processorState: 0x100, contextFrame: 0x1f0, context: 0x62c0, timerTable: 0x3680, timerLists: 256),
        BuildLayout(build: 18362, eprocessSize: 0x880, uniqueProcessId: 0x2e8, parentId: 0x3e8, peb: 0x3f8,
                    imageFileName: 0x450, threadListHead: 0x488, userDirectoryTableBase: 0x280,
                    ethreadSize: 0x820, cid: 0x648, threadListEntry: 0x6b8,
                    kprcbSize: 0x8f00, processorState: 0x100, contextFrame: 0x1f0, context: 0x62c0, timerTable: 0x3680, timerLists: 256),
        BuildLayout(build: 19041, eprocessSize: 0xa40, uniqueProcessId: 0x440, parentId: 0x540, peb: 0x550,
                    imageFileName: 0x5a8, threadListHead: 0x5e0, userDirectoryTableBase: 0x388,
                    ethreadSize: 0x898, cid: 0x478, threadListEntry: 0x4e8,
                    kprcbSize: 0xaf00, processorState: 0x100, contextFrame: 0x1f0, context: 0x85c0, timerTable: 0x3940, timerLists: 512),
        BuildLayout(build: 20348, eprocessSize: 0xb80, uniqueProcessId: 0x440, parentId: 0x540, peb: 0x550,
                    imageFileName: 0x5a8, threadListHead: 0x5e0, userDirectoryTableBase: 0x388,
                    ethreadSize: 0x8f0, cid: 0x4c8, threadListEntry: 0x538,
                    kprcbSize: 0xbf00, processorState: 0x100, contextFrame: 0x1f0, context: 0x8980, timerTable: 0x3c00, timerLists: 512),
        BuildLayout(build: 22000, eprocessSize: 0xb80, uniqueProcessId: 0x440, parentId: 0x540, peb: 0x550,
                    imageFileName: 0x5a8, threadListHead: 0x5e0, userDirectoryTableBase: 0x388,
                    ethreadSize: 0x8f0, cid: 0x4c8, threadListEntry: 0x538,
                    kprcbSize: 0xbf00, processorState: 0x100, contextFrame: 0x1f0, context: 0x89c0, timerTable: 0x3c00, timerLists: 512),
        BuildLayout(build: 22621, eprocessSize: 0xb80, uniqueProcessId: 0x440, parentId: 0x540, peb: 0x550,
                    imageFileName: 0x5a8, threadListHead: 0x5e0, userDirectoryTableBase: 0x388,
                    ethreadSize: 0x900, cid: 0x4c8, threadListEntry: 0x538,
                    kprcbSize: 0xbf00, processorState: 0x100, contextFrame: 0x1f0, context: 0x89c0, timerTable: 0x3c00, timerLists: 512),
        BuildLayout(build: 22631, eprocessSize: 0xb80, uniqueProcessId: 0x440, parentId: 0x540, peb: 0x550,
                    imageFileName: 0x5a8, threadListHead: 0x5e0, userDirectoryTableBase: 0x388,
                    ethreadSize: 0x900, cid: 0x4c8, threadListEntry: 0x538,
                    kprcbSize: 0xbf00, processorState: 0x100, contextFrame: 0x1f0, context: 0x89c0, timerTable: 0x3c00, timerLists: 512),
        BuildLayout(build: 26100, eprocessSize: 0x840, uniqueProcessId: 0x1d0, parentId: 0x2d0, peb: 0x2e0,
                    imageFileName: 0x338, threadListHead: 0x370, userDirectoryTableBase: 0x158,
                    ethreadSize: 0x788, cid: 0x508, threadListEntry: 0x578,
                    kprcbSize: 0xcf00, processorState: 0x100, contextFrame: 0x1f0, context: 0x8fc0, timerTable: 0x4100, timerLists: 512),
    ]
}
