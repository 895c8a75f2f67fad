/// Bug-check codes: names for the common ones (Microsoft's bug-check reference).
///
/// Codes may carry the flag 0x10000000 (the "_M" variants such as 0x1000007E); it is masked
/// for naming while the raw value is kept.
public struct BugCheck: Sendable, Equatable {
    public var rawCode: UInt32
    public var parameters: [UInt64]

    public init(rawCode: UInt32, parameters: [UInt64]) {
        self.rawCode = rawCode
        self.parameters = parameters
    }

    /// The code without the 0x10000000 flag.
    public var code: UInt32 { rawCode & 0x0FFF_FFFF }

    public var name: String? { Self.names[code] }

    static let names: [UInt32: String] = [
        0x0A: "IRQL_NOT_LESS_OR_EQUAL",
        0x1A: "MEMORY_MANAGEMENT",
        0x1E: "KMODE_EXCEPTION_NOT_HANDLED",
        0x3B: "SYSTEM_SERVICE_EXCEPTION",
        0x50: "PAGE_FAULT_IN_NONPAGED_AREA",
        0x7E: "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED",
        0x7F: "UNEXPECTED_KERNEL_MODE_TRAP",
        0x80: "NMI_HARDWARE_FAILURE",
        0x8E: "KERNEL_MODE_EXCEPTION_NOT_HANDLED",
        0x9F: "DRIVER_POWER_STATE_FAILURE",
        0xC4: "DRIVER_VERIFIER_DETECTED_VIOLATION",
        0xD1: "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
        0xE2: "MANUALLY_INITIATED_CRASH",
        0xEF: "CRITICAL_PROCESS_DIED",
        0x101: "CLOCK_WATCHDOG_TIMEOUT",
        0x116: "VIDEO_TDR_FAILURE",
        0x124: "WHEA_UNCORRECTABLE_ERROR",
        0x133: "DPC_WATCHDOG_VIOLATION",
        0x139: "KERNEL_SECURITY_CHECK_FAILURE",
        0x161: "LIVE_SYSTEM_DUMP",
        0x1C8: "MANUALLY_INITIATED_POWER_BUTTON_HOLD",
    ]
}
