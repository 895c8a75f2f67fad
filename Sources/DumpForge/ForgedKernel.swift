/// The forge's record of truth about a dump it wrote: where everything is, so tests can compare
/// what the parser finds with what was put there.
public struct ForgedKernel: Sendable {
    public struct Module: Sendable {
        public var name: String
        public var path: String
        public var base: UInt64
        public var size: UInt32
        public var timeDateStamp: UInt32
        public var checkSum: UInt32
        /// Address of its KLDR_DATA_TABLE_ENTRY.
        public var entry: UInt64
        /// Function name -> [begin, end) virtual addresses.
        public var functions: [String: Range<UInt64>]
    }

    public struct Thread: Sendable {
        public var threadId: UInt64
        public var ethread: UInt64
        public var stackBase: UInt64
        public var stackLimit: UInt64
        public var stack: ForgedStack
        /// The CPU's interrupt stack (a TSS IST entry) an NMI on this thread's stack ran on.
        public var interruptStack: Range<UInt64>?
    }

    public struct Process: Sendable {
        public var processId: UInt64
        public var parentId: UInt64
        public var imageName: String
        public var eprocess: UInt64
        public var directoryTableBase: UInt64
        /// A user-mode page mapped only in this process (its PEB), and what it holds.
        public var pebAddress: UInt64
        public var threads: [Thread]
    }

    public struct Processor: Sendable {
        public var kpcr: UInt64
        public var kprcb: UInt64
        public var currentThread: UInt64
        public var context: ForgedStack
    }

    /// A VA whose translation the parser must get right, including the expected failures.
    public struct Probe: Sendable {
        public enum Expectation: Sendable, Equatable {
            case mapped(pa: UInt64)
            /// Failure names match the parser's `MemoryError.Code` raw values; level 4 = PML4E ... 1 = PTE.
            case fails(String, level: Int?)
        }
        public var va: UInt64
        public var expectation: Expectation
        public var why: String
    }

    public var directoryTableBase: UInt64
    /// The bug-check parameters, symbolic ones resolved.
    public var bugCheckParameters: [UInt64]
    /// Each described timer's KTIMER address, in description order.
    public var timers: [UInt64]
    public var kernelBase: UInt64
    public var debuggerDataBlock: UInt64
    public var psLoadedModuleList: UInt64
    public var psActiveProcessHead: UInt64
    public var kiProcessorBlock: UInt64
    public var pteBase: UInt64
    public var selfMapIndex: UInt64
    public var modules: [Module]
    public var processes: [Process]
    public var processors: [Processor]
    /// Every page mapping, kernel and per process.
    public var mappings: [ForgedMapping]
    public var probes: [Probe]
    /// The IDT every CPU's KPCR.IdtBase names (vector 14 is KiPageFault, 2 KiNmiInterrupt).
    public var interruptTable: UInt64
}
