import DumpFormat
import DumpMemory

/// The integer registers of one frame: what unwinding reads and restores.
public struct RegisterState: Sendable, Equatable {
    /// 16 registers in x64 register-number order: RAX RCX RDX RBX RSP RBP RSI RDI R8...R15.
    public var gpr: [UInt64]
    public var rip: UInt64

    public init(gpr: [UInt64], rip: UInt64) {
        precondition(gpr.count == 16, "RegisterState holds 16 general registers, got \(gpr.count)")
        self.gpr = gpr
        self.rip = rip
    }

    public init(_ context: Context64) {
        self.init(gpr: context.gpr, rip: context.rip)
    }

    public var rsp: UInt64 {
        get { gpr[4] }
        set { gpr[4] = newValue }
    }

    public var rbp: UInt64 {
        get { gpr[5] }
        set { gpr[5] = newValue }
    }
}

/// The result of unwinding one frame.
public struct UnwoundFrame: Sendable, Equatable {
    /// The caller's registers. Volatile registers keep the callee's values: they cannot be
    /// recovered and are not meaningful in the caller.
    public var caller: RegisterState
    /// True when a machine frame (UWOP_PUSH_MACHFRAME) was popped: the caller was interrupted
    /// by a trap or interrupt at `caller.rip`, which is the faulting instruction itself rather
    /// than a return address (so no "- 1" when looking it up).
    public var poppedMachineFrame: Bool
    /// True when RIP was found inside an epilog and the rest of the epilog was simulated
    /// instead of undoing the prolog's codes.
    public var simulatedEpilog: Bool

    public init(caller: RegisterState, poppedMachineFrame: Bool, simulatedEpilog: Bool = false) {
        self.caller = caller
        self.poppedMachineFrame = poppedMachineFrame
        self.simulatedEpilog = simulatedEpilog
    }
}

/// Recovers the caller's registers from a frame's, as Windows' RtlVirtualUnwind does, using
/// the function's unwind codes (Microsoft's "x64 exception handling"; §7 of
/// ../shared/docs/windows-dump-format.md).
///
/// - `function` nil means a leaf function (no .pdata entry): it did not touch RSP, so the
///   return address is at [RSP].
/// - Epilogs: when RIP lies in [BeginAddress, EndAddress) past the prolog of a function that
///   has unwind codes, and points at an epilog of the canonical shape —
///   optionally `add rsp, imm8/imm32` (48 83 C4 ib, 48 81 C4 id), then any `pop reg`
///   (58+r, with a 40-4F REX prefix for R8-R15), then `ret` (C3, F3 C3 or C2 iw) — the
///   remaining instructions are simulated, because part of the frame may already be gone. Any
///   other shape (`lea rsp`, a tail `jmp`, `iretq`) falls back to the unwind codes, as does a
///   code page that cannot be read.
/// - Otherwise the codes of the function's UNWIND_INFO and of every chained parent are undone
///   in stored order. In the primary UNWIND_INFO, while RIP is still inside the prolog, only
///   codes whose CodeOffset <= RIP - BeginAddress apply (the instructions already executed);
///   chained parents always apply in full.
/// - SAVE_NONVOL and SAVE_XMM128 offsets are from the fixed-allocation base: the frame
///   register minus 16 * FrameOffset when the function sets one up (and has, at this RIP),
///   otherwise RSP as it is when that UNWIND_INFO's codes start being undone.
/// - UWOP_PUSH_MACHFRAME: RIP = [RSP (+8 with an error code)], RSP = [that + 24]; with no
///   machine frame, RIP = [RSP] and RSP += 8 once all codes are undone.
///
/// `state.rip` is used as is. For a frame reached through a return address, a caller looking
/// up `function` (or a name) should use RIP - 1, as debuggers do, since a call that ends a
/// function returns to the next one's first byte; after a popped machine frame RIP is the
/// interrupted instruction itself and needs no adjustment.
///
/// Every value read from memory goes through wrapping arithmetic; a bad value yields an
/// absurd address, whose read then fails with a `MemoryError`, rather than a trap.
public func unwindFrame(_ state: RegisterState, function: RuntimeFunction?, imageBase: UInt64, space: any KernelAddressSpace) throws -> UnwoundFrame {
    var registers = state
    guard let function else {
        return UnwoundFrame(caller: try popReturnAddress(registers, space), poppedMachineFrame: false)
    }

    let chain = try UnwindInfo.chain(for: function, imageBase: imageBase, in: space)
    let begin = imageBase &+ UInt64(function.beginAddress)
    let offset = state.rip &- begin  // huge when RIP lies before the function: "not in the prolog"
    let primary = chain[0]
    let inProlog = offset < UInt64(primary.sizeOfProlog)

    let insideFunction = function.endAddress > function.beginAddress && offset < UInt64(function.endAddress - function.beginAddress)
    if !inProlog, insideFunction, !primary.codes.isEmpty,
       let simulated = try simulateEpilog(at: state, space: space) {
        return UnwoundFrame(caller: simulated, poppedMachineFrame: false, simulatedEpilog: true)
    }

    var machineFrame = false
    for (depth, info) in chain.enumerated() {
        // Only the primary info can be cut short by a RIP inside the prolog.
        let executed: UInt64? = depth == 0 && inProlog ? offset : nil
        func applies(_ code: UnwindCode) -> Bool { executed.map { UInt64(code.codeOffset) <= $0 } ?? true }

        // The fixed-allocation base, for SET_FPREG and the SAVE_* codes.
        var frameBase = registers.rsp
        if info.frameRegister != 0 {
            let established = executed == nil || info.isChained
                || info.codes.contains { $0.operation == .setFramePointer && applies($0) }
            if established { frameBase = registers.gpr[Int(info.frameRegister)] &- info.frameOffsetBytes }
        }

        for code in info.codes where applies(code) {
            switch code.operation {
            case .pushNonvolatile(let register):
                registers.gpr[Int(register)] = try space.u64(registers.rsp)
                registers.rsp &+= 8
            case .allocateLarge(let bytes), .allocateSmall(let bytes):
                registers.rsp &+= UInt64(bytes)
            case .setFramePointer:
                registers.rsp = frameBase
            case .saveNonvolatile(let register, let offset):
                registers.gpr[Int(register)] = try space.u64(frameBase &+ UInt64(offset))
            case .saveXMM128:
                break  // XMM registers are not tracked
            case .pushMachineFrame(let errorCode):
                let ripSlot = registers.rsp &+ (errorCode ? 8 : 0)
                registers.rip = try space.u64(ripSlot)
                registers.rsp = try space.u64(ripSlot &+ 24)
                machineFrame = true
            case .epilog:
                break  // a descriptor: nothing to undo
            }
        }
    }

    if !machineFrame { registers = try popReturnAddress(registers, space) }
    return UnwoundFrame(caller: registers, poppedMachineFrame: machineFrame)
}

/// RIP = [RSP], RSP += 8.
private func popReturnAddress(_ state: RegisterState, _ space: any KernelAddressSpace) throws -> RegisterState {
    var registers = state
    registers.rip = try space.u64(registers.rsp)
    registers.rsp &+= 8
    return registers
}

/// When the bytes at RIP are the rest of a canonical epilog, the state after its `ret`; nil
/// when they are not, or cannot be read. Reads memory for the pops and the return address,
/// which do throw when absent.
private func simulateEpilog(at state: RegisterState, space: any KernelAddressSpace) throws -> RegisterState? {
    // The longest epilog recognised: add rsp, imm32 (7) + 16 pops with REX (32) + ret imm16 (3).
    let maximumLength = 42
    let toPageEnd = Int(0x1000 - (state.rip & 0xFFF))
    var code: [UInt8]
    do {
        code = try space.read(state.rip, count: min(maximumLength, toPageEnd))
        if code.count < maximumLength {
            // The epilog may run onto the next page; read it if it is there.
            code += (try? space.read(state.rip &+ UInt64(code.count), count: maximumLength - code.count)) ?? []
        }
    } catch {
        return nil
    }

    // Recognise the whole sequence before touching any register.
    enum Step { case add(UInt64), pop(Int), ret(UInt64) }
    var steps: [Step] = []
    var at = 0
    if code.count >= 4, code[0] == 0x48, code[1] == 0x83, code[2] == 0xC4 {
        steps.append(.add(UInt64(bitPattern: Int64(Int8(bitPattern: code[3])))))
        at = 4
    } else if code.count >= 7, code[0] == 0x48, code[1] == 0x81, code[2] == 0xC4 {
        steps.append(.add(UInt64(bitPattern: Int64(Int32(bitPattern: PEBytes.u32(code, 3))))))
        at = 7
    }
    var pops = 0
    while at < code.count, pops <= 16 {
        var register = 0
        var next = at
        if code[next] & 0xF0 == 0x40 {  // REX; only B matters for pop
            register = code[next] & 1 != 0 ? 8 : 0
            next += 1
            guard next < code.count else { return nil }
        }
        let byte = code[next]
        if (0x58...0x5F).contains(byte) {
            steps.append(.pop(register + Int(byte - 0x58)))
            pops += 1
            at = next + 1
            continue
        }
        guard next == at else { return nil }  // a REX prefix before anything but a pop
        if byte == 0xC3 { steps.append(.ret(0)); break }
        if byte == 0xF3, at + 1 < code.count, code[at + 1] == 0xC3 { steps.append(.ret(0)); break }
        if byte == 0xC2, at + 2 < code.count { steps.append(.ret(UInt64(PEBytes.u16(code, at + 1)))); break }
        return nil
    }
    guard case .ret? = steps.last else { return nil }

    var registers = state
    for step in steps {
        switch step {
        case .add(let bytes): registers.rsp &+= bytes
        case .pop(let register):
            let value = try space.u64(registers.rsp)
            registers.rsp &+= 8
            // pop rsp loads RSP itself; the increment is lost.
            registers.gpr[register] = value
        case .ret(let extra):
            registers.rip = try space.u64(registers.rsp)
            registers.rsp &+= 8 &+ extra
        }
    }
    return registers
}
