import DumpFormat
import DumpMemory

/// How a frame was found; signatures and culprit rules trust them in this order.
public enum FrameTrust: String, Sendable, Codable {
    /// From a saved CPU context (the first frame).
    case context
    /// By undoing the caller's prolog with its UNWIND_INFO.
    case unwindInfo = "unwind info"
    /// Through a machine frame or KTRAP_FRAME: the interrupted instruction, not a return site.
    case trapFrame = "trap frame"
    /// By scanning the stack for a value that points into code; no unwind data was readable.
    case scan
}

public struct StackFrame: Sendable, Equatable, Codable {
    public var rip: UInt64
    public var rsp: UInt64
    public var trust: FrameTrust
    /// `nt!KeBugCheckEx+0x30` or `nvlddmkm+0x1091`, or the bare address outside any module.
    public var symbol: String
    /// The module's file name, when the address is inside one.
    public var module: String?
    /// The module's short name and the address's offset in it: ASLR-independent.
    public var moduleKey: String?
    public var rva: UInt32?
    /// The function name when an export gives it.
    public var function: String?

    /// `nvlddmkm+0x1091`: the instruction as module and RVA, the same under any ASLR and in a
    /// full dump or a minidump; nil outside every module.
    public var moduleOffsetKey: String? {
        guard let moduleKey, let rva else { return nil }
        return "\(moduleKey)+0x\(String(rva, radix: 16))"
    }
}

/// Walks one stack: from a context through the images' unwind data, into trap frames, and by a
/// marked scan where no unwind data exists (minidumps hold no .pdata).
///
/// A walk ends at the thread's boundary, as WinDbg's does: where a clean unwind returns to
/// address 0 (the thread's start); at the system-service entry, whose
/// frame's RSP is the KTRAP_FRAME the `syscall` built (KTHREAD.TrapFrame), with the user-mode
/// RIP and RSP that frame saved as the last frame; and at any user-mode address. Nothing above
/// a boundary is scanned: the stack there holds stale values of earlier calls, which a scan
/// would take for callers.
public struct StackWalker: Sendable {
    public var maximumFrames = 64
    /// Candidate return addresses a scan may accept without a call instruction before them:
    /// known faulting instructions (a machine frame's RIP is not a return site).
    public var knownFaultAddresses: Set<UInt64> = []

    public init() {}

    /// - Parameter startsAfterInstruction: the start RIP is past the instruction that stopped it
    ///   (a software interrupt such as the `int 29h` of a fail-fast), so it is looked up one byte
    ///   back like a return address.
    ///   - trapFrame: the thread's KTHREAD.TrapFrame, when known: where its system call entered.
    public func walk(from start: RegisterState, symbolizer: Symbolizer, space: any KernelAddressSpace, startsAfterInstruction: Bool = false,
                     trapFrame: UInt64? = nil) -> [StackFrame] {
        var frames: [StackFrame] = []
        var state = start
        var trust = FrameTrust.context
        var firstLookupBack = startsAfterInstruction
        while frames.count < maximumFrames, state.rip != 0, isCanonical(state.rip) {
            frames.append(frame(state, trust: trust, symbolizer))
            if state.rip >> 63 == 0 { break }  // user mode: the kernel stack ends below it
            if let trapFrame, let user = Self.systemCallBoundary(at: state.rsp, trapFrame: trapFrame, space: space) {
                if frames.count < maximumFrames { frames.append(frame(user, trust: .trapFrame, symbolizer)) }
                break
            }
            // Unwind with the function's UNWIND_INFO (a function missing from a module's .pdata
            // is a leaf); a result that does not move up the stack is not believed. A return
            // address is looked up one byte back: when a call is a function's last instruction,
            // the return address is already the next function's first byte.
            let lookup = trust == .unwindInfo || trust == .scan || firstLookupBack ? state.rip &- 1 : state.rip
            firstLookupBack = false
            // A machine frame may lead to another stack (an NMI runs on its own interrupt stack,
            // and what it interrupted is on the thread's), so only there may RSP go down.
            if let (module, function) = symbolizer.runtimeFunction(at: lookup),
               let unwound = try? unwindFrame(state, function: function, imageBase: module.base, space: space),
               unwound.caller.rsp > state.rsp || (unwound.poppedMachineFrame && unwound.caller.rsp != state.rsp) {
                // A clean unwind to return address 0 is the thread's start (nt!KiStartSystemThread
                // and the like return nowhere): the stack ends, and what lies above is stale.
                if unwound.caller.rip == 0 { break }
                trust = unwound.poppedMachineFrame ? .trapFrame : .unwindInfo
                state = unwound.caller
                continue
            }
            // No unwind data (a minidump, a module whose .pdata is paged out, code outside any
            // module): look up the stack for the next return address.
            guard let (slot, value, interrupted) = scan(above: state.rsp, symbolizer: symbolizer, space: space) else { break }
            state.rip = value
            state.rsp = slot &+ 8
            // A machine frame holds the interrupted RSP three slots above its RIP, on whichever
            // stack the interrupted code ran.
            if interrupted, Self.isMachineFrame(at: slot, space: space), let rsp = try? space.u64(slot &+ 24), rsp >> 47 == 0x1_FFFF, rsp != slot {
                state.rsp = rsp
            }
            trust = interrupted ? .trapFrame : .scan
        }
        return frames
    }

    func frame(_ state: RegisterState, trust: FrameTrust, _ symbolizer: Symbolizer) -> StackFrame {
        guard let location = symbolizer.locate(state.rip) else {
            return StackFrame(rip: state.rip, rsp: state.rsp, trust: trust, symbol: "0x" + String(state.rip, radix: 16))
        }
        return StackFrame(rip: state.rip, rsp: state.rsp, trust: trust, symbol: location.text, module: location.module.name,
                          moduleKey: location.moduleKey, rva: location.rva, function: location.export?.name)
    }

    /// The next stack slot above `rsp` holding a plausible return address: inside a module and,
    /// when the code bytes are in the dump, just after a call instruction; or an interrupted
    /// instruction in a machine frame (then `interrupted` is true). Searches 8 KiB.
    func scan(above rsp: UInt64, symbolizer: Symbolizer, space: any KernelAddressSpace) -> (slot: UInt64, value: UInt64, interrupted: Bool)? {
        var slot = rsp
        for _ in 0..<1024 {
            guard let value = try? space.u64(slot) else { return nil }
            if isCanonical(value), symbolizer.module(containing: value) != nil {
                if knownFaultAddresses.contains(value) || Self.isMachineFrame(at: slot, space: space) { return (slot, value, true) }
                if Self.followsCall(value, space: space) != false { return (slot, value, false) }
            }
            slot &+= 8
        }
        return nil
    }

    /// The user-mode state a system call entered from, when a frame at `rsp` is the
    /// system-service entry's: its RSP is the thread's KTRAP_FRAME (WinDbg prints "TrapFrame @"
    /// the same address), and the frame's SegCs has privilege level 3. Rip is at +0x168, SegCs
    /// at +0x170, Rsp at +0x180, Rbp at +0x158.
    static func systemCallBoundary(at rsp: UInt64, trapFrame: UInt64, space: any KernelAddressSpace) -> RegisterState? {
        guard rsp == trapFrame, let frame = try? space.read(trapFrame, count: 0x190) else { return nil }
        func u64(_ offset: Int) -> UInt64 { frame[offset..<offset + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        guard u64(0x170) & 3 == 3 else { return nil }
        var gpr = [UInt64](repeating: 0, count: 16)
        gpr[4] = u64(0x180)
        gpr[5] = u64(0x158)
        return RegisterState(gpr: gpr, rip: u64(0x168))
    }

    /// Whether `slot` starts a machine frame the CPU pushed on a trap or interrupt: RIP, then
    /// the kernel code selector 0x10, then RFLAGS with its always-one bit 1 set. The RIP there
    /// is an interrupted instruction, not a return address, so no call precedes it.
    static func isMachineFrame(at slot: UInt64, space: any KernelAddressSpace) -> Bool {
        guard let cs = try? space.u64(slot &+ 8), let flags = try? space.u64(slot &+ 16) else { return false }
        return cs == 0x10 && flags & 0x2 != 0 && flags < 0x40_0000
    }

    /// Whether the bytes before `address` end with a call instruction: nil when unreadable.
    /// Forms: E8 rel32 (5 bytes), FF /2 with ModRM register or [reg] (2-3 bytes), FF 15 disp32
    /// (6 bytes), FF /2 with disp8/disp32 (3/6/7 bytes), and the 7-byte REX FF 15 form.
    static func followsCall(_ address: UInt64, space: any KernelAddressSpace) -> Bool? {
        guard let bytes = try? space.read(address &- 7, count: 7) else { return nil }
        if bytes[2] == 0xE8 { return true }
        if bytes[1] == 0xFF, bytes[2] == 0x15 { return true }
        if bytes[5] == 0xFF, (bytes[6] & 0x38) == 0x10, bytes[6] >> 6 == 3 { return true }
        if bytes[4] == 0xFF, (bytes[5] & 0x38) == 0x10, bytes[5] >> 6 == 1 { return true }
        if bytes[0] == 0x48, bytes[1] == 0xFF, bytes[2] == 0x15 { return true }
        return false
    }
}
