/// The x64 CONTEXT record (0x4D0 bytes): a CPU's registers as Windows saved them.
///
/// The header keeps the crashing CPU's CONTEXT at 0x348, but for a blue screen that is the
/// context of KeBugCheckEx; the faulting context is usually referenced by the bug-check
/// parameters. Only the integer and control registers are decoded here.
public struct Context64: Sendable, Equatable {
    public static let size: UInt64 = 0x4D0

    public var contextFlags: UInt32
    public var mxCsr: UInt32
    public var segCs: UInt16
    public var segSs: UInt16
    public var eflags: UInt32
    /// RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15 in the x64 register-number order
    /// that UNWIND_CODE operands use (0 = RAX ... 15 = R15).
    public var gpr: [UInt64]
    public var rip: UInt64

    public var rsp: UInt64 { gpr[4] }
    public var rbp: UInt64 { gpr[5] }

    public init(parsing record: Record, at offset: UInt64) throws {
        contextFlags = try record.u32(offset + 0x30)
        mxCsr = try record.u32(offset + 0x34)
        segCs = try record.u16(offset + 0x38)
        segSs = try record.u16(offset + 0x42)
        eflags = try record.u32(offset + 0x44)
        // Rax is at 0x78 and the sixteen general registers follow in register-number order.
        gpr = try (0..<16).map { try record.u64(offset + 0x78 + 8 * UInt64($0)) }
        rip = try record.u64(offset + 0xF8)
    }

    /// A CPU's registers that came without a CONTEXT (a hypervisor's vCPU note): integer and
    /// control registers, kernel code and stack selectors.
    public init(gpr: [UInt64], rip: UInt64, eflags: UInt32) {
        precondition(gpr.count == 16, "a context holds 16 general registers")
        contextFlags = 0x10_0003  // CONTROL | INTEGER
        mxCsr = 0x1F80
        segCs = 0x10
        segSs = 0x18
        self.eflags = eflags
        self.gpr = gpr
        self.rip = rip
    }

    /// Parses a CONTEXT copied out of memory (for example from a stack).
    public init(bytes: [UInt8]) throws {
        let source = ByteSource(copying: bytes)
        try self.init(parsing: source.record(at: 0, length: source.count, "a CONTEXT record"), at: 0)
    }

    public static let registerNames = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                       "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
}

/// EXCEPTION_RECORD64 (0x98 bytes; the header's copy is at 0xF00).
public struct ExceptionRecord64: Sendable, Equatable {
    public static let size: UInt64 = 0x98

    public var code: UInt32
    public var flags: UInt32
    public var nestedRecord: UInt64
    public var address: UInt64
    /// ExceptionInformation[0 ..< NumberParameters], at most 15.
    public var information: [UInt64]

    /// No exception (a capture without a bug check).
    public static let none = ExceptionRecord64(code: 0, flags: 0, nestedRecord: 0, address: 0, information: [])

    public init(code: UInt32, flags: UInt32, nestedRecord: UInt64, address: UInt64, information: [UInt64]) {
        self.code = code
        self.flags = flags
        self.nestedRecord = nestedRecord
        self.address = address
        self.information = information
    }

    public init(parsing record: Record, at offset: UInt64) throws {
        code = try record.u32(offset)
        flags = try record.u32(offset + 4)
        nestedRecord = try record.u64(offset + 8)
        address = try record.u64(offset + 0x10)
        let count = min(try record.u32(offset + 0x18), 15)  // the array has 15 slots whatever the count says
        information = try (0..<UInt64(count)).map { try record.u64(offset + 0x20 + 8 * $0) }
    }
}
