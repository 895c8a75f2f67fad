import DumpFormat
import DumpMemory

// UNWIND_INFO, the x64 description of what a function's prolog did to the stack (Microsoft's
// "x64 exception handling"; ../shared/docs/windows-dump-format.md §7):
//
//   byte 0   Version (bits 0-2: 1, or 2 with epilog codes) | Flags (bits 3-7)
//   byte 1   SizeOfProlog
//   byte 2   CountOfCodes: 16-bit slots that follow, padding not counted
//   byte 3   FrameRegister (bits 0-3) | FrameOffset (bits 4-7, scaled by 16)
//   4...     CountOfCodes slots, padded to an even count, in reverse execution order
//   then     for CHAININFO the parent's RUNTIME_FUNCTION (12 bytes); for EHANDLER or UHANDLER
//            the handler's RVA (4 bytes) and its data
//
// A slot is CodeOffset (the prolog offset just past the instruction) in its low byte, UnwindOp
// in bits 8-11 and OpInfo in bits 12-15; some ops take one or two more slots of operand, a
// 32-bit operand stored low half first.

/// One decoded unwind code: an operation of the prolog, to be undone when unwinding.
public struct UnwindCode: Sendable, Equatable {
    public enum Operation: Sendable, Equatable {
        /// UWOP_PUSH_NONVOL (0): `push reg`.
        case pushNonvolatile(register: UInt8)
        /// UWOP_ALLOC_LARGE (1): `sub rsp, bytes`; OpInfo 0 stores bytes/8 in one slot, OpInfo 1
        /// the unscaled size in two.
        case allocateLarge(bytes: UInt32)
        /// UWOP_ALLOC_SMALL (2): `sub rsp, bytes` for 8...128, OpInfo = bytes/8 - 1.
        case allocateSmall(bytes: UInt32)
        /// UWOP_SET_FPREG (3): `lea FrameRegister, [rsp + 16*FrameOffset]` (both in byte 3).
        case setFramePointer
        /// UWOP_SAVE_NONVOL (4, offset/8 in one slot) or _FAR (5, unscaled offset in two):
        /// `mov [base + offset], reg`, base being the fixed-allocation base (see `X64Unwinder`).
        case saveNonvolatile(register: UInt8, offset: UInt32)
        /// UWOP_SAVE_XMM128 (8, offset/16 in one slot) or _FAR (9, unscaled offset in two).
        case saveXMM128(register: UInt8, offset: UInt32)
        /// UWOP_PUSH_MACHFRAME (10): the CPU pushed SS, RSP, RFLAGS, CS, RIP (and an error code
        /// when OpInfo is 1) before the handler's first instruction.
        case pushMachineFrame(errorCode: Bool)
        /// UWOP_EPILOG (6, version 2 only): an epilog descriptor. It says where epilogs are and
        /// undoes nothing; `operand` is the raw second slot.
        case epilog(info: UInt8, operand: UInt16)
    }

    /// Offset in the prolog just past the instruction this code describes.
    public var codeOffset: UInt8
    /// The raw UnwindOp (0...15), which tells the short and far forms apart.
    public var op: UInt8
    public var operation: Operation
    /// Slots the code occupies, its operands included.
    public var slots: Int

    public init(codeOffset: UInt8, op: UInt8, operation: Operation, slots: Int) {
        self.codeOffset = codeOffset
        self.op = op
        self.operation = operation
        self.slots = slots
    }
}

/// A decoded UNWIND_INFO.
public struct UnwindInfo: Sendable, Equatable {
    public static let exceptionHandlerFlag: UInt8 = 1
    public static let terminationHandlerFlag: UInt8 = 2
    public static let chainInfoFlag: UInt8 = 4
    /// Chained infos followed from one function before the chain is called a loop.
    public static let maximumChainDepth = 32

    public var version: UInt8
    public var flags: UInt8
    public var sizeOfProlog: UInt8
    public var countOfCodes: UInt8
    /// 0 when the function has no frame pointer; never 4 (RSP).
    public var frameRegister: UInt8
    /// The scaled offset as stored: the frame register is RSP + 16 * frameOffset once set.
    public var frameOffset: UInt8
    /// In stored order: the last prolog instruction first.
    public var codes: [UnwindCode]
    /// The parent's RUNTIME_FUNCTION when `flags` has CHAININFO.
    public var chainedFunction: RuntimeFunction?
    /// The RVA of the exception or termination handler when `flags` has EHANDLER or UHANDLER
    /// (and not CHAININFO).
    public var handler: UInt32?

    public var isChained: Bool { flags & Self.chainInfoFlag != 0 }
    /// FrameOffset in bytes.
    public var frameOffsetBytes: UInt64 { UInt64(frameOffset) * 16 }

    /// Bytes the structure takes: header, padded slots and the chain or handler tail.
    static func length(flags: UInt8, countOfCodes: UInt8) -> Int {
        let slots = (Int(countOfCodes) + 1) & ~1
        let tail = flags & chainInfoFlag != 0 ? RuntimeFunction.size
            : flags & (exceptionHandlerFlag | terminationHandlerFlag) != 0 ? 4 : 0
        return 4 + 2 * slots + tail
    }

    /// Decodes an UNWIND_INFO from `bytes` (which must hold all of it: see `length`).
    /// `where` names its location in error messages.
    public init(bytes: [UInt8], where location: String = "") throws {
        let at = location.isEmpty ? "" : " at \(location)"
        guard bytes.count >= 4 else { throw DumpError(.corrupt, "UNWIND_INFO\(at) is cut short: \(bytes.count) bytes") }
        version = bytes[0] & 7
        flags = bytes[0] >> 3
        sizeOfProlog = bytes[1]
        countOfCodes = bytes[2]
        frameRegister = bytes[3] & 0xF
        frameOffset = bytes[3] >> 4
        guard version == 1 || version == 2 else {
            throw DumpError(.corrupt, "UNWIND_INFO\(at) has version \(version); only 1 and 2 exist")
        }
        guard frameRegister != 4 else {
            throw DumpError(.corrupt, "UNWIND_INFO\(at) names RSP as its frame register")
        }
        let needed = Self.length(flags: flags, countOfCodes: countOfCodes)
        guard bytes.count >= needed else {
            throw DumpError(.corrupt, "UNWIND_INFO\(at) is cut short: \(bytes.count) of its \(needed) bytes")
        }

        let count = Int(countOfCodes)
        func slot(_ index: Int) -> UInt16 { PEBytes.u16(bytes, 4 + 2 * index) }
        func operand32(_ index: Int) -> UInt32 { UInt32(slot(index)) | UInt32(slot(index + 1)) << 16 }

        var codes: [UnwindCode] = []
        var index = 0
        while index < count {
            let value = slot(index)
            let codeOffset = UInt8(truncatingIfNeeded: value)
            let op = UInt8(truncatingIfNeeded: value >> 8) & 0xF
            let info = UInt8(truncatingIfNeeded: value >> 12)
            let slots: Int
            switch op {
            case 0, 2, 3, 10: slots = 1
            case 1: slots = info == 0 ? 2 : 3
            case 4, 8: slots = 2
            case 5, 9: slots = 3
            // Windows' own table gives op 6 one operand slot (it was UWOP_SAVE_XMM before version
            // 2 reused it), and Wine's unwinder agrees: each epilog descriptor takes two slots.
            case 6 where version == 2: slots = 2
            case 6: throw DumpError(.corrupt, "UNWIND_INFO\(at) uses op 6 (UWOP_EPILOG) in a version 1 record, slot \(index)")
            default: throw DumpError(.corrupt, "UNWIND_INFO\(at) has unknown unwind op \(op) in slot \(index)")
            }
            guard index + slots <= count else {
                throw DumpError(.corrupt, "UNWIND_INFO\(at): the op \(op) in slot \(index) needs \(slots) slots but CountOfCodes is \(count)")
            }
            let operation: UnwindCode.Operation
            switch op {
            case 0: operation = .pushNonvolatile(register: info)
            case 1:
                guard info <= 1 else { throw DumpError(.corrupt, "UNWIND_INFO\(at): UWOP_ALLOC_LARGE in slot \(index) has OpInfo \(info); only 0 and 1 exist") }
                operation = .allocateLarge(bytes: info == 0 ? UInt32(slot(index + 1)) * 8 : operand32(index + 1))
            case 2: operation = .allocateSmall(bytes: UInt32(info) * 8 + 8)
            case 3:
                guard frameRegister != 0 else { throw DumpError(.corrupt, "UNWIND_INFO\(at) has UWOP_SET_FPREG in slot \(index) but no frame register") }
                operation = .setFramePointer
            case 4: operation = .saveNonvolatile(register: info, offset: UInt32(slot(index + 1)) * 8)
            case 5: operation = .saveNonvolatile(register: info, offset: operand32(index + 1))
            case 6: operation = .epilog(info: info, operand: slot(index + 1))
            case 8: operation = .saveXMM128(register: info, offset: UInt32(slot(index + 1)) * 16)
            case 9: operation = .saveXMM128(register: info, offset: operand32(index + 1))
            default:  // 10
                guard info <= 1 else { throw DumpError(.corrupt, "UNWIND_INFO\(at): UWOP_PUSH_MACHFRAME in slot \(index) has OpInfo \(info); only 0 and 1 exist") }
                operation = .pushMachineFrame(errorCode: info == 1)
            }
            codes.append(UnwindCode(codeOffset: codeOffset, op: op, operation: operation, slots: slots))
            index += slots
        }
        self.codes = codes

        let tail = 4 + 2 * ((count + 1) & ~1)
        if flags & Self.chainInfoFlag != 0 {
            chainedFunction = RuntimeFunction(bytes, at: tail)
            handler = nil
        } else if flags & (Self.exceptionHandlerFlag | Self.terminationHandlerFlag) != 0 {
            chainedFunction = nil
            handler = PEBytes.u32(bytes, tail)
        } else {
            chainedFunction = nil
            handler = nil
        }
    }

    /// Reads and decodes the UNWIND_INFO at `imageBase + rva`.
    public init(reading space: any KernelAddressSpace, imageBase: UInt64, rva: UInt32) throws {
        let address = imageBase &+ UInt64(rva)
        guard rva & 3 == 0 else {
            throw DumpError(.corrupt, "UNWIND_INFO at 0x\(hex(address)) (RVA 0x\(hex(rva))) is not DWORD aligned")
        }
        let header = try space.read(address, count: 4)
        let length = Self.length(flags: header[0] >> 3, countOfCodes: header[2])
        let bytes = length == 4 ? header : try space.read(address, count: length)
        try self.init(bytes: bytes, where: "0x\(hex(address))")
    }

    /// The UNWIND_INFO of `function` followed by those of its chained parents, innermost first.
    /// An indirect RUNTIME_FUNCTION (UnwindData bit 0) met on the way is followed to the entry
    /// it names. Throws when the chain is longer than `maximumChainDepth` (a loop, in practice).
    public static func chain(for function: RuntimeFunction, imageBase: UInt64, in space: any KernelAddressSpace) throws -> [UnwindInfo] {
        var infos: [UnwindInfo] = []
        var current = function
        var hops = 0
        while true {
            if current.unwindData & 1 != 0 {
                let target = imageBase &+ UInt64(current.unwindData & ~1)
                current = RuntimeFunction(try space.read(target, count: RuntimeFunction.size), at: 0)
            } else {
                let info = try UnwindInfo(reading: space, imageBase: imageBase, rva: current.unwindData)
                infos.append(info)
                guard let parent = info.chainedFunction else { return infos }
                current = parent
            }
            hops += 1
            guard hops <= maximumChainDepth else {
                throw DumpError(.corrupt, "the unwind chain of the function at RVA 0x\(hex(function.beginAddress)) (image 0x\(hex(imageBase))) is more than \(maximumChainDepth) links long")
            }
        }
    }
}
