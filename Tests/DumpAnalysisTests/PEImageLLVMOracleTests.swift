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
        // The forged images, and one a real compiler and linker built (Tests/Fixtures/compiled).
        for image in try OracleImage.all(in: folder) + [OracleImage.compiled(in: folder)] {
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
        for (index, entry) in theirs.enumerated() where index < table.count {
            let ours = try table.entry(index, in: image.memory)
            let llvm = try image.runtimeFunction(entry)
            let label = image.label(ours.beginAddress)
            agree(describe(ours), describe(llvm), "\(image.name): RUNTIME_FUNCTION \(index)")
            // The lookup the unwinder uses finds this entry from its first and last byte.
            for rva in [ours.beginAddress, ours.endAddress - 1] {
                agree(try image.pe.runtimeFunction(containing: rva, in: image.memory).map(describe), describe(llvm),
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
            case .pushNonvolatile(let register): release(); lines.append("pop \(gpr[Int(register)])")
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
        case .pushNonvolatile(let register): return "push \(gpr[Int(register)])"
        case .allocateLarge(let bytes), .allocateSmall(let bytes): return "sub rsp, 0x\(hex(bytes))"
        case .setFramePointer: return "lea \(gpr[Int(info.frameRegister)]), \(stack(info.frameOffsetBytes))"
        case .saveNonvolatile(let register, let offset): return "mov qword ptr \(stack(UInt64(offset))), \(gpr[Int(register)])"
        case .saveXMM128(let register, let offset): return "movaps xmmword ptr \(stack(UInt64(offset))), xmm\(register)"
        case .pushMachineFrame, .epilog: return nil
        }
    }
}

/// x64 register numbers (as ModRM and the unwind codes number them) and their names.
private let gpr = ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]

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

    /// ccdriver.sys, which clang and lld-link built, mapped at its own ImageBase.
    static func compiled(in folder: String) throws -> OracleImage {
        let fixtures = String(#filePath.split(separator: "/").dropLast(2).joined(separator: "/"))
        let file = "/\(fixtures)/Fixtures/compiled/ccdriver.sys"
        let compiled = CompiledImage(file: try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))).image
        let imageBase = Int(PEBytes.u32(compiled.bytes, 0x3C)) + 24 + 24  // OptionalHeader.ImageBase
        let base = UInt64(PEBytes.u32(compiled.bytes, imageBase)) | UInt64(PEBytes.u32(compiled.bytes, imageBase + 4)) << 32
        let memory = FlatMemory()
        memory.map(base, compiled.bytes)
        return OracleImage(name: "ccdriver.sys", forged: compiled, base: base, file: file, memory: memory, pe: try PEImage(reading: memory, base: base))
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

// MARK: - LLVM's output

/// llvm-readobj's output as a tree: "Name {" and "Name [ (0x22)" open a block (the text after
/// the bracket is its header), "}" and "]" close it, and any other line belongs to the
/// innermost open block: "Key: value" fields, flag names, unwind codes.
private struct ReadobjBlock {
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
private func llvmNumber(_ text: String) -> UInt64? {
    var text = Substring(text)
    if text.hasSuffix(")"), let open = text.lastIndex(of: "(") { text = text[text.index(after: open)..<text.index(before: text.endIndex)] }
    return text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
}

/// An unwind code in llvm-readobj's terms ("0x09: SAVE_NONVOL reg=RBX, offset=0x50"): its
/// CodeOffset, the op's name and the operands as numbers (registers by number, errcode 0 or 1).
/// LLVM prints sizes in decimal and offsets in bytes, whatever scaling the slot uses.
private struct CodeLine: Equatable, CustomStringConvertible {
    var codeOffset: UInt64?
    var operation: String
    var operands: [String: UInt64]

    /// Written the way llvm-readobj writes it, so a mismatch reads like its output.
    var description: String {
        let shown = ["reg", "offset", "size", "errcode"].compactMap { key in
            operands[key].map { value in
                switch key {
                case "reg": "reg=" + (operation.contains("XMM") ? "XMM\(value)" : value < 16 ? gpr[Int(value)].uppercased() : "\(value)")
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
        case "reg": value.hasPrefix("XMM") ? UInt64(value.dropFirst(3)) : gpr.firstIndex(of: value.lowercased()).map(UInt64.init)
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
private struct Instruction {
    var rva: UInt32
    var length: UInt32
    /// Mnemonic and operands, one space apart: "sub rsp, 0x28".
    var text: String
    var mnemonic: Substring { text.prefix { $0 != " " } }
    var end: UInt32 { rva + length }
}

/// A disassembly, in address order.
private struct Listing {
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
