/// What `dumpfleet inspect` reports about a dump file, in the spirit of Microsoft's dumpchk:
/// the header's facts, where the memory is, whether the debugger data block is usable, and how
/// complete the dump is. Addresses are hex strings ("0x..."), since JSON numbers lose the low
/// bits of 64-bit kernel addresses in many readers.
public struct InspectionReport: Codable, Sendable, Equatable {
    public struct BugCheckInfo: Codable, Sendable, Equatable {
        public var code: String
        public var name: String?
        public var parameters: [String]
    }

    public struct PageRun: Codable, Sendable, Equatable {
        public var basePage: String
        public var pageCount: UInt64
    }

    public struct PhysicalMemorySummary: Codable, Sendable, Equatable {
        /// "runs" (full and range dumps) or "bitmap".
        public var index: String
        public var storedPages: UInt64
        public var missingPages: UInt64
        public var runs: [PageRun]
    }

    public struct Driver: Codable, Sendable, Equatable {
        public var name: String?
        public var path: String?
        public var base: String
        public var size: UInt32
        public var timeDateStamp: UInt32
        /// What TimeDateStamp means (a minidump holds no image headers, so a date is unverified).
        public var timestamp: ImageTimestamp
        public var checkSum: String
    }

    public struct UnloadedDriver: Codable, Sendable, Equatable {
        public var name: String
        public var start: String
        public var end: String
    }

    public struct MinidumpSummary: Codable, Sendable, Equatable {
        public var driverCount: UInt32
        public var dataBlockCount: UInt32
        public var capturedBytes: UInt64
        public var stackBytes: UInt32
        public var topOfStack: String
        public var endMarker: Bool
        public var drivers: [Driver]
        public var unloadedDrivers: [UnloadedDriver]
    }

    public struct DebuggerDataSummary: Codable, Sendable, Equatable {
        /// "clear", "encoded" or "unreadable".
        public var status: String
        public var detail: String
        public var size: String?
        public var kernBase: String?
        public var psLoadedModuleList: String?
        public var psActiveProcessHead: String?
        public var kiProcessorBlock: String?
        public var pteBase: String?
    }

    public struct Completeness: Codable, Sendable, Equatable {
        /// "complete", "kernel memory only", "minidump", "header only", "truncated" or "not analysed".
        public var verdict: String
        public var details: [String]
    }

    public var fileSize: UInt64
    public var signature: String
    public var dumpType: UInt32
    public var dumpTypeName: String
    public var machine: String
    public var majorVersion: UInt32
    public var buildNumber: UInt32
    public var processors: UInt32
    public var bugCheck: BugCheckInfo
    public var systemTime: String?
    public var systemUpTime: String?
    public var directoryTableBase: String
    public var comment: String?
    public var physicalMemory: PhysicalMemorySummary?
    public var minidump: MinidumpSummary?
    public var debuggerData: DebuggerDataSummary?
    public var completeness: Completeness
    public var notes: [String]
}

/// "0x" + lower-case hex.
func hexText<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }

/// A bug-check code the way WinDbg prints it: 0x0000001E.
func bugCheckText(_ code: UInt32) -> String {
    let digits = String(code, radix: 16, uppercase: true)
    return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
