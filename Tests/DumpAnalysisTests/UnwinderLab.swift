// The hand-built memory and unwind data the UnwinderTests' small cases run in.
import DumpAnalysis
import DumpFormat
import DumpForge
import DumpMemory
import Testing
import TestSupport

// MARK: - A small laboratory

let labBase: UInt64 = 0xFFFF_F806_1000_0000
let labStackTop: UInt64 = 0xFFFF_C000_0001_0000
let returnAddress: UInt64 = 0xFFFF_F806_2000_1234
let callerRBX: UInt64 = 0xCA11_E500_0000_0003
let callerRBP: UInt64 = 0xCA11_E500_0000_0005
let callerRSI: UInt64 = 0xCA11_E500_0000_0006
let callerRDI: UInt64 = 0xCA11_E500_0000_0007
let callerR12: UInt64 = 0xCA11_E500_0000_000C

/// The callee's registers: recognisable values, so a register left alone is easy to tell.
func calleeState(rip: UInt64, rsp: UInt64) -> RegisterState {
    var state = RegisterState(gpr: (0..<16).map { 0xCA11_EE00_0000_0000 | UInt64($0) }, rip: rip)
    state.rsp = rsp
    return state
}

/// A forged image mapped at `labBase` and a 16 KiB stack below `labStackTop`.
struct Lab {
    let memory = FlatMemory()
    let image: ForgedImage
    let pe: PEImage

    init(_ functions: [ForgedFunction]) throws {
        image = forgePEImage(name: "lab.sys", timeDateStamp: 0x6000_0000, checkSum: 0, functions: functions, preferredBase: labBase)
        memory.map(labBase, image.bytes)
        memory.map(labStackTop - 0x4000, [UInt8](repeating: 0, count: 0x4000))
        pe = try PEImage(reading: memory, base: labBase)
    }

    func address(_ name: String, _ offset: UInt32) -> UInt64 { labBase + UInt64(image.functions[name]!.lowerBound + offset) }

    func function(_ name: String) throws -> RuntimeFunction? {
        try pe.runtimeFunction(containing: image.functions[name]!.lowerBound, in: memory)
    }

    func unwind(_ state: RegisterState) throws -> UnwoundFrame {
        let function = try pe.runtimeFunction(containing: UInt32(state.rip - labBase), in: memory)
        return try unwindFrame(state, function: function, imageBase: labBase, space: memory)
    }
}

/// A few byte ranges at chosen virtual addresses; everything else is absent.
final class FlatMemory: KernelAddressSpace {
    private var regions: [(base: UInt64, bytes: [UInt8])] = []

    func map(_ base: UInt64, _ bytes: [UInt8]) { regions.append((base, bytes)) }

    func write64(_ va: UInt64, _ value: UInt64) {
        guard let index = regions.firstIndex(where: { va >= $0.base && va - $0.base + 8 <= UInt64($0.bytes.count) }) else {
            fatalError("FlatMemory: no region holds 0x\(String(va, radix: 16))")
        }
        let offset = Int(va - regions[index].base)
        for byte in 0..<8 { regions[index].bytes[offset + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(byte))) }
    }

    func read(_ va: UInt64, count: Int) throws -> [UInt8] {
        for region in regions where va >= region.base {
            let offset = va - region.base
            if offset <= UInt64(region.bytes.count), UInt64(count) <= UInt64(region.bytes.count) - offset {
                return Array(region.bytes[Int(offset)..<Int(offset) + count])
            }
        }
        throw MemoryError(.notPresent, address: va)
    }

    func u64(_ va: UInt64) throws -> UInt64 {
        try read(va, count: 8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// An UNWIND_INFO: header, slots padded to an even count, then `tail`.
func unwindBytes(version: UInt8, flags: UInt8, prolog: UInt8, frame: UInt8, slots: [UInt16], tail: [UInt8] = []) -> [UInt8] {
    var bytes: [UInt8] = [version | flags << 3, prolog, UInt8(slots.count), frame]
    for slot in slots.count % 2 == 0 ? slots : slots + [0] {
        bytes += [UInt8(truncatingIfNeeded: slot), UInt8(slot >> 8)]
    }
    return bytes + tail
}

func runtimeFunctionBytes(_ function: RuntimeFunction) -> [UInt8] {
    le32(function.beginAddress) + le32(function.endAddress) + le32(function.unwindData)
}

func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

func le32(_ bytes: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }

func put16(_ bytes: inout [UInt8], _ at: Int, _ value: UInt16) {
    bytes[at] = UInt8(truncatingIfNeeded: value)
    bytes[at + 1] = UInt8(value >> 8)
}

func put32(_ bytes: inout [UInt8], _ at: Int, _ value: UInt32) {
    for index in 0..<4 { bytes[at + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
}
