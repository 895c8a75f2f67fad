/// Lays out a thread's kernel stack so that x64 unwinding through the forged images' UNWIND_INFO
/// reproduces the described call chain exactly.
///
/// Frames are built from the outermost (the thread's start) inwards, simulating each prolog:
/// a `call` leaves the return address at the caller's RSP - 8, `push` stores the caller's
/// register value, `sub rsp` makes room, `lea rbp, [rsp+16*n]` fixes the frame pointer, `mov
/// [rsp+n], r` saves a register, and a trap stub's machine frame holds the interrupted RIP and
/// RSP. Register values flow the same way an unwinder restores them, so whatever an unwinder
/// recovers at each frame can be compared with `ForgedFrame`.
struct StackForge {
    /// Where a function lives, as the forge mapped it.
    struct Placement {
        var address: UInt64
        /// The prolog as executed, the parents' first for a chained fragment.
        var prolog: [PrologStep]
        /// Bytes the function takes from the stack after its prolog (an alloca), below the
        /// fixed frame its frame pointer marks.
        var dynamicAllocation: UInt64 = 0
        /// Real compiled code: the call before each return site is already there.
        var compiled = false
    }

    /// Writes the frames for `chain` (innermost first) below `top` and returns the innermost
    /// register state and the truth for every frame.
    ///
    /// A trap handler for which `interruptStack` gives an address runs on that stack (the CPU
    /// switched to it, aligned to 16, before pushing the machine frame), and so do the frames
    /// it calls; the machine frame records the interrupted RSP on the stack below.
    static func build(chain: [CodeLocation], top: UInt64, seed: UInt64, interruptStack: (CodeLocation) -> UInt64? = { _ in nil },
                      placement: (CodeLocation) -> Placement, write: (UInt64, UInt64) -> Void) -> ForgedStack {
        var registers = (0..<16).map { 0xC0DE_0000_0000_0000 | seed << 16 | UInt64($0) }  // outermost frame's values
        var frames: [ForgedFrame] = []
        var callerRSP = top & ~0xF
        var callerRIP: UInt64 = 0  // the outermost frame returns nowhere
        var interrupted = false
        for (depth, location) in chain.enumerated().reversed() {
            let place = placement(location)
            let rip = place.address + UInt64(location.offset)
            let callerRegisters = registers
            // Entry: a call pushes the return address; a trap pushes a machine frame instead.
            var rsp: UInt64
            if case .pushMachineFrame(let errorCode) = place.prolog.first {
                let frame = (interruptStack(location).map { $0 & ~0xF } ?? callerRSP) - (errorCode ? 48 : 40)
                let ripSlot = frame + (errorCode ? 8 : 0)
                write(ripSlot, callerRIP)
                write(ripSlot + 8, 0x10)  // CS: kernel code
                write(ripSlot + 16, 0x10282)  // RFLAGS
                write(ripSlot + 24, callerRSP)
                write(ripSlot + 32, 0x18)  // SS
                rsp = frame
                interrupted = true
            } else {
                rsp = callerRSP - 8
                write(rsp, callerRIP)
            }
            var framePointer: (register: Int, offset: UInt64)?
            // Saves and the frame pointer are placed relative to RSP here, which is the fixed
            // allocation base the unwind codes refer to only when they follow every push and
            // allocation, as compilers emit them.
            let lastMove = place.prolog.lastIndex { if case .pushNonvolatile = $0 { true } else if case .allocate = $0 { true } else { false } } ?? -1
            let firstFixed = place.prolog.firstIndex { if case .saveNonvolatile = $0 { true } else if case .setFramePointer = $0 { true } else { false } } ?? Int.max
            precondition(firstFixed > lastMove, "forge: \(location.function)'s saves must follow its pushes and allocations")
            for step in place.prolog {
                switch step {
                case .pushNonvolatile(let register):
                    rsp -= 8
                    write(rsp, callerRegisters[Int(register)])
                    registers[Int(register)] = 0xF00D_0000_0000_0000 | UInt64(depth) << 8 | UInt64(register)
                case .allocate(let bytes):
                    rsp -= UInt64(bytes)
                case .setFramePointer(let register, let offset):
                    framePointer = (Int(register), UInt64(offset) * 16)
                case .saveNonvolatile(let register, let offset):
                    write(rsp + UInt64(offset), callerRegisters[Int(register)])
                    registers[Int(register)] = 0xFEED_0000_0000_0000 | UInt64(depth) << 8 | UInt64(register)
                case .saveXMM128, .pushMachineFrame:
                    break
                }
            }
            if let framePointer { registers[framePointer.register] = rsp + framePointer.offset }
            rsp -= place.dynamicAllocation
            var state = registers
            state[4] = rsp
            frames.append(ForgedFrame(rip: rip, rsp: rsp, location: location, viaTrap: interrupted, registers: state))
            interrupted = false
            callerRSP = rsp
            callerRIP = rip
        }
        registers[4] = callerRSP
        return ForgedStack(registers: registers, rip: callerRIP, frames: frames.reversed())
    }
}

/// One frame as the forge laid it out: the RIP inside the function and the RSP once its prolog ran.
public struct ForgedFrame: Sendable, Equatable {
    public var rip: UInt64
    public var rsp: UInt64
    public var location: CodeLocation
    /// True when the frame was entered through a trap (its caller's RIP sits in a machine frame).
    public var viaTrap: Bool
    /// The registers while this frame runs (RSP included), in x64 register-number order: what an
    /// unwinder should recover for the nonvolatile ones.
    public var registers: [UInt64]
}

/// A forged stack: the innermost register state (RSP included, in x64 register-number order)
/// and the frames, innermost first.
public struct ForgedStack: Sendable, Equatable {
    public var registers: [UInt64]
    public var rip: UInt64
    public var frames: [ForgedFrame]
    public var rsp: UInt64 { registers[4] }
}
