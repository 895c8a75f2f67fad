import DumpAnalysis
import DumpFormat
import Testing

// What llvm-readobj and llvm-objdump print, parsed for PEImageLLVMOracleTests.

/// Register names as LLVM prints them, in x64 register-number order.
let llvmRegisterNames = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]

// MARK: - LLVM's output

/// llvm-readobj's output as a tree: "Name {" and "Name [ (0x22)" open a block (the text after
/// the bracket is its header), "}" and "]" close it, and any other line belongs to the
/// innermost open block: "Key: value" fields, flag names, unwind codes.
struct ReadobjBlock {
    var name = ""
    var header = ""
    var lines: [String] = []
    var children: [ReadobjBlock] = []

    static func parse(_ text: String) -> ReadobjBlock {
        var open = [ReadobjBlock()]
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line == "}" || line == "]" {
                guard open.count > 1 else { continue }
                let block = open.removeLast()
                open[open.count - 1].children.append(block)
            } else if line.hasSuffix(" {") {
                open.append(ReadobjBlock(name: String(line.dropLast(2))))
            } else if !line.contains(": "), let bracket = line.range(of: " [") {
                open.append(ReadobjBlock(name: String(line[..<bracket.lowerBound]),
                                         header: line[bracket.upperBound...].trimmingCharacters(in: .whitespaces)))
            } else {
                open[open.count - 1].lines.append(line)
            }
        }
        return open[0]
    }

    func children(_ name: String) -> [ReadobjBlock] { children.filter { $0.name == name } }

    func child(_ name: String) throws -> ReadobjBlock {
        try #require(children(name).first, "llvm-readobj printed no \(name) block in \(self.name.isEmpty ? "its output" : self.name)")
    }

    func field(_ key: String) throws -> String {
        let line = try #require(lines.first { $0.hasPrefix(key + ": ") }, "llvm-readobj printed no \(key) in \(name)")
        return String(line.dropFirst(key.count + 2))
    }

    func number(_ key: String) throws -> UInt64 {
        let text = try field(key)
        return try #require(llvmNumber(text), "llvm-readobj's \(name).\(key) is not a number: \(text)")
    }
}

/// A number as LLVM prints it: "0x1F" or "40", or a text ending with the value in hex in
/// parentheses ("RBP (0x5)", "2017-11-26 21:03:57 (0x5A1B2C3D)", "(0xFFFFF80000001000)").
func llvmNumber(_ text: String) -> UInt64? {
    var text = Substring(text)
    if text.hasSuffix(")"), let open = text.lastIndex(of: "(") { text = text[text.index(after: open)..<text.index(before: text.endIndex)] }
    return text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
}

/// An unwind code in llvm-readobj's terms ("0x09: SAVE_NONVOL reg=RBX, offset=0x50"): its
/// CodeOffset, the op's name and the operands as numbers (registers by number, errcode 0 or 1).
/// LLVM prints sizes in decimal and offsets in bytes, whatever scaling the slot uses.
struct CodeLine: Equatable, CustomStringConvertible {
    var codeOffset: UInt64?
    var operation: String
    var operands: [String: UInt64]

    /// Written the way llvm-readobj writes it, so a mismatch reads like its output.
    var description: String {
        let shown = ["reg", "offset", "size", "errcode"].compactMap { key in
            operands[key].map { value in
                switch key {
                case "reg": "reg=" + (operation.contains("XMM") ? "XMM\(value)" : value < 16 ? llvmRegisterNames[Int(value)].uppercased() : "\(value)")
                case "offset": "offset=0x\(String(value, radix: 16, uppercase: true))"
                case "errcode": "errcode=" + (value == 1 ? "yes" : "no")
                default: "\(key)=\(value)"
                }
            }
        }
        let offset = codeOffset.map { String($0, radix: 16, uppercase: true) } ?? "?"
        return "0x\(offset.count < 2 ? "0" : "")\(offset): \(operation) \(shown.joined(separator: ", "))"
    }

    init(llvm line: String) {
        let parts = line.split(separator: " ", maxSplits: 2)
        codeOffset = parts.first.flatMap { llvmNumber(String($0.dropLast())) }
        operation = parts.count > 1 ? String(parts[1]) : line
        operands = [:]
        for pair in (parts.count > 2 ? parts[2] : "").split(separator: ", ") {
            let halves = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard halves.count == 2 else { continue }
            operands[halves[0]] = Self.operand(halves[0], halves[1])
        }
    }

    private static func operand(_ key: String, _ value: String) -> UInt64? {
        switch key {
        case "reg": value.hasPrefix("XMM") ? UInt64(value.dropFirst(3)) : llvmRegisterNames.firstIndex(of: value.lowercased()).map(UInt64.init)
        case "errcode": value == "yes" ? 1 : 0
        default: llvmNumber(value)
        }
    }

    init(ours code: UnwindCode, in info: UnwindInfo) {
        codeOffset = UInt64(code.codeOffset)
        let names: [UInt8: String] = [0: "PUSH_NONVOL", 1: "ALLOC_LARGE", 2: "ALLOC_SMALL", 3: "SET_FPREG", 4: "SAVE_NONVOL",
                                      5: "SAVE_NONVOL_FAR", 8: "SAVE_XMM128", 9: "SAVE_XMM128_FAR", 10: "PUSH_MACHFRAME"]
        operation = names[code.op] ?? "op \(code.op)"
        switch code.operation {
        case .pushNonvolatile(let register): operands = ["reg": UInt64(register)]
        case .allocateLarge(let bytes), .allocateSmall(let bytes): operands = ["size": UInt64(bytes)]
        case .setFramePointer: operands = ["reg": UInt64(info.frameRegister), "offset": info.frameOffsetBytes]
        case .saveNonvolatile(let register, let offset), .saveXMM128(let register, let offset):
            operands = ["reg": UInt64(register), "offset": UInt64(offset)]
        case .pushMachineFrame(let errorCode): operands = ["errcode": errorCode ? 1 : 0]
        case .epilog: operands = [:]  // version 2 only; never forged
        }
    }
}

/// One line of `llvm-objdump -d -M intel`: "fffff80000001002: 48 83 ec 28  \tsub\trsp, 0x28".
struct Instruction {
    var rva: UInt32
    var length: UInt32
    /// Mnemonic and operands, one space apart: "sub rsp, 0x28".
    var text: String
    var mnemonic: Substring { text.prefix { $0 != " " } }
    var end: UInt32 { rva + length }
}

/// A disassembly, in address order.
struct Listing {
    let all: [Instruction]

    init(_ output: String, imageBase: UInt64) {
        var all: [Instruction] = []
        for line in output.split(separator: "\n") {
            // Address, raw bytes, mnemonic and operands are tab separated; labels and headers
            // ("fffff80000001000 <OrDispatch>:") have no tab, or no hex address before the colon.
            let columns = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard columns.count >= 2, let colon = columns[0].firstIndex(of: ":"),
                  let address = UInt64(columns[0][..<colon], radix: 16) else { continue }
            let bytes = columns[0][colon...].dropFirst().split(separator: " ")
            all.append(Instruction(rva: UInt32(truncatingIfNeeded: address &- imageBase), length: UInt32(bytes.count),
                                   text: columns[1...].joined(separator: " ").trimmingCharacters(in: .whitespaces)))
        }
        self.all = all
    }

    /// The index of the instruction starting at `rva`, if one does.
    func index(_ rva: UInt32) -> Int? {
        let index = firstIndex(atOrAfter: rva)
        return index < all.count && all[index].rva == rva ? index : nil
    }

    subscript(rva: UInt32) -> Instruction? { index(rva).map { all[$0] } }

    /// The instructions starting in `range`.
    func instructions(in range: Range<UInt32>) -> ArraySlice<Instruction> {
        all[firstIndex(atOrAfter: range.lowerBound)..<firstIndex(atOrAfter: range.upperBound)]
    }

    /// Binary search: the index of the first instruction at or after `rva`.
    private func firstIndex(atOrAfter rva: UInt32) -> Int {
        var low = 0, high = all.count
        while low < high {
            let middle = (low + high) / 2
            if all[middle].rva < rva { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
