/// What `dumpfleet analyze` concludes about a dump: the shape of WinDbg's `!analyze -v`, plus
/// corruption evidence, advice and a signature. Codable; the JSON contract is written down in
/// DumpAnalysis.docc/AnalyzeJSON.md (every field optional for readers).
public struct CrashReport: Sendable, Codable, Equatable {
    public static let schemaVersion = 1

    public struct Parameter: Sendable, Codable, Equatable {
        public var value: String
        public var meaning: String
    }

    public struct Culprit: Sendable, Codable, Equatable {
        public enum Kind: String, Sendable, Codable { case module, process, operatingSystem = "os", unknown }
        public var kind: Kind
        /// Image or process name (`nvlddmkm.sys`, `VideoAccelerator.exe`, `ntoskrnl.exe`).
        public var name: String
        /// Why it was chosen, in words.
        public var reason: String
    }

    public struct ModuleSummary: Sendable, Codable, Equatable {
        public var name: String
        public var path: String?
        public var base: String
        public var size: UInt32
        public var timeDateStamp: UInt32
        /// What TimeDateStamp means: a link time, or a build hash that is no date. Reports
        /// stored before it was classified hold the date alone, or nothing.
        public var timestamp: ImageTimestamp?
        public var checkSum: String
    }

    public struct ProcessSummary: Sendable, Codable, Equatable {
        public var processId: UInt64
        public var parentId: UInt64?
        public var name: String?
        public var directoryTableBase: String
        public var threads: Int
    }

    public typealias UnloadedDriver = InspectionReport.UnloadedDriver

    public struct ThreadSummary: Sendable, Codable, Equatable {
        public var process: String?
        public var threadId: UInt64?
        public var address: String
        /// KTHREAD_STATE: 2 running, 5 waiting, ...
        public var state: UInt8?
        public var stack: [String]
    }

    public struct CPU: Sendable, Codable, Equatable {
        public var number: Int
        public var thread: String?
        public var process: String?
        /// "idle", "waiting for spin lock 0x…: held (0x1); CPU 0 seems to hold it (…)",
        /// "running vfstor.sys code in a DPC (vfstor!VfPollHardware+0x44)", ...
        public var activity: String
        public var stack: [StackFrame]
        /// The CPU that seems to hold the spin lock this one waits for.
        public var spinLockHolder: Int?

        /// The address of the spin lock this CPU waits for ("0x…"), from its activity.
        public var spinLock: String? {
            guard activity.hasPrefix("waiting for spin lock 0x") else { return nil }
            return String(activity.dropFirst("waiting for spin lock ".count).prefix { $0 != ":" && $0 != " " })
        }
    }

    /// A conclusion ("culprit nvlddmkm.sys", "fault context") and the memory it rests on,
    /// each with where the dump holds it (captured or not, in a minidump).
    public struct Basis: Sendable, Codable, Equatable {
        public var conclusion: String
        public var memory: [String]
    }

    public var schemaVersion = CrashReport.schemaVersion
    public var dumpType: String
    public var machine: String
    public var buildNumber: UInt32
    public var processors: UInt32
    public var systemTime: String?
    public var systemUpTime: String?
    public var completeness: String

    public var bugCheckCode: String
    public var bugCheckName: String?
    public var parameters: [Parameter]

    public var processName: String?
    public var imageName: String?
    public var moduleName: String?
    /// The culprit image's TimeDateStamp, classified.
    public var imageTimestamp: ImageTimestamp?
    public var faultingIP: String?
    public var followupFrame: String?
    public var culprit: Culprit
    public var failureBucketId: String

    /// The faulting thread's stack, from the fault's own context when the bug check gives one.
    public var stack: [StackFrame]
    /// Index in `stack` of the frame that faulted.
    public var faultingFrame: Int?
    public var cpus: [CPU]
    /// Threads not running on a CPU whose stacks pass through third-party code (the others
    /// are walked too but not listed).
    public var threads: [ThreadSummary]
    public var evidence: [Evidence]
    public var advice: [String]
    public var modules: [ModuleSummary]
    public var unloadedDrivers: [UnloadedDriver]
    public var processes: [ProcessSummary]
    public var signature: CrashSignature
    /// Where structure offsets came from, and anything the analysis could not read.
    public var layoutSource: String?
    public var notes: [String]
    /// Which conclusions rest on which memory of the dump; nil in reports from before it.
    public var basis: [Basis]? = nil
    /// For a dump of a running system (no bug check stopped it): how and when it was taken
    /// ("by the hypervisor: QEMU ELF core, at 2024-03-01 20:00:00 UTC; page tables from CR3 of
    /// vCPU 0"). Nil for a crash.
    public var capture: String? = nil
    /// The symbol files that named frames ("ntkrnlmp.pdb GUID-AGE: path"); nil when the
    /// analysis had no symbol directories (and in reports from before they were read).
    public var symbolFiles: [String]? = nil
}
