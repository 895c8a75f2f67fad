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
    }

    public var kind: DumpKind
    public var buildNumber: UInt32 = 19041
    public var processors: Int = 2
    /// RAM as PFN ranges (see `vmMemory`).
    public var memory: [Range<UInt64>]
    public var bugCheckCode: UInt32 = 0x1E
    public var bugCheckParameters: [UInt64] = [0xC000_0005, 0, 0, 0]
    /// The CPU that called KeBugCheckEx.
    public var crashingProcessor: Int = 0
    /// FILETIME of the crash (default 2024-03-01 20:00:00 UTC).
    public var systemTime: UInt64 = 133_537_968_000_000_000
    /// 100 ns since boot (default 3 hours 25 minutes).
    public var systemUpTime: UInt64 = 123_000_000_000
    public var modules: [ModuleDescription]
    public var processes: [ProcessDescription]
    public var unloadedDrivers: [UnloadedDriverDescription] = []
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

/// A loaded kernel module and the functions its image contains.
public struct ModuleDescription: Sendable {
    public var name: String
    /// Full path as the loader records it (`\SystemRoot\system32\drivers\x.sys`).
    public var path: String
    public var timeDateStamp: UInt32
    public var checkSum: UInt32
    public var functions: [ForgedFunction]

    public init(name: String, path: String? = nil, timeDateStamp: UInt32, checkSum: UInt32 = 0, functions: [ForgedFunction]) {
        self.name = name
        self.path = path ?? "\\SystemRoot\\system32\\drivers\\\(name)"
        self.timeDateStamp = timeDateStamp
        self.checkSum = checkSum
        self.functions = functions
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

    public init(threadId: UInt64, state: UInt8 = 5, runningOn: Int? = nil, stack: [CodeLocation]) {
        self.threadId = threadId
        self.state = runningOn == nil ? state : 2
        self.runningOn = runningOn
        self.stack = stack
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
