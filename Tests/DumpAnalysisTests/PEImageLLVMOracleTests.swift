@testable import DumpAnalysis
@testable import DumpForge
import DumpFormat
import DumpMemory
import Foundation
import Testing
import TestSupport

// Our PE reader and UNWIND_INFO decoder, and the forge's machine code, checked against LLVM's
// COFF tools, which share no code with either: llvm-readobj decodes each forged image's
// headers, sections, exports, .pdata and every UNWIND_INFO; llvm-objdump disassembles its
// .text, so the prolog each function's unwind codes describe, the epilogs our unwinder
// recognises and the forged stacks' return sites are read by a real x64 decoder.

@Suite struct PEImageLLVMOracleTests {
    @Test func readobjDecodesWhatOurReaderDecodes() throws {
        guard let tools = Self.llvmTools() else { return }
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // The forged images, and those a real compiler, assembler and linker built
        // (Tests/Fixtures/compiled), ccchained.sys with chained unwind info among them.
        for image in try OracleImage.all(in: folder) + ["ccdriver.sys", "ccchained.sys", "ccsymbols.sys"].map(OracleImage.compiled) {
            let dump = ReadobjBlock.parse(try Self.run(tools.readobj, ["--file-headers", "--sections", "--coff-exports", "--coff-debug-directory", "--unwind", image.file]))
            try Self.compareHeaders(image, dump)
            // llvm-readobj leaves CheckSum out of the optional header it prints; objdump -p has it.
            let privateHeaders = try Self.run(tools.objdump, ["-p", image.file]).split(separator: "\n")
            let checkSum = try #require(privateHeaders.first { $0.hasPrefix("CheckSum ") }?.split(separator: " ").last,
                                        "\(image.name): llvm-objdump -p prints no CheckSum")
            agree(image.pe.checkSum, UInt32(checkSum, radix: 16), "\(image.name): CheckSum")
            try Self.compareSections(image, dump)
            try Self.compareExports(image, dump)
            try Self.compareUnwindInformation(image, dump)
            try Self.compareDebugDirectory(image, dump)
        }
    }

    @Test func objdumpDecodesTheCodeTheUnwindCodesDescribe() throws {
        guard let tools = Self.llvmTools() else { return }
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for image in try OracleImage.all(in: folder) {
            let listing = Listing(try Self.run(tools.objdump, ["-d", "-M", "intel", "--print-imm-hex", image.file]), imageBase: image.base)
            let table = try #require(try image.pe.exceptionTable(), "\(image.name): our reader finds no exception directory")
            for index in 0..<table.count {
                let function = try table.entry(index, in: image.memory)
                let chain = try UnwindInfo.chain(for: function, imageBase: image.base, in: image.memory)
                try Self.compareProlog(image, function, chain[0], listing)
                try Self.compareEpilog(image, function, chain, listing)
            }
            for site in OracleImage.returnSites where site.module == image.name {
                try Self.checkReturnSite(image, site, listing)
            }
        }
    }

    // MARK: - Tools

    /// llvm-readobj and llvm-objdump, or nil when either is missing: a failure under CI, where
    /// scripts/setup installed them, and a skip elsewhere.
    private static func llvmTools() -> (readobj: String, objdump: String)? {
        let readobj = Tools.find("llvm-readobj"), objdump = Tools.find("llvm-objdump")
        if let readobj, let objdump { return (readobj, objdump) }
        let missing = readobj == nil ? "llvm-readobj" : "llvm-objdump"
        if Tools.isCI {
            Issue.record("\(missing) is missing although scripts/setup installs it (Debian's llvm package)")
        } else {
            print("note: \(missing) is absent; skipping the LLVM oracle checks")
        }
        return nil
    }

    private static func run(_ tool: String, _ arguments: [String]) throws -> String {
        let (status, output) = try Tools.run(tool, arguments)
        try #require(status == 0, "\(tool) \(arguments.joined(separator: " ")) exited with status \(status)")
        return String(decoding: output, as: UTF8.self)
    }

    // MARK: - llvm-readobj

    private static func compareHeaders(_ image: OracleImage, _ dump: ReadobjBlock) throws {
        let fileHeader = try dump.child("ImageFileHeader"), optional = try dump.child("ImageOptionalHeader")
        agree(0x8664, try fileHeader.number("Machine"), "\(image.name): Machine (our reader accepts AMD64 only)")
        let characteristics = try #require(llvmNumber(try fileHeader.child("Characteristics").header))
        #expect(characteristics & 0x2 != 0, "\(image.name): LLVM reads Characteristics 0x\(hex(characteristics)) without IMAGE_FILE_EXECUTABLE_IMAGE, yet our reader takes the file for an image")
        agree(UInt64(image.pe.timeDateStamp), try fileHeader.number("TimeDateStamp"), "\(image.name): TimeDateStamp")
        agree(UInt64(image.pe.sizeOfImage), try optional.number("SizeOfImage"), "\(image.name): SizeOfImage")
        agree(image.base, try optional.number("ImageBase"), "\(image.name): ImageBase (where the test maps the image for our reader)")
        let directories = try optional.child("DataDirectory")
        agree(UInt64(image.pe.exportDirectory?.virtualAddress ?? 0), try directories.number("ExportTableRVA"), "\(image.name): export directory RVA")
        agree(UInt64(image.pe.exportDirectory?.size ?? 0), try directories.number("ExportTableSize"), "\(image.name): export directory size")
        agree(UInt64(image.pe.exceptionDirectory?.virtualAddress ?? 0), try directories.number("ExceptionTableRVA"), "\(image.name): exception directory RVA")
        agree(UInt64(image.pe.exceptionDirectory?.size ?? 0), try directories.number("ExceptionTableSize"), "\(image.name): exception directory size")
    }

    private static func compareSections(_ image: OracleImage, _ dump: ReadobjBlock) throws {
        let theirs = try dump.child("Sections").children("Section")
        agree(image.pe.sections.count, theirs.count, "\(image.name): number of sections")
        for (ours, section) in zip(image.pe.sections, theirs) {
            // "Name: .text (2E 74 65 78 74 00 00 00)": the raw 8 bytes in parentheses are exact.
            let raw = try section.field("Name").split(separator: "(").last?.dropLast().split(separator: " ").compactMap { UInt8($0, radix: 16) }
            let name = String(decoding: (raw ?? []).prefix { $0 != 0 }, as: UTF8.self)
            agree(ours.name, name, "\(image.name): name of section \(try section.field("Number"))")
            agree(UInt64(ours.virtualAddress), try section.number("VirtualAddress"), "\(image.name): \(name) VirtualAddress")
            agree(UInt64(ours.virtualSize), try section.number("VirtualSize"), "\(image.name): \(name) VirtualSize")
            agree(UInt64(ours.characteristics), llvmNumber(try section.child("Characteristics").header), "\(image.name): \(name) Characteristics")
        }
    }

    private static func compareExports(_ image: OracleImage, _ dump: ReadobjBlock) throws {
        // LLVM lists the export address table by ordinal; our reader sorts by RVA, then name.
        let theirs = try dump.children("Export").map { PEImage.Export(name: try $0.field("Name"), rva: UInt32(try $0.number("RVA"))) }
            .sorted { $0.rva != $1.rva ? $0.rva < $1.rva : $0.name < $1.name }
        let ours = try image.pe.exports(in: image.memory)
        agree(ours.map { "\($0.name) 0x\(hex($0.rva))" }, theirs.map { "\($0.name) 0x\(hex($0.rva))" }, "\(image.name): exports")
    }

    private static func compareUnwindInformation(_ image: OracleImage, _ dump: ReadobjBlock) throws {
        let table = try #require(try image.pe.exceptionTable(), "\(image.name): our reader finds no exception directory")
        let theirs = try dump.child("UnwindInformation").children("RuntimeFunction")
        agree(table.count, theirs.count, "\(image.name): number of RUNTIME_FUNCTIONs")
        let all = try theirs.map(image.runtimeFunction)
        for (index, entry) in theirs.enumerated() where index < table.count {
            let ours = try table.entry(index, in: image.memory)
            let llvm = all[index]
            let label = image.label(ours.beginAddress)
            agree(describe(ours), describe(llvm), "\(image.name): RUNTIME_FUNCTION \(index)")
            // The lookup the unwinder uses finds, from this entry's first and last byte, the
            // innermost entry covering it: this one, unless a chained fragment lies inside it
            // (LLVM's assembler gives the parent the fragment's range too).
            for rva in [ours.beginAddress, ours.endAddress - 1] {
                let innermost = all.filter { $0.beginAddress <= rva && rva < $0.endAddress }.max { $0.beginAddress < $1.beginAddress }
                agree(try image.pe.runtimeFunction(containing: rva, in: image.memory).map(describe), innermost.map(describe),
                      "\(label): our lookup of RVA 0x\(hex(rva))")
            }

            let info = try UnwindInfo(reading: image.memory, imageBase: image.base, rva: ours.unwindData)
            let unwind = try entry.child("UnwindInfo")
            agree(UInt64(info.version), try unwind.number("Version"), "\(label): UNWIND_INFO Version")
            agree(UInt64(info.flags), llvmNumber(try unwind.child("Flags").header), "\(label): UNWIND_INFO Flags")
            agree(UInt64(info.sizeOfProlog), try unwind.number("PrologSize"), "\(label): SizeOfProlog")
            agree(UInt64(info.countOfCodes), try unwind.number("UnwindCodeCount"), "\(label): CountOfCodes")
            // With no frame register LLVM prints "-" for both halves of byte 3.
            let frameRegister = try unwind.field("FrameRegister")
            agree(UInt64(info.frameRegister), llvmNumber(frameRegister == "-" ? "0" : frameRegister), "\(label): FrameRegister")
            if info.frameRegister != 0 {
                agree(UInt64(info.frameOffset), try unwind.number("FrameOffset"), "\(label): FrameOffset (scaled by 16)")
            }
            let codes = try unwind.child("UnwindCodes").lines
            agree(info.codes.count, codes.count, "\(label): number of unwind codes")
            for (code, line) in zip(info.codes, codes) {
                agree(CodeLine(ours: code, in: info), CodeLine(llvm: line), "\(label): unwind code")
            }
            let chained = unwind.children("Chained").first
            agree(info.chainedFunction.map(describe), try chained.map { describe(try image.runtimeFunction($0)) },
                  "\(label): the parent RUNTIME_FUNCTION of a chained UNWIND_INFO")
        }
    }

    /// The debug directory's entry types (CodeView 2, REPRO 16), and the PDB the CodeView
    /// record names, which LLVM finds through the entry's PointerToRawData in the file.
    private static func compareDebugDirectory(_ image: OracleImage, _ dump: ReadobjBlock) throws {
        let theirs = dump.children("DebugDirectory").first?.children("DebugEntry") ?? []
        let types = try theirs.map { try $0.number("Type") }  // "CodeView (0x2)", "Repro (0x10)"
        agree(try image.pe.debugEntryTypes(in: image.memory).map(UInt64.init), types, "\(image.name): debug entry types")
        if types.contains(2) {
            let pdb = try theirs.first.map { try $0.child("PDBInfo").field("PDBFileName") }
            agree(pdb, String(image.name.prefix { $0 != "." }) + ".pdb", "\(image.name): the PDB the CodeView record names")
        }
    }

    // MARK: - llvm-objdump

    /// Walks the prolog as LLVM decodes it alongside our unwind codes in execution order (the
    /// stored order reversed): each code names the instruction it describes, and its
    /// CodeOffset is the offset just past that instruction.
    private static func compareProlog(_ image: OracleImage, _ function: RuntimeFunction, _ info: UnwindInfo, _ listing: Listing) throws {
        let label = image.label(function.beginAddress)
        var at = function.beginAddress
        for code in info.codes.reversed() {
            guard let expected = intel(code, info) else {
                // UWOP_PUSH_MACHFRAME: the CPU pushed the frame before the first instruction.
                #expect(at == function.beginAddress, "\(label): PUSH_MACHFRAME follows instructions (at +0x\(hex(at - function.beginAddress)))")
                continue
            }
            guard let instruction = listing[at] else {
                Issue.record("\(label)+0x\(hex(at - function.beginAddress)): LLVM decodes no instruction there; our \(CodeLine(ours: code, in: info)) expects `\(expected)`")
                return
            }
            agree(expected, instruction.text, "\(label)+0x\(hex(at - function.beginAddress)): the instruction our \(CodeLine(ours: code, in: info)) describes")
            agree(UInt32(code.codeOffset), instruction.end - function.beginAddress, "\(label): CodeOffset of our \(CodeLine(ours: code, in: info)) vs the end of LLVM's `\(instruction.text)`")
            at = instruction.end
        }
        agree(UInt32(info.sizeOfProlog), at - function.beginAddress, "\(label): SizeOfProlog vs the end of the last prolog instruction LLVM decodes")
    }

    /// The epilog at the end of each function must undo exactly what the chain's codes say the
    /// prologs did, and our unwinder must take for an epilog exactly the instructions from which
    /// LLVM decodes the epilog shape it looks for.
    private static func compareEpilog(_ image: OracleImage, _ function: RuntimeFunction, _ chain: [UnwindInfo], _ listing: Listing) throws {
        let label = image.label(function.beginAddress)
        let body = listing.instructions(in: function.beginAddress + UInt32(chain[0].sizeOfProlog)..<function.endAddress)
        let epilog = body[((body.lastIndex { $0.text == "nop" }).map { $0 + 1 } ?? body.startIndex)...]
        agree(expectedEpilog(chain).joined(separator: "; "), epilog.map(\.text).joined(separator: "; "), "\(label): the epilog after the nop filler")

        let stackTop = OracleImage.stackTop
        for index in body.indices {
            let instruction = body[index]
            let state = RegisterState(gpr: [UInt64](repeating: stackTop, count: 16), rip: image.base + UInt64(instruction.rva))
            let unwound = try unwindFrame(state, function: function, imageBase: image.base, space: image.memory)
            // The unwinder looks for epilogs only in functions with codes: without any, `ret`
            // and the codes both just pop the return address.
            let expected = !chain[0].codes.isEmpty && isEpilog(body[index...])
            agree(unwound.simulatedEpilog, expected,
                  "\(label)+0x\(hex(instruction.rva - function.beginAddress)): is RIP at `\(instruction.text)` inside an epilog? (ours: our unwinder simulates one; LLVM's: the code from there decodes as [add rsp, n], pop..., ret)")
        }
    }

    /// A forged stack's RIP must sit on an instruction boundary past the prolog and outside any
    /// epilog: StackForge lays each frame out as if the whole prolog ran, so the unwinder must
    /// undo all of its codes there.
    private static func checkReturnSite(_ image: OracleImage, _ site: CodeLocation, _ listing: Listing) throws {
        let place = "\(site.module)!\(site.function)+0x\(hex(site.offset))"
        let begin = try #require(image.forged.functions[site.function], "\(place): no such function in the forged image").lowerBound
        let rva = begin + site.offset
        guard let index = listing.index(rva) else {
            let inside = listing.instructions(in: rva - min(rva, 15)..<rva).last { $0.end > rva }
            Issue.record("\(place): LLVM decodes no instruction starting there (it is inside `\(inside?.text ?? "nothing")`)")
            return
        }
        let function = try #require(try image.pe.runtimeFunction(containing: rva, in: image.memory), "\(place): our reader finds no RUNTIME_FUNCTION")
        let info = try UnwindInfo(reading: image.memory, imageBase: image.base, rva: function.unwindData)
        #expect(site.offset >= UInt32(info.sizeOfProlog), "\(place): inside the prolog (our SizeOfProlog 0x\(hex(info.sizeOfProlog))), where LLVM decodes `\(listing.all[index].text)`")
        #expect(!isEpilog(listing.all[index...]), "\(place): LLVM decodes an epilog there (`\(listing.all[index].text)`), where the forged stack expects the prolog's codes to apply")
    }

    /// The epilog shape x64 code is held to and our unwinder recognises: an optional
    /// `add rsp, n`, any `pop`s, then `ret`.
    private static func isEpilog(_ instructions: ArraySlice<Instruction>) -> Bool {
        var rest = instructions
        if rest.first?.text.hasPrefix("add rsp, ") == true { rest = rest.dropFirst() }
        while rest.first?.mnemonic == "pop" { rest = rest.dropFirst() }
        return rest.first?.mnemonic == "ret"
    }

    /// The epilog that undoes `chain` (innermost UNWIND_INFO first, codes in stored order): an
    /// `add rsp` for the allocations between pushes (adjacent ones folded, as a compiler does),
    /// a `pop` per push, then `ret`; or, for a machine frame, `iretq` after dropping the error code.
    private static func expectedEpilog(_ chain: [UnwindInfo]) -> [String] {
        var lines: [String] = []
        var allocation: UInt32 = 0
        func release() {
            if allocation > 0 { lines.append("add rsp, 0x\(hex(allocation))") }
            allocation = 0
        }
        for code in chain.flatMap(\.codes) {
            switch code.operation {
            case .allocateLarge(let bytes), .allocateSmall(let bytes): allocation += bytes
            case .pushNonvolatile(let register): release(); lines.append("pop \(llvmRegisterNames[Int(register)])")
            case .pushMachineFrame(let errorCode):
                allocation += errorCode ? 8 : 0
                release()
                return lines + ["iretq"]
            case .setFramePointer, .saveNonvolatile, .saveXMM128, .epilog: continue
            }
        }
        release()
        return lines + ["ret"]
    }

    /// The instruction an unwind code describes, as LLVM prints it in Intel syntax with hex
    /// immediates; nil for a machine frame, which no instruction pushes.
    private static func intel(_ code: UnwindCode, _ info: UnwindInfo) -> String? {
        func stack(_ offset: UInt64) -> String { offset == 0 ? "[rsp]" : "[rsp + 0x\(hex(offset))]" }
        switch code.operation {
        case .pushNonvolatile(let register): return "push \(llvmRegisterNames[Int(register)])"
        case .allocateLarge(let bytes), .allocateSmall(let bytes): return "sub rsp, 0x\(hex(bytes))"
        case .setFramePointer: return "lea \(llvmRegisterNames[Int(info.frameRegister)]), \(stack(info.frameOffsetBytes))"
        case .saveNonvolatile(let register, let offset): return "mov qword ptr \(stack(UInt64(offset))), \(llvmRegisterNames[Int(register)])"
        case .saveXMM128(let register, let offset): return "movaps xmmword ptr \(stack(UInt64(offset))), xmm\(register)"
        case .pushMachineFrame, .epilog: return nil
        }
    }
}

/// x64 register numbers (as ModRM and the unwind codes number them) and their names.

/// Expects our value to equal LLVM's; the message says what was compared and both values.
private func agree<T: Equatable>(_ ours: T, _ llvm: T, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(ours == llvm, "\(what): ours \(show(ours)), LLVM's \(show(llvm))", sourceLocation: sourceLocation)
}

private func show(_ value: Any) -> String {
    if let number = value as? any BinaryInteger { return "0x" + String(number, radix: 16, uppercase: true) }
    if let text = value as? String { return "`\(text)`" }
    return String(describing: value)
}

private func describe(_ function: RuntimeFunction) -> String {
    "[0x\(hex(function.beginAddress)), 0x\(hex(function.endAddress))) UNWIND_INFO 0x\(hex(function.unwindData))"
}

// MARK: - The forged images

/// A forged image as LLVM reads it (a file, each section at its PointerToRawData) and as our
/// reader does (mapped at its base, each section at its RVA), with a zeroed stack to unwind on.
private struct OracleImage {
    var name: String
    var forged: ForgedImage
    var base: UInt64
    var file: String
    var memory: FlatMemory
    var pe: PEImage

    static let stackTop: UInt64 = 0xFFFF_C000_0100_0000
    /// Reaches past the largest frame forged here (OrFar's 2 MiB) and any save above it.
    static let stack = [UInt8](repeating: 0, count: 0x40_0000)

    /// Every kind of prolog step the forge writes, with both encodings of each where there are two.
    static let everyStep: [ForgedFunction] = {
        let rbx: UInt8 = 3, rbp: UInt8 = 5, rsi: UInt8 = 6, rdi: UInt8 = 7, r13: UInt8 = 13
        return [
            // Every nonvolatile pushed (R12-R15 take a REX.B prefix), then 128 bytes: the largest
            // UWOP_ALLOC_SMALL, though its `sub rsp` already needs an imm32.
            ForgedFunction(name: "OrDispatch", size: 0x60, prolog: [rbp, rbx, rsi, rdi, 12, 13, 14, 15].map { .pushNonvolatile(register: $0) }
                               + [.allocate(bytes: 0x80)]),
            // Chained fragments, two deep: each UNWIND_INFO ends with its parent's RUNTIME_FUNCTION.
            ForgedFunction(name: "OrDispatch$fin$0", exported: false, size: 0x40,
                           prolog: [.allocate(bytes: 0x20), .saveNonvolatile(register: rbx, offset: 0x18)], chainedTo: "OrDispatch"),
            ForgedFunction(name: "OrDispatch$fin$1", exported: false, size: 0x40, prolog: [.pushNonvolatile(register: rsi)], chainedTo: "OrDispatch$fin$0"),
            // UWOP_ALLOC_LARGE with size/8 in one slot (its largest), and the largest short SAVE_NONVOL.
            ForgedFunction(name: "OrScaled", exported: false, size: 0x40,
                           prolog: [.allocate(bytes: 0x7_FFF8), .saveNonvolatile(register: rbx, offset: 0x7_FFF0)]),
            // UWOP_ALLOC_LARGE unscaled in two slots, the far saves (SAVE_XMM128_FAR holds the
            // offset unscaled), and the largest short SAVE_XMM128.
            ForgedFunction(name: "OrFar", size: 0x50,
                           prolog: [.allocate(bytes: 0x20_0000), .saveNonvolatile(register: rsi, offset: 0x8_0000),
                                    .saveXMM128(register: 8, offset: 0x10_0000), .saveXMM128(register: 15, offset: 0xF_FFF0)]),
            // Frame pointers: RBP at RSP itself (FrameOffset 0), R13 at RSP + 240 (the largest).
            ForgedFunction(name: "OrFramed", size: 0x40,
                           prolog: [.pushNonvolatile(register: rbp), .allocate(bytes: 0x40), .setFramePointer(register: rbp, offset: 0)]),
            ForgedFunction(name: "OrFramedHigh", exported: false, size: 0x40,
                           prolog: [.pushNonvolatile(register: r13), .allocate(bytes: 0x158), .setFramePointer(register: r13, offset: 15),
                                    .saveNonvolatile(register: rdi, offset: 0x168)]),
            // Trap entries: a machine frame with an error code, and one without, whose stub
            // allocates the missing slot itself.
            ForgedFunction(name: "OrTrap", size: 0x60,
                           prolog: [.pushMachineFrame(errorCode: true), .pushNonvolatile(register: rbp), .allocate(bytes: 0x158),
                                    .setFramePointer(register: rbp, offset: 8)]),
            ForgedFunction(name: "OrInterrupt", exported: false, size: 0x60,
                           prolog: [.pushMachineFrame(errorCode: false), .allocate(bytes: 8), .pushNonvolatile(register: rbp),
                                    .allocate(bytes: 0x158), .saveXMM128(register: 6, offset: 0x40)]),
            // No prolog at all; export names sort by raw bytes: capitals, '_', lower case.
            ForgedFunction(name: "_OrGuard", size: 0x10),
            ForgedFunction(name: "orleaf", size: 0x08),
        ]
    }()

    /// The crash scenarios, each with its extra frame: their modules are the images the
    /// unwinder tests walk, and their stacks hold every forged return site.
    static let scenarios: [DumpDescription] = [
        .standard(kind: .triage), .displayDriverFault(kind: .triage, extraFrame: true), .timerListCorruption(kind: .triage, extraFrame: true),
        .spinLockHang(kind: .triage, extraFrame: true), .listEntryCorruption(kind: .triage, extraFrame: true),
        .networkDriverFault(kind: .triage, extraFrame: true),
    ]

    static let returnSites: [CodeLocation] = {
        var sites: [CodeLocation] = []
        for description in scenarios {
            let stacks = description.processes.flatMap { $0.threads.map(\.stack) } + description.idleStacks.values
            for site in stacks.joined() where !sites.contains(site) { sites.append(site) }
        }
        return sites
    }()

    /// oracle.sys (every prolog step) and each scenario module, written to `folder`.
    static func all(in folder: String) throws -> [OracleImage] {
        var modules = [ModuleDescription(name: "oracle.sys", timeDateStamp: 0x6512_ABCD, checkSum: 0x0001_F00D, functions: everyStep)]
        for module in scenarios.flatMap(\.modules) where !modules.contains(where: { $0.name == module.name }) {
            modules.append(module)
        }
        return try modules.enumerated().map { index, module in
            let base = 0xFFFF_F800_0000_0000 + UInt64(index) << 24
            let forged = forgePEImage(name: module.name, timeDateStamp: module.timeDateStamp, checkSum: module.checkSum,
                                      functions: module.functions, reproducible: module.reproducible, preferredBase: base)
            let file = folder + "/" + module.name
            try Data(fileLayout(forged.bytes)).write(to: URL(fileURLWithPath: file))
            let memory = FlatMemory()
            memory.map(base, forged.bytes)
            memory.map(stackTop - 0x1000, stack)
            return OracleImage(name: module.name, forged: forged, base: base, file: file, memory: memory,
                               pe: try PEImage(reading: memory, base: base))
        }
    }

    /// An image clang and lld-link built (Tests/Fixtures/compiled), mapped at its own ImageBase.
    static func compiled(_ name: String) throws -> OracleImage {
        let file = Fixtures.compiled(name)
        let compiled = CompiledImage(file: try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))).image
        let imageBase = Int(PEBytes.u32(compiled.bytes, 0x3C)) + 24 + 24  // OptionalHeader.ImageBase
        let base = UInt64(PEBytes.u32(compiled.bytes, imageBase)) | UInt64(PEBytes.u32(compiled.bytes, imageBase + 4)) << 32
        let memory = FlatMemory()
        memory.map(base, compiled.bytes)
        return OracleImage(name: name, forged: compiled, base: base, file: file, memory: memory, pe: try PEImage(reading: memory, base: base))
    }

    /// The image as its file holds it. The forge writes the mapped layout (each section at its
    /// RVA) that a loader makes of the file; LLVM reads files, where the headers come first and
    /// each section's raw data sits at its PointerToRawData, so the test undoes the mapping.
    private static func fileLayout(_ mapped: [UInt8]) -> [UInt8] {
        let pe = Int(PEBytes.u32(mapped, 0x3C))
        let optional = pe + 24
        let table = optional + Int(PEBytes.u16(mapped, pe + 20))
        var file = Array(mapped[0..<Int(PEBytes.u32(mapped, optional + 60))])  // SizeOfHeaders
        for index in 0..<Int(PEBytes.u16(mapped, pe + 6)) {
            let header = table + 40 * index
            let rva = Int(PEBytes.u32(mapped, header + 12))
            let rawSize = Int(PEBytes.u32(mapped, header + 16)), rawPointer = Int(PEBytes.u32(mapped, header + 20))
            if file.count < rawPointer + rawSize { file += [UInt8](repeating: 0, count: rawPointer + rawSize - file.count) }
            file.replaceSubrange(rawPointer..<rawPointer + rawSize, with: mapped[rva..<rva + rawSize])
        }
        return file
    }

    /// "module!function" for the function starting at `rva`, named as the forge named it.
    func label(_ rva: UInt32) -> String {
        "\(name)!" + (forged.functions.first { $0.value.lowerBound == rva }?.key ?? "0x\(hex(rva))")
    }

    /// A RUNTIME_FUNCTION as llvm-readobj prints it for an image: the three fields as VAs.
    func runtimeFunction(_ block: ReadobjBlock) throws -> RuntimeFunction {
        func rva(_ key: String) throws -> UInt32 { UInt32(truncatingIfNeeded: try block.number(key) &- base) }
        return RuntimeFunction(beginAddress: try rva("StartAddress"), endAddress: try rva("EndAddress"), unwindData: try rva("UnwindInfoAddress"))
    }
}
