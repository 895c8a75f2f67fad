import DumpFormat

/// What the common bug checks' parameters mean and where each keeps the fault's context
/// (Microsoft's bug-check reference; §8 of the format notes).
public struct BugCheckKnowledge: Sendable {
    /// Where the state of the faulting code can be found.
    public enum FaultContext: Sendable, Equatable {
        /// Nowhere in the parameters: walk from the crashing CPU's own context.
        case none
        /// Parameter `n` (0-based) is the address of a CONTEXT record.
        case contextRecord(parameter: Int)
        /// Parameter `n` is the address of a KTRAP_FRAME.
        case trapFrame(parameter: Int)
    }

    public var code: UInt32
    public var name: String?
    /// One line per parameter, saying what it is.
    public var parameterMeanings: [String]
    /// Which parameter holds the faulting instruction's address, if any.
    public var faultingIPParameter: Int?
    /// Which parameter holds the memory address the faulting access referenced, if any.
    public var referencedAddressParameter: Int?
    public var faultContext: FaultContext
    /// Bug checks that say the machine was stopped from outside (an NMI from the hypervisor
    /// or a button, a watchdog) rather than by a fault: every CPU is worth a look.
    public var externallyTriggered: Bool
    /// Set for a dump of a running system that no bug check stopped: a hang until proven
    /// otherwise, whose buckets are of their own kind (LIVE_...).
    public var liveCapture: LiveCapture?

    /// How a dump of a running system was taken, as its bug-check fields tell.
    public enum LiveCapture: Sendable, Equatable {
        /// No bug check at all: the memory was read from the running system (a hypervisor's ELF,
        /// kdump or raw capture).
        case noBugCheck
        /// LIVE_SYSTEM_DUMP (0x161): QEMU's `dump-guest-memory -w` of a guest that had not
        /// crashed, or Windows' own live kernel dump.
        case liveSystemDump
        /// Four capital letters where the code belongs: a memory acquisition tool's marker
        /// (Comae's and MoonSols' converters write 'MATT' with parameters 1, 2, 3, 4). No bug
        /// check is four letters; 'EGAP' is Windows' own fill ("PAGE"), a field never written.
        case acquisitionTool(marker: String)

        public var bugCheckName: String {
            switch self {
            case .noBugCheck: "LIVE_CAPTURE (no bug check: the memory was read from the running system)"
            case .liveSystemDump: "LIVE_SYSTEM_DUMP (written while the system ran: QEMU's dump-guest-memory -w or a live kernel dump)"
            case .acquisitionTool(let marker): "LIVE_ACQUISITION ('\(marker)': a memory acquisition tool's marker, not a bug check)"
            }
        }

        init?(_ bugCheck: BugCheck) {
            let letters = (0..<4).map { UInt8(truncatingIfNeeded: bugCheck.rawCode >> (8 * (3 - $0))) }  // a multi-character constant, first letter high
            switch bugCheck.rawCode {
            case 0: self = .noBugCheck
            case 0x161: self = .liveSystemDump
            case _ where bugCheck.rawCode != DumpHeader64.fill32 && letters.allSatisfy { (0x41...0x5A).contains($0) }: self = .acquisitionTool(marker: String(decoding: letters, as: UTF8.self))
            default: return nil
            }
        }
    }

    public init(_ bugCheck: BugCheck) {
        code = bugCheck.code
        name = bugCheck.name
        let p = bugCheck.parameters + Array(repeating: 0, count: max(0, 4 - bugCheck.parameters.count))
        faultingIPParameter = nil
        referencedAddressParameter = nil
        faultContext = .none
        externallyTriggered = false
        switch code {
        case 0x0A, 0xD1:
            parameterMeanings = ["memory referenced", "IRQL at the time", Self.accessKind(p[2]), "address of the instruction that referenced it"]
            faultingIPParameter = 3
            referencedAddressParameter = 0
        case 0x1A:
            parameterMeanings = ["subtype 0x\(String(p[0], radix: 16)) of the memory-manager failure", "subtype-specific", "subtype-specific", "subtype-specific"]
        case 0x1E:
            parameterMeanings = ["exception code", "address of the exception", "exception parameter 0", p[0] == 0xC000_0005 ? "address accessed" : "exception parameter 1"]
            faultingIPParameter = 1
            referencedAddressParameter = p[0] == 0xC000_0005 ? 3 : nil
        case 0x8E:
            parameterMeanings = ["exception code", "address of the exception", "address of the KTRAP_FRAME", "reserved"]
            faultingIPParameter = 1
            faultContext = .trapFrame(parameter: 2)
        case 0x3B:
            parameterMeanings = ["exception code", "address of the instruction that caused the exception", "address of the exception's CONTEXT record", "reserved"]
            faultingIPParameter = 1
            faultContext = .contextRecord(parameter: 2)
        case 0x50:
            parameterMeanings = ["memory referenced", Self.accessKind(p[1]), "address of the instruction that referenced it (if known)", p[3] == 4 ? "the address is not canonical" : "type of fault"]
            faultingIPParameter = 2
            referencedAddressParameter = 0
        case 0x7E:
            parameterMeanings = ["exception code", "address of the exception", "address of the EXCEPTION_RECORD", "address of the CONTEXT record"]
            faultingIPParameter = 1
            faultContext = .contextRecord(parameter: 3)
        case 0x80:
            parameterMeanings = ["(no documented parameters)", "", "", ""]
            externallyTriggered = true
        case 0x9F:
            parameterMeanings = ["subtype \(p[0]) of the power failure", p[0] == 3 ? "the device object (PDO)" : "subtype-specific", "subtype-specific", p[0] == 3 ? "the blocked IRP" : "subtype-specific"]
        case 0xEF:
            parameterMeanings = ["the process that died", p[1] == 0 ? "the process died" : "a thread died", "reserved", "reserved"]
        case 0x124:
            parameterMeanings = ["error source type \(p[0])\(p[0] == 3 ? " (NMI)" : p[0] == 0 ? " (machine check)" : "")", "address of the WHEA_ERROR_RECORD", "source-specific", "source-specific"]
            externallyTriggered = p[0] == 3
        case 0x133:
            parameterMeanings = [p[0] == 0 ? "a single DPC or ISR ran too long" : "the system spent too long at DISPATCH_LEVEL or above", "tick count / watchdog period", "allotment", "reserved"]
        case 0x139:
            parameterMeanings = ["failure type \(p[0]): \(Self.securityCheckTypes[p[0]] ?? "unknown")", "address of the KTRAP_FRAME", "address of the EXCEPTION_RECORD", "reserved"]
            faultContext = .trapFrame(parameter: 1)
        case 0xE2, 0x1C8:
            parameterMeanings = ["", "", "", ""]
            externallyTriggered = true
        default:
            parameterMeanings = ["", "", "", ""]
        }
        liveCapture = LiveCapture(bugCheck)
        if liveCapture != nil { externallyTriggered = true }
    }

    static func accessKind(_ value: UInt64) -> String {
        switch value & 0xF {
        case 0: "read"
        case 1: "write"
        case 2, 8: "execute"
        default: "access kind 0x\(String(value, radix: 16))"
        }
    }

    /// KERNEL_SECURITY_CHECK_FAILURE types (the FAST_FAIL codes).
    static let securityCheckTypes: [UInt64: String] = [
        0: "legacy /GS stack buffer overrun", 2: "stack cookie check failed", 3: "a LIST_ENTRY was corrupted",
        4: "incorrect stack", 5: "invalid argument", 6: "stack cookie initialization failed", 7: "fatal exit", 8: "array index out of bounds",
        10: "control-flow guard check failed", 14: "reference count corrupted", 28: "out-of-bounds access", 29: "red-black tree corrupted",
    ]
}
