import DumpFormat
import DumpMemory

/// A loaded kernel module, from PsLoadedModuleList (full dumps) or the minidump's driver list.
public struct LoadedModule: Sendable, Equatable, Codable {
    public var name: String
    public var path: String?
    public var base: UInt64
    public var size: UInt32
    public var timeDateStamp: UInt32
    public var checkSum: UInt32
    /// .pdata as KLDR_DATA_TABLE_ENTRY records it (full dumps): VA and size in bytes.
    public var exceptionTable: UInt64?
    public var exceptionTableSize: UInt32?

    public func contains(_ address: UInt64) -> Bool { address >= base && address - base < UInt64(size) }
}

/// A driver the kernel remembers unloading (MmUnloadedDrivers).
public struct UnloadedModule: Sendable, Equatable {
    public var name: String
    public var start: UInt64
    public var end: UInt64
}

public struct KernelThread: Sendable, Equatable {
    public var address: UInt64
    public var threadId: UInt64?
    public var processAddress: UInt64?
    public var state: UInt8?
    public var stackBase: UInt64?
    public var stackLimit: UInt64?
    public var kernelStack: UInt64?
    public var trapFrame: UInt64?
}

public struct KernelProcess: Sendable, Equatable {
    public var address: UInt64
    public var processId: UInt64
    public var parentId: UInt64?
    public var imageName: String?
    public var directoryTableBase: UInt64
    public var threads: [KernelThread]
}

public struct Processor: Sendable {
    public var number: Int
    public var kprcb: UInt64
    public var currentThread: KernelThread?
    /// KPRCB.IdleThread: when it is the current thread, the CPU is idle (the Idle process is
    /// not on the process list).
    public var idleThread: UInt64?
    public var context: Context64?
}

/// Reads the kernel's own lists: modules, processes with their threads, and processors.
/// Every walk is defensive; what breaks is reported in `problems` and, for lists, as a
/// `ListBreak` that corruption forensics examines.
public struct KernelObjects: Sendable {
    public var modules: [LoadedModule]
    public var unloadedModules: [UnloadedModule]
    public var processes: [KernelProcess]
    public var processors: [Processor]
    /// Broken lists, by name ("PsLoadedModuleList", "PsActiveProcessHead", ...).
    public var brokenLists: [(list: String, walk: ListBreak)]
    /// What could not be read, in words, for the report.
    public var problems: [String]

    /// The thread whose kernel stack (StackLimit up to StackBase) holds `rsp`: a CPU's current
    /// thread first, then any process's.
    public func thread(onStackAt rsp: UInt64) -> KernelThread? {
        let candidates = processors.compactMap(\.currentThread) + processes.flatMap(\.threads)
        return candidates.first { thread in
            guard let limit = thread.stackLimit, let base = thread.stackBase else { return false }
            return limit <= rsp && rsp < base
        }
    }
}

/// KLDR_DATA_TABLE_ENTRY, one PsLoadedModuleList record: the same on x64 in every build from
/// 14393 to 22000 (§5.1 of the format notes).
enum KldrEntry {
    static let exceptionTable: UInt64 = 0x10      // PVOID, the module's .pdata
    static let exceptionTableSize: UInt64 = 0x18  // ULONG, in bytes
    static let dllBase: UInt64 = 0x30
    static let sizeOfImage: UInt64 = 0x40
    static let fullDllName: UInt64 = 0x48         // UNICODE_STRING
    static let baseDllName: UInt64 = 0x58         // UNICODE_STRING
    static let checkSum: UInt64 = 0x78
    static let timeDateStamp: UInt64 = 0x9C
}

extension KernelObjects {
    static func kldrModule(at entry: UInt64, in space: any KernelAddressSpace) -> LoadedModule? {
        guard let base = try? space.u64(entry &+ KldrEntry.dllBase), let size = try? space.u32(entry &+ KldrEntry.sizeOfImage) else { return nil }
        let name = (try? space.unicodeString(entry &+ KldrEntry.baseDllName, maximumLength: 520)) ?? ""
        return LoadedModule(
            name: name.isEmpty ? "module_\(String(base, radix: 16))" : name,
            path: try? space.unicodeString(entry &+ KldrEntry.fullDllName, maximumLength: 1024),
            base: base, size: size,
            timeDateStamp: (try? space.u32(entry &+ KldrEntry.timeDateStamp)) ?? 0,
            checkSum: (try? space.u32(entry &+ KldrEntry.checkSum)) ?? 0,
            exceptionTable: try? space.u64(entry &+ KldrEntry.exceptionTable),
            exceptionTableSize: try? space.u32(entry &+ KldrEntry.exceptionTableSize))
    }

    /// Modules from PsLoadedModuleList; KLDR_DATA_TABLE_ENTRY is the same in every build from
    /// 14393 to 22000 (§5.1), and InLoadOrderLinks is its first field.
    static func loadedModules(head: UInt64, in space: any KernelAddressSpace) -> ([LoadedModule], ListWalk) {
        let walk = ListWalker.walk(head: head, in: space, limit: 4096)
        return (walk.entries.compactMap { kldrModule(at: $0, in: space) }, walk)
    }

    static func modules(fromMinidump triage: TriageDump, source: ByteSource) -> [LoadedModule] {
        ((try? triage.drivers(in: source)) ?? []).map { driver in
            LoadedModule(name: driver.name ?? "module_\(String(driver.base, radix: 16))", path: driver.path, base: driver.base, size: driver.size,
                         timeDateStamp: driver.timeDateStamp, checkSum: driver.checkSum)
        }
    }

    static func thread(at address: UInt64, layout: KernelLayout, in space: any KernelAddressSpace) -> KernelThread {
        func read(_ offset: UInt64?) -> UInt64? { offset.flatMap { try? space.u64(address &+ $0) } }
        return KernelThread(
            address: address, threadId: layout.threadCid.flatMap { try? space.u64(address &+ $0 &+ 8) },
            processAddress: read(layout.threadApcProcess), state: try? space.u8(address &+ layout.threadState),
            stackBase: read(layout.threadStackBase), stackLimit: read(layout.threadStackLimit),
            kernelStack: read(layout.threadKernelStack), trapFrame: read(layout.threadTrapFrame))
    }

    /// EPROCESS.ImageFileName: the first 15 bytes of the image's name, NUL-padded; bytes that
    /// are not printable ASCII show as "?" (the field is untrusted memory). Nil when unreadable
    /// or empty.
    static func imageFileName(of eprocess: UInt64, layout: KernelLayout, in space: any KernelAddressSpace) -> String? {
        guard let offset = layout.processImageFileName, let bytes = try? space.read(eprocess &+ offset, count: 15) else { return nil }
        let name = String(decoding: bytes.prefix { $0 != 0 }.map { (0x20...0x7E).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
        return name.isEmpty ? nil : name
    }

    static func process(at eprocess: UInt64, layout: KernelLayout, in space: any KernelAddressSpace, problems: inout [String]) -> KernelProcess? {
        guard let pid = try? space.u64(eprocess &+ layout.processUniqueId), let dtb = try? space.u64(eprocess &+ layout.processDirectoryTableBase) else { return nil }
        let name = imageFileName(of: eprocess, layout: layout, in: space)
        var threads: [KernelThread] = []
        if let head = layout.processThreadListHead, let entryOffset = layout.threadListEntry {
            let walk = ListWalker.walk(head: eprocess &+ head, in: space, limit: 65_536)
            threads = walk.entries.map { thread(at: $0 &- entryOffset, layout: layout, in: space) }
            if let broken = walk.broken {
                problems.append("the thread list of process \(pid) breaks at 0x\(hex(broken.entry)) (\(broken.reason.rawValue))")
            }
        }
        return KernelProcess(address: eprocess, processId: pid, parentId: try? space.u64(eprocess &+ layout.processParentId),
                             imageName: name, directoryTableBase: dtb, threads: threads)
    }

    /// Each CPU's KPRCB through KiProcessorBlock, its current thread and saved CONTEXT.
    static func processors(count: Int, processorBlock: UInt64, layout: KernelLayout, in space: any KernelAddressSpace, problems: inout [String]) -> [Processor] {
        var seen: Set<UInt64> = []
        return (0..<count).compactMap { cpu in
            guard let kprcb = try? space.u64(processorBlock &+ 8 &* UInt64(cpu)), isCanonical(kprcb), kprcb != 0 else {
                problems.append("KiProcessorBlock[\(cpu)] is unreadable")
                return nil
            }
            guard seen.insert(kprcb).inserted else {
                problems.append("KiProcessorBlock[\(cpu)] repeats another CPU's KPRCB 0x\(String(kprcb, radix: 16))")
                return nil
            }
            let current = (try? space.u64(kprcb &+ layout.prcbCurrentThread)).map { thread(at: $0, layout: layout, in: space) }
            let context = (try? space.read(kprcb &+ layout.prcbContextFrame, count: Int(Context64.size))).flatMap { try? Context64(bytes: $0) }
            return Processor(number: cpu, kprcb: kprcb, currentThread: current, idleThread: try? space.u64(kprcb &+ layout.prcbIdleThread), context: context)
        }
    }
}

extension KernelObjects {
    /// Reads everything it can from `dump`; `layout` is nil when the build has no table and the
    /// invariants could not be established (then processes are not listed).
    public static func read(from dump: KernelDump, layout: KernelLayout?, space: any KernelAddressSpace) -> KernelObjects {
        var problems: [String] = []
        var broken: [(String, ListBreak)] = []
        let kdbg = dump.debuggerData.data

        var modules: [LoadedModule] = []
        if let triage = dump.triage {
            modules = Self.modules(fromMinidump: triage, source: dump.source)
        } else {
            let head = kdbg?.psLoadedModuleList ?? dump.header.psLoadedModuleList
            let (list, walk) = loadedModules(head: head, in: space)
            modules = list
            if let breakage = walk.broken { broken.append(("PsLoadedModuleList", breakage)) }
        }

        var processes: [KernelProcess] = []
        if let layout, dump.triage == nil {
            let head = kdbg?.psActiveProcessHead ?? dump.header.psActiveProcessHead
            let walk = ListWalker.walk(head: head, in: space, limit: 65_536)
            processes = walk.entries.compactMap { process(at: $0 &- layout.processActiveLinks, layout: layout, in: space, problems: &problems) }
            if let breakage = walk.broken { broken.append(("PsActiveProcessHead", breakage)) }
        } else if layout == nil {
            problems.append("no structure offsets for build \(dump.header.buildNumber): processes are not listed")
        }

        var processors: [Processor] = []
        if let layout, let block = kdbg?.kiProcessorBlock, dump.triage == nil {
            processors = Self.processors(count: min(Int(dump.header.numberProcessors), 4096), processorBlock: block, layout: layout, in: space, problems: &problems)
        }
        // A hypervisor's capture has each vCPU's registers at that moment; the KPRCB's saved
        // context is only as recent as the last time Windows froze that CPU.
        if let contexts = dump.capture?.vcpuContexts {
            for index in processors.indices where processors[index].number < contexts.count {
                if let context = contexts[processors[index].number] { processors[index].context = context }
            }
        }
        var unloaded: [UnloadedModule] = []
        if let triage = dump.triage {
            unloaded = ((try? triage.unloadedDrivers(in: dump.source)) ?? []).map { UnloadedModule(name: $0.name, start: $0.startAddress, end: $0.endAddress) }
        } else if let array = kdbg?.mmUnloadedDrivers.flatMap({ try? space.u64($0) }), array != 0 {
            unloaded = unloadedModules(array: array, in: space)
        }
        return KernelObjects(modules: modules, unloadedModules: unloaded, processes: processes, processors: processors, brokenLists: broken, problems: problems)
    }

    /// MmUnloadedDrivers' 50 slots of UNLOADED_DRIVERS (x64: UNICODE_STRING Name, StartAddress
    /// at 0x10, EndAddress at 0x18, CurrentTime at 0x20); empty slots have no name.
    static func unloadedModules(array: UInt64, in space: any KernelAddressSpace) -> [UnloadedModule] {
        (0..<UInt64(50)).compactMap { index in
            let entry = array &+ 0x28 * index
            guard let name = try? space.unicodeString(entry, maximumLength: 520), !name.isEmpty,
                  let start = try? space.u64(entry &+ 0x10), let end = try? space.u64(entry &+ 0x18) else { return nil }
            return UnloadedModule(name: name, start: start, end: end)
        }
    }

    /// Finds EPROCESS.UniqueProcessId (and so ActiveProcessLinks, 8 bytes on) without a table:
    /// the first entry of PsActiveProcessHead is System, PID 4, running on the kernel's DTB
    /// (§5.3 of the format notes). Then looks for "System" as its ImageFileName.
    ///
    /// Only the DTB check depends on the offset tried (the PID sits 8 bytes before the links
    /// whatever the offset), so a second copy of the kernel's DTB further into System's
    /// EPROCESS would pass for a smaller offset. The next process confirms: at the same offset
    /// its DirectoryTableBase must be a physical page address too.
    public static func discoverLayout(dump: KernelDump, space: any KernelAddressSpace) -> KernelLayout? {
        guard let kdbg = dump.debuggerData.data, case let head = kdbg.psActiveProcessHead ?? dump.header.psActiveProcessHead,
              let first = try? space.u64(head), isCanonical(first) else { return nil }
        let kernelDTB = dump.header.directoryTableBase & 0x000F_FFFF_FFFF_F000
        let size = UInt64(kdbg.sizeEProcess ?? 0x1000)
        for linkOffset in stride(from: UInt64(0x100), to: size, by: 8) {
            let eprocess = first &- linkOffset
            guard (try? space.u64(eprocess &+ linkOffset &- 8)) == 4,
                  let dtb = try? space.u64(eprocess &+ 0x28), dtb & 0x000F_FFFF_FFFF_F000 == kernelDTB else { continue }
            if let next = try? space.u64(first), next != head {
                guard let nextDTB = try? space.u64(next &- linkOffset &+ 0x28), nextDTB & 0x000F_FFFF_FFFF_F000 != 0, nextDTB >> 52 == 0 else { continue }
            }
            var imageName: UInt64?
            if let bytes = try? space.read(eprocess, count: Int(size)) {
                let system = Array("System\0".utf8)
                imageName = stride(from: 0, to: bytes.count - system.count, by: 8).first { Array(bytes[$0..<$0 + system.count]) == system }.map(UInt64.init)
            }
            return KernelLayout.discovered(processUniqueId: linkOffset - 8, imageFileName: imageName, debuggerData: kdbg)
        }
        return nil
    }
}
