import DumpFormat
import SymbolFiles

/// Where the kernel keeps the fields an analysis reads, for one dump.
///
/// KDDEBUGGER_DATA64 gives some offsets directly (thread stacks, KPRCB context, EPROCESS parent
/// and DTB); the rest come from per-build tables derived from Microsoft's symbols (shared/docs
/// kernel-offsets-by-build.txt). A build with no table takes them from the kernel's own types
/// when the site has its symbol file, else gets its process-list offset from the invariants of
/// §5.3 of the format notes, and the report says which.
public struct KernelLayout: Sendable, Equatable {
    // EPROCESS (KPROCESS is its first member)
    public var processDirectoryTableBase: UInt64 = 0x28
    public var processUniqueId: UInt64
    public var processActiveLinks: UInt64 { processUniqueId &+ 8 }  // an invariant of every build
    public var processParentId: UInt64
    public var processImageFileName: UInt64?
    public var processThreadListHead: UInt64?

    // KTHREAD / ETHREAD
    public var threadStackLimit: UInt64 = 0x30
    public var threadStackBase: UInt64 = 0x38
    public var threadKernelStack: UInt64 = 0x58
    public var threadTrapFrame: UInt64 = 0x90
    public var threadState: UInt64 = 0x184
    public var threadApcProcess: UInt64 = 0xB8
    public var threadCid: UInt64?
    public var threadListEntry: UInt64?

    // KPRCB
    public var prcbCurrentThread: UInt64 = 0x8
    public var prcbIdleThread: UInt64 = 0x18
    /// ProcessorState.ContextFrame: the CONTEXT the CPU saved when the dump was taken.
    public var prcbContextFrame: UInt64
    public var prcbTimerTable: UInt64?
    /// KTIMER_TABLE.TimerEntries is [256] up to 18362 and [2][256] from 19041 on.
    public var timerListCount: Int

    /// Where the offsets came from, for the report.
    public var source: String

    /// Offsets of the build families in the tables (§5.2 of the format notes).
    struct BuildTable {
        var builds: ClosedRange<UInt32>
        var uniqueId, parentId, imageFileName, processThreadList: UInt64
        var cid, threadListEntry: UInt64
        var contextFrame, timerTable: UInt64
        var timerLists: Int
    }

    static let tables: [BuildTable] = [
        // 10240 to 17134 and 22621 to 26100 are from one kernel version each (Vergilius's PDB
        // dumps); the fields here are the same in every version the notes compare.
        BuildTable(builds: 10240...10240, uniqueId: 0x2E8, parentId: 0x3E0, imageFileName: 0x448, processThreadList: 0x480,
                   cid: 0x628, threadListEntry: 0x690, contextFrame: 0x120, timerTable: 0x3600, timerLists: 256),
        BuildTable(builds: 10586...10586, uniqueId: 0x2E8, parentId: 0x3E0, imageFileName: 0x450, processThreadList: 0x488,
                   cid: 0x628, threadListEntry: 0x690, contextFrame: 0x120, timerTable: 0x3600, timerLists: 256),
        BuildTable(builds: 14393...14393, uniqueId: 0x2E8, parentId: 0x3E0, imageFileName: 0x450, processThreadList: 0x488,
                   cid: 0x630, threadListEntry: 0x698, contextFrame: 0x120, timerTable: 0x3600, timerLists: 256),
        BuildTable(builds: 15063...15063, uniqueId: 0x2E0, parentId: 0x3E0, imageFileName: 0x450, processThreadList: 0x488,
                   cid: 0x638, threadListEntry: 0x6A0, contextFrame: 0x1F0, timerTable: 0x3680, timerLists: 256),
        BuildTable(builds: 16299...16299, uniqueId: 0x2E0, parentId: 0x3E0, imageFileName: 0x450, processThreadList: 0x488,
                   cid: 0x638, threadListEntry: 0x6A8, contextFrame: 0x1F0, timerTable: 0x3680, timerLists: 256),
        BuildTable(builds: 17134...17134, uniqueId: 0x2E0, parentId: 0x3E0, imageFileName: 0x450, processThreadList: 0x488,
                   cid: 0x638, threadListEntry: 0x6A8, contextFrame: 0x1F0, timerTable: 0x3680, timerLists: 256),
        BuildTable(builds: 17763...17763, uniqueId: 0x2E0, parentId: 0x3E0, imageFileName: 0x450, processThreadList: 0x488,
                   cid: 0x638, threadListEntry: 0x6A8, contextFrame: 0x1F0, timerTable: 0x3680, timerLists: 256),
        BuildTable(builds: 18326...18363, uniqueId: 0x2E8, parentId: 0x3E8, imageFileName: 0x450, processThreadList: 0x488,
                   cid: 0x648, threadListEntry: 0x6B8, contextFrame: 0x1F0, timerTable: 0x3680, timerLists: 256),
        // 19041 to 19045 (Windows 10 2004 to 22H2) share one kernel layout.
        BuildTable(builds: 19041...19045, uniqueId: 0x440, parentId: 0x540, imageFileName: 0x5A8, processThreadList: 0x5E0,
                   cid: 0x478, threadListEntry: 0x4E8, contextFrame: 0x1F0, timerTable: 0x3940, timerLists: 512),
        BuildTable(builds: 20348...20348, uniqueId: 0x440, parentId: 0x540, imageFileName: 0x5A8, processThreadList: 0x5E0,
                   cid: 0x4C8, threadListEntry: 0x538, contextFrame: 0x1F0, timerTable: 0x3C00, timerLists: 512),
        BuildTable(builds: 22000...22000, uniqueId: 0x440, parentId: 0x540, imageFileName: 0x5A8, processThreadList: 0x5E0,
                   cid: 0x4C8, threadListEntry: 0x538, contextFrame: 0x1F0, timerTable: 0x3C00, timerLists: 512),
        // Windows 11 22H2 and 23H2 share one kernel layout.
        BuildTable(builds: 22621...22631, uniqueId: 0x440, parentId: 0x540, imageFileName: 0x5A8, processThreadList: 0x5E0,
                   cid: 0x4C8, threadListEntry: 0x538, contextFrame: 0x1F0, timerTable: 0x3C00, timerLists: 512),
        // Windows 11 24H2 moved the EPROCESS and ETHREAD fields down and the timer table up.
        BuildTable(builds: 26100...26100, uniqueId: 0x1D0, parentId: 0x2D0, imageFileName: 0x338, processThreadList: 0x370,
                   cid: 0x508, threadListEntry: 0x578, contextFrame: 0x1F0, timerTable: 0x4100, timerLists: 512),
    ]

    /// The layout for `build`, with KDBG's own offsets taking precedence. Returns nil for a
    /// build without a table; `discovered(...)` handles those.
    public static func known(build: UInt32, debuggerData kdbg: DebuggerData?) -> KernelLayout? {
        guard let table = tables.first(where: { $0.builds.contains(build) }) else { return nil }
        var layout = KernelLayout(
            processUniqueId: table.uniqueId, processParentId: table.parentId, processImageFileName: table.imageFileName,
            processThreadListHead: table.processThreadList, threadCid: table.cid,
            threadListEntry: table.threadListEntry, prcbContextFrame: table.contextFrame,
            prcbTimerTable: table.timerTable, timerListCount: table.timerLists,
            source: "KDDEBUGGER_DATA64 and the build \(table.builds.lowerBound) table")
        layout.apply(kdbg)
        return layout
    }

    /// A layout for a build with no table: KDBG's offsets, plus the process-list offset found
    /// from invariants (`processUniqueId`); fields nothing can vouch for stay nil.
    public static func discovered(processUniqueId: UInt64, imageFileName: UInt64?, debuggerData kdbg: DebuggerData) -> KernelLayout {
        var layout = KernelLayout(
            processUniqueId: processUniqueId, processParentId: 0, processImageFileName: imageFileName,
            processThreadListHead: nil, threadCid: nil, threadListEntry: nil,
            prcbContextFrame: 0x1F0, prcbTimerTable: nil, timerListCount: 0,
            source: "KDDEBUGGER_DATA64 and offsets found from invariants (no table for this build)")
        layout.apply(kdbg)
        return layout
    }

    /// A layout from the kernel's own types (its PDB or ISF table), for a build the tables lack;
    /// nil when the types do not place EPROCESS.UniqueProcessId, which everything else hangs
    /// on. KDBG's offsets still override, as for the tables.
    public static func fromTypes(_ types: any KernelTypeLayout, origin: String, debuggerData kdbg: DebuggerData?) -> KernelLayout? {
        // A symbol file is untrusted: an offset must lie inside its structure, and the
        // structures are tens of KiB at most (KPRCB, the largest, is 0xAF00 bytes in 19041).
        func offset(_ type: String, _ path: String) -> UInt64? {
            guard let offset = types.field(path, in: type)?.offset, offset < min(types.size(of: type) ?? 0x2_0000, 0x2_0000) else { return nil }
            return offset
        }
        guard let uniqueId = offset("_EPROCESS", "UniqueProcessId") else { return nil }
        // TimerEntries is [256] or [2][256] of KTIMER_TABLE_ENTRY: its bytes over one entry's.
        let timerLists = types.field("TimerEntries", in: "_KTIMER_TABLE")?.size.flatMap { total in
            types.size(of: "_KTIMER_TABLE_ENTRY").flatMap { $0 > 0 && total / $0 <= 4096 ? Int(total / $0) : nil }
        }
        var layout = KernelLayout(
            processUniqueId: uniqueId, processParentId: offset("_EPROCESS", "InheritedFromUniqueProcessId") ?? 0,
            processImageFileName: offset("_EPROCESS", "ImageFileName"), processThreadListHead: offset("_EPROCESS", "ThreadListHead"),
            threadCid: offset("_ETHREAD", "Cid"), threadListEntry: offset("_ETHREAD", "ThreadListEntry"),
            prcbContextFrame: offset("_KPRCB", "ProcessorState.ContextFrame") ?? 0x1F0,
            prcbTimerTable: timerLists == nil ? nil : offset("_KPRCB", "TimerTable"), timerListCount: timerLists ?? 0,
            source: "KDDEBUGGER_DATA64 and the kernel's own types in \(origin)")
        let fields: [(WritableKeyPath<KernelLayout, UInt64>, String, String)] = [
            (\.processDirectoryTableBase, "_KPROCESS", "DirectoryTableBase"),
            (\.threadStackLimit, "_KTHREAD", "StackLimit"), (\.threadStackBase, "_KTHREAD", "StackBase"),
            (\.threadKernelStack, "_KTHREAD", "KernelStack"), (\.threadTrapFrame, "_KTHREAD", "TrapFrame"),
            (\.threadState, "_KTHREAD", "State"), (\.threadApcProcess, "_KTHREAD", "ApcState.Process"),
            (\.prcbCurrentThread, "_KPRCB", "CurrentThread"), (\.prcbIdleThread, "_KPRCB", "IdleThread"),
        ]
        for (field, type, path) in fields { if let value = offset(type, path) { layout[keyPath: field] = value } }
        layout.apply(kdbg)
        return layout
    }

    /// KDBG's structure offsets are the kernel's own statement and override the tables.
    mutating func apply(_ kdbg: DebuggerData?) {
        guard let kdbg else { return }
        func set(_ value: UInt16?, _ field: WritableKeyPath<KernelLayout, UInt64>) { if let value, value != 0 { self[keyPath: field] = UInt64(value) } }
        set(kdbg.offsetEprocessDirectoryTableBase, \.processDirectoryTableBase)
        set(kdbg.offsetEprocessParentCID, \.processParentId)
        set(kdbg.offsetKThreadKernelStack, \.threadKernelStack)
        set(kdbg.offsetKThreadState, \.threadState)
        set(kdbg.offsetKThreadApcProcess, \.threadApcProcess)
        set(kdbg.offsetPrcbCurrentThread, \.prcbCurrentThread)
        set(kdbg.offsetPrcbIdleThread, \.prcbIdleThread)
        set(kdbg.offsetPrcbProcStateContext, \.prcbContextFrame)
        if let limit = kdbg.offsetKThreadStackLimit, limit != 0 { threadStackLimit = UInt64(limit) }
        if let base = kdbg.offsetKThreadStackBase, base != 0 { threadStackBase = UInt64(base) }
    }
}
