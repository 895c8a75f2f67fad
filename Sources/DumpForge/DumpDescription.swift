/// What a forged dump should contain: the machine, the crash and the kernel's state.
///
/// Everything not described gets a realistic default (`DumpDescription.standard`), so a test
/// states only what it cares about. Structures are laid out as Windows 10 build 19041 x64 does.
public struct DumpDescription: Sendable {
    public enum DumpKind: Sendable, Equatable {
        /// DumpType 1: every RAM page, stored run by run.
        case full
        /// DumpType 5: every RAM page, with an "FDMP" bitmap.
        case bitmapFull
        /// DumpType 6: kernel pages only, with an "SDMP" bitmap.
        case bitmapKernel
        /// DumpType 4: a kernel minidump.
        case triage
        /// DumpType 8, 9, 0xA: "RDMP" range dumps of kernel pages, kernel and user pages, or
        /// every RAM page.
        case rangeKernel, rangeKernelAndUser, rangeComplete

        /// Whether the dump holds the pages of user address spaces.
        public var holdsUserPages: Bool { self != .bitmapKernel && self != .rangeKernel && self != .triage }
    }

    public var kind: DumpKind
    public var buildNumber: UInt32 = 19041
    public var processors: Int = 2
    /// RAM as PFN ranges (see `vmMemory`).
    public var memory: [Range<UInt64>]
    public var bugCheckCode: UInt32 = 0x1E
    /// Up to four parameters; symbolic ones are resolved once the kernel is laid out.
    public var bugCheckParameters: [BugCheckParameter] = [0xC000_0005, 0, 0, 0]
    /// The CPU that called KeBugCheckEx.
    public var crashingProcessor: Int = 0
    /// FILETIME of the crash (default 2024-03-01 20:00:00 UTC).
    public var systemTime: UInt64 = 133_537_968_000_000_000
    /// 100 ns since boot (default 3 hours 25 minutes).
    public var systemUpTime: UInt64 = 123_000_000_000
    public var modules: [ModuleDescription]
    public var processes: [ProcessDescription]
    public var unloadedDrivers: [UnloadedDriverDescription] = []
    /// KTIMERs queued in the CPUs' timer tables.
    public var timers: [TimerDescription] = []
    /// Stacks for CPUs' idle threads, when a CPU crashed (or hung) in its idle thread, say in
    /// a DPC; the others idle in nt!KiIdleLoop.
    public var idleStacks: [Int: [CodeLocation]] = [:]
    /// The CPU whose running code holds the forge's one spin lock. An x64 KSPIN_LOCK records no
    /// owner, but the holder keeps the lock's address to release it: here in RBX.
    public var spinLockHolder: Int? = nil
    /// Register values of the faulting frame, by x64 register number, where the crash says
    /// what they held (a list operation's entry and the bad link it loaded); the others keep
    /// the values unwinding restores.
    public var faultRegisters: [Int: RegisterValue] = [:]
    /// Values in the faulting frame's stack (the frame a CONTEXT record parameter describes),
    /// by offset from its RSP: a local the function kept there, such as the list entry it was
    /// working on.
    public var faultStack: [UInt64: RegisterValue] = [:]
    /// Moves every EPROCESS and ETHREAD field the build's layout gives this many bytes further
    /// on (the structures grow to match): a build whose offsets no table has, for tests of the
    /// analysis's discovery from invariants. A multiple of 8.
    public var offsetShift: Int = 0
    /// UTF-16 text in the locals of the crashing thread's frames, by frame index (0 the
    /// innermost): written from the frame's RSP + 0x28, above the home space of its callee, as
    /// a function keeps a path in a stack buffer. The frame must allocate room for it.
    public var localText: [Int: String] = [:]
    /// KDDEBUGGER_DATA64 as a running kernel keeps it: encoded (KdpDataBlockEncoded) with
    /// random KiWaitNever and KiWaitAlways. Windows decodes it before writing a blue-screen
    /// dump, so only a hypervisor's capture of a live guest holds it encoded.
    public var debuggerDataEncoded = false
    /// Whether a minidump captures 0x100 bytes around each kernel address a CONTEXT record's
    /// registers hold, as Windows does; off, as when the memory was paged out or the writer
    /// ran out of room, the minidump lacks them.
    public var triageCapturesContextMemory = true
    /// Leaves stale return addresses of earlier calls in the stacks' locals (see
    /// `KernelForge.writeStaleValues`), which scanning, unlike unwinding, takes for frames.
    public var staleStackValues = false
    /// How Windows wrote non-present page-table entries (see `L1TFMitigation`).
    public var l1tfMitigation: L1TFMitigation = .swizzledNamedInDebuggerData
    /// Seeds the placement of images, pool, stacks and the PTE self-map (KASLR).
    public var layoutSeed: UInt64 = 1
    public var comment: String? = nil

    public init(kind: DumpKind, memory: [Range<UInt64>], modules: [ModuleDescription], processes: [ProcessDescription]) {
        self.kind = kind
        self.memory = memory
        self.modules = modules
        self.processes = processes
    }

    /// A VM's physical memory of `gibibytes` GiB: 636 KiB of low memory, then RAM from 1 MiB, with
    /// the PCI hole from 3 GiB to 4 GiB pushing the rest above 4 GiB, as QEMU/KVM lays it out.
    public static func vmMemory(gibibytes: UInt64) -> [Range<UInt64>] {
        precondition((1...1 << 20).contains(gibibytes), "forge: 1 GiB to 1 PiB of RAM")
        let gib: UInt64 = 0x40000  // pages per GiB
        let total = gibibytes * gib
        var ranges: [Range<UInt64>] = [0x1..<0x9F]
        let below = min(total, 3 * gib)
        ranges.append(0x100..<below)
        if total > 3 * gib { ranges.append(4 * gib..<4 * gib + (total - 3 * gib)) }
        return ranges
    }
}

/// Whether the forged Windows swizzles non-present page-table entries against L1 Terminal Fault
/// (Windows 10 1803 and later on affected Intel CPUs), and whether its KDDEBUGGER_DATA64 says so.
public enum L1TFMitigation: Sendable, Equatable, CaseIterable {
    /// Not affected (AMD) or an older build: entries are written as they are.
    case off
    /// Swizzled with bit 45, and KDBG's L1tfHighPhysicalBitIndex and L1tfSwizzleBitIndex name
    /// bits 45 and 4.
    case swizzledNamedInDebuggerData
    /// Swizzled with bit 45, with both KDBG bytes left 0, as real 19041 dumps have them.
    case swizzledUnnamed
}

/// A loaded kernel module and the functions its image contains.
public struct ModuleDescription: Sendable {
    public var name: String
    /// Full path as the loader records it (`\SystemRoot\system32\drivers\x.sys`).
    public var path: String
    public var timeDateStamp: UInt32
    public var checkSum: UInt32
    public var functions: [ForgedFunction]
    /// Linked with /Brepro, as Microsoft's images are: TimeDateStamp is a build hash.
    public var reproducible: Bool
    /// A PE file a real compiler and linker built, used instead of forging one from
    /// `functions`: its exports name the functions, its own UNWIND_INFO gives their prologs.
    public var compiledImage: [UInt8]?
    /// The PDB the image's CodeView record names; nil gives a stable GUID made from the name.
    public var codeView: CodeViewRecord?

    public init(name: String, path: String? = nil, timeDateStamp: UInt32, checkSum: UInt32 = 0, functions: [ForgedFunction], reproducible: Bool = false) {
        self.name = name
        self.path = path ?? "\\SystemRoot\\system32\\drivers\\\(name)"
        self.timeDateStamp = timeDateStamp
        self.checkSum = checkSum
        self.functions = functions
        self.reproducible = reproducible
    }

    /// A module whose image a real toolchain built (see `compiledImage`).
    public init(name: String, compiledImage: [UInt8]) {
        self.init(name: name, timeDateStamp: 0, functions: [])
        self.compiledImage = compiledImage
    }
}

/// What an image's CodeView "RSDS" record says: its PDB's GUID (16 bytes as stored), Age and
/// file name, which a symbol store files the PDB under.
public struct CodeViewRecord: Sendable, Equatable {
    public var guid: [UInt8]
    public var age: UInt32
    public var pdbName: String

    public init(guid: [UInt8], age: UInt32, pdbName: String) {
        precondition(guid.count == 16, "forge: a PDB GUID is 16 bytes")
        self.guid = guid
        self.age = age
        self.pdbName = pdbName
    }
}

/// A place in code: `offset` bytes into `function` of `module`.
public struct CodeLocation: Sendable, Equatable {
    public var module: String
    public var function: String
    public var offset: UInt32
    public init(_ module: String, _ function: String, _ offset: UInt32) {
        self.module = module
        self.function = function
        self.offset = offset
    }
}

public struct ThreadDescription: Sendable {
    public var threadId: UInt64
    /// KTHREAD_STATE: 2 Running, 5 Waiting, ...
    public var state: UInt8
    /// The CPU this thread is running on, if it is running.
    public var runningOn: Int?
    /// Call stack, innermost frame first.
    public var stack: [CodeLocation]
    /// Set when the thread spins waiting for the forge's one shared spin lock: its RCX (the
    /// first argument of KeAcquireSpinLock*) then holds the lock's address.
    public var waitsForSpinLock: Bool

    public init(threadId: UInt64, state: UInt8 = 5, runningOn: Int? = nil, stack: [CodeLocation], waitsForSpinLock: Bool = false) {
        self.threadId = threadId
        self.state = runningOn == nil ? state : 2
        self.runningOn = runningOn
        self.stack = stack
        self.waitsForSpinLock = waitsForSpinLock
    }
}

public struct ProcessDescription: Sendable {
    public var processId: UInt64
    public var parentId: UInt64
    /// Up to 15 characters are kept, as EPROCESS.ImageFileName does.
    public var imageName: String
    public var threads: [ThreadDescription]

    public init(processId: UInt64, parentId: UInt64, imageName: String, threads: [ThreadDescription]) {
        self.processId = processId
        self.parentId = parentId
        self.imageName = imageName
        self.threads = threads
    }
}

public struct UnloadedDriverDescription: Sendable {
    public var name: String
    public var startAddress: UInt64
    public var endAddress: UInt64
    public init(name: String, startAddress: UInt64, endAddress: UInt64) {
        self.name = name
        self.startAddress = startAddress
        self.endAddress = endAddress
    }
}

/// A register's value at the fault, by value or by what it points at in the forged kernel.
public enum RegisterValue: Sendable, Equatable {
    case value(UInt64)
    /// KTIMER.TimerListEntry of the `timers` entry at this index.
    case timerListEntry(Int)
}

/// A bug-check parameter, by value or by what it points at in the forged kernel. Frame numbers
/// index the crashing CPU's current thread's stack, innermost first.
public enum BugCheckParameter: Sendable, Equatable, ExpressibleByIntegerLiteral {
    case value(UInt64)
    /// The address of a code location (a faulting instruction, say).
    case code(CodeLocation)
    /// The KTRAP_FRAME a trap handler frame built: its RSP once its prolog ran.
    case trapFrame(frame: Int)
    /// A CONTEXT describing frame `describing`, written into the locals of frame `storedIn`
    /// (which must allocate at least 0x500 bytes), as exception dispatch leaves one on the stack.
    case contextRecord(describing: Int, storedIn: Int)
    /// An EXCEPTION_RECORD for a fault at frame `describing`, written 0x500 bytes into the
    /// locals of frame `storedIn` (which must allocate at least 0x5A0 bytes).
    case exceptionRecord(describing: Int, storedIn: Int, code: UInt32)

    public init(integerLiteral value: UInt64) { self = .value(value) }
}

/// A KTIMER queued in a CPU's timer table.
public struct TimerDescription: Sendable {
    public var processor: Int
    /// Which of KTIMER_TABLE.TimerEntries (0 ..< 512 on 19041).
    public var list: Int
    /// Interrupt time (100 ns) at which it fires.
    public var dueTime: UInt64
    public var period: UInt32
    /// Bytes written over the KTIMER from its TimerListEntry on, after it is linked: a stray
    /// write by someone else, the way the 0x3B case found a path in a timer list.
    public var overwrite: [UInt8]?

    public init(processor: Int, list: Int, dueTime: UInt64, period: UInt32 = 0, overwrite: [UInt8]? = nil) {
        self.processor = processor
        self.list = list
        self.dueTime = dueTime
        self.period = period
        self.overwrite = overwrite
    }
}
