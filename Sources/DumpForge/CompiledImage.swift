/// A PE image a real compiler and linker built, placed in a forged dump as the loader would
/// map it, with the prologs its own UNWIND_INFO describes, so that StackForge lays out stacks
/// that real calls through its functions leave.
///
/// Only what the forge needs is read, from the file's own headers (this is the forge's reading,
/// kept apart from the analysis's PEImage): the section table, exported names, .pdata and each
/// function's unwind codes. The file is trusted; it is a fixture the tests build.
struct CompiledImage {
    var image: ForgedImage
    /// Each exported function's prolog, in the order it runs.
    var prologs: [String: [PrologStep]]

    init(file: [UInt8]) {
        func u16(_ at: Int) -> UInt32 { UInt32(file[at]) | UInt32(file[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt32 { u16(at) | u16(at + 2) << 16 }
        let pe = Int(u32(0x3C))
        precondition(u32(pe) == 0x4550 && u16(pe + 4) == 0x8664, "forge: not an x64 PE image")
        let optional = pe + 24
        let sizeOfImage = u32(optional + 56)
        var mapped = [UInt8](repeating: 0, count: Int(sizeOfImage))
        let headers = Int(u32(optional + 60))
        mapped.replaceSubrange(0..<headers, with: file[0..<headers])
        let sections = optional + Int(u16(pe + 20))
        for index in 0..<Int(u16(pe + 6)) {
            let header = sections + 40 * index
            let rva = Int(u32(header + 12)), raw = Int(u32(header + 20))
            let size = min(Int(u32(header + 16)), Int(u32(header + 8)))  // raw data, cut to the virtual size
            mapped.replaceSubrange(rva..<rva + size, with: file[raw..<raw + size])
        }
        func m16(_ at: UInt32) -> UInt32 { UInt32(mapped[Int(at)]) | UInt32(mapped[Int(at) + 1]) << 8 }
        func m32(_ at: UInt32) -> UInt32 { m16(at) | m16(at + 2) << 16 }
        func name(at rva: UInt32) -> String { String(decoding: mapped[Int(rva)...].prefix { $0 != 0 }, as: UTF8.self) }

        // Exports: names and their RVAs.
        let directories = optional + 112
        let exportRVA = u32(directories), pdataRVA = u32(directories + 24), pdataSize = u32(directories + 28)
        var starts: [String: UInt32] = [:]
        let functionTable = m32(exportRVA + 28), nameTable = m32(exportRVA + 32), ordinals = m32(exportRVA + 36)
        for index in 0..<m32(exportRVA + 24) {
            let ordinal = m16(ordinals + 2 * index)
            starts[name(at: m32(nameTable + 4 * index))] = m32(functionTable + 4 * ordinal)
        }

        // .pdata: each function's range and prolog; a leaf has no entry and ends where the next
        // function begins.
        var entries: [UInt32: (end: UInt32, unwind: UInt32)] = [:]
        for index in 0..<pdataSize / 12 {
            let at = pdataRVA + 12 * index
            entries[m32(at)] = (m32(at + 4), m32(at + 8))
        }
        let sortedStarts = starts.values.sorted()
        var functions: [String: Range<UInt32>] = [:]
        var prologs: [String: [PrologStep]] = [:]
        for (function, start) in starts {
            if let entry = entries[start] {
                functions[function] = start..<entry.end
                prologs[function] = Self.prolog(unwindInfo: entry.unwind, read8: { mapped[Int($0)] })
            } else {
                functions[function] = start..<(sortedStarts.first { $0 > start } ?? start + 1)
                prologs[function] = []
            }
        }
        image = ForgedImage(bytes: mapped, sizeOfImage: sizeOfImage, timeDateStamp: u32(pe + 8), checkSum: u32(optional + 64),
                            exceptionTableRVA: pdataRVA, exceptionTableSize: pdataSize, functions: functions,
                            entryPointRVA: u32(optional + 16))
        self.prologs = prologs
    }

    /// The prolog UNWIND_INFO at `rva` describes, first instruction first: its codes are stored
    /// last instruction first, some taking one or two extra slots for their operand. Chained
    /// info (flag 4) ends with its parent's RUNTIME_FUNCTION, whose prolog ran first.
    static func prolog(unwindInfo rva: UInt32, read8: (UInt32) -> UInt8, depth: Int = 0) -> [PrologStep] {
        precondition(depth < 8, "forge: chained unwind info deeper than 8")
        let count = UInt32(read8(rva + 2))
        var parent: [PrologStep] = []
        if read8(rva) >> 3 & 4 != 0 {
            let chained = rva + 4 + 2 * ((count + 1) & ~1) + 8  // the parent's UnwindData
            let parentInfo = (0..<4).reduce(UInt32(0)) { $0 | UInt32(read8(chained + $1)) << (8 * $1) }
            parent = prolog(unwindInfo: parentInfo, read8: read8, depth: depth + 1)
        }
        let frame = read8(rva + 3)
        func slot(_ index: UInt32) -> UInt32 { UInt32(read8(rva + 4 + 2 * index)) | UInt32(read8(rva + 5 + 2 * index)) << 8 }
        var steps: [PrologStep] = []
        var index: UInt32 = 0
        while index < count {
            let code = slot(index)
            let operation = code >> 8 & 0xF, info = UInt8(code >> 12)
            switch operation {
            case 0: steps.append(.pushNonvolatile(register: info)); index += 1
            case 1 where info == 0: steps.append(.allocate(bytes: slot(index + 1) * 8)); index += 2
            case 1: steps.append(.allocate(bytes: slot(index + 1) | slot(index + 2) << 16)); index += 3
            case 2: steps.append(.allocate(bytes: UInt32(info) * 8 + 8)); index += 1
            case 3: steps.append(.setFramePointer(register: frame & 0xF, offset: frame >> 4)); index += 1
            case 4: steps.append(.saveNonvolatile(register: info, offset: slot(index + 1) * 8)); index += 2
            case 5: steps.append(.saveNonvolatile(register: info, offset: slot(index + 1) | slot(index + 2) << 16)); index += 3
            case 8: steps.append(.saveXMM128(register: info, offset: slot(index + 1) * 16)); index += 2
            case 9: steps.append(.saveXMM128(register: info, offset: slot(index + 1) | slot(index + 2) << 16)); index += 3
            case 10: steps.append(.pushMachineFrame(errorCode: info == 1)); index += 1
            default: preconditionFailure("forge: unwind operation \(operation) in a compiled image")
            }
        }
        return parent + steps.reversed()
    }
}
