import DumpAnalysis
import DumpForge
import DumpMemory
import Foundation
import SymbolFiles
import SymbolStore
import Testing
import TestSupport

/// Analyses with a site's symbol folder (`--symbols`): frames named by the PDB, signatures and
/// buckets as without it, a damaged or mismatched file reported and ignored, and a build the
/// offset tables lack read with the kernel's own types from an ISF table.
@Suite struct SymbolDirectoryAnalysisTests {
    /// A folder in symstore's layout (name.pdb/GUIDAGE/name.pdb) holding `bytes` as ccsymbols.pdb.
    static func store(_ bytes: [UInt8], key: String) throws -> String {
        let folder = Fixtures.temporaryFolder()
        try FileManager.default.createDirectory(atPath: "\(folder)/ccsymbols.pdb/\(key)", withIntermediateDirectories: true)
        try Data(bytes).write(to: URL(fileURLWithPath: "\(folder)/ccsymbols.pdb/\(key)/ccsymbols.pdb"))
        return folder
    }

    /// A crash in ccsymbols.sys (built with its PDB by a real toolchain): the System thread on
    /// CPU 0 returns from CcsValidateRequest into CcsDispatchRequest, which the image exports as
    /// CcsEntryPoint, before it calls KeBugCheckEx.
    static func crashInCompiledDriver() throws -> (ForgedDump, returnSite: UInt32) {
        let image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.compiled("ccsymbols.sys"))))
        func u32(_ at: Int) -> Int { Int(image[at]) | Int(image[at + 1]) << 8 | Int(image[at + 2]) << 16 | Int(image[at + 3]) << 24 }
        // The first section (.text) starts with CcsDispatchRequest (its PDB procedure is at 0001:0000).
        let pe = u32(0x3C), firstSection = pe + 24 + (u32(pe + 20) & 0xFFFF)
        let code = image[u32(firstSection + 20)..<u32(firstSection + 20) + 28]
        let call = try #require(code.firstIndex(of: 0xE8), "CcsDispatchRequest calls CcsValidateRequest")
        let returnSite = UInt32(call - code.startIndex + 5)
        var description = DumpDescription.standard(kind: .bitmapKernel, gibibytes: 1, layoutSeed: 31)
        description.modules.append(ModuleDescription(name: "ccsymbols.sys", compiledImage: image))
        description.processes[0].threads[0].stack = [
            CodeLocation("ntoskrnl.exe", "KeBugCheckEx", 0x30), CodeLocation("ccsymbols.sys", "CcsEntryPoint", returnSite),
            CodeLocation("ntoskrnl.exe", "IofCallDriver", 0x55), CodeLocation("ntoskrnl.exe", "PspSystemThreadStartup", 0x55),
            CodeLocation("ntoskrnl.exe", "KiStartSystemThread", 0x28),
        ]
        description.bugCheckCode = 0xD1
        description.bugCheckParameters = [0x1001, 2, 0, .code(CodeLocation("ccsymbols.sys", "CcsEntryPoint", returnSite))]
        return (Forge.dump(description), returnSite)
    }

    @Test func framesAreNamedByThePDBAndSignaturesStayTheSame() throws {
        let (forged, returnSite) = try Self.crashInCompiledDriver()
        let pdbBytes = try PDBFileTests.bytes()
        let pdb = try PDBFile(pdbBytes, name: "ccsymbols.pdb")
        let folder = try Self.store(pdbBytes, key: pdb.identity.storeKey)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dump = try KernelDump(source: Fixtures.source(forged))
        let plain = CrashAnalyzer(parallelism: 1).analyze(dump)
        let symbols = try SymbolDirectories([folder])
        let named = CrashAnalyzer(parallelism: 1, symbols: symbols).analyze(dump)

        let offset = "+0x" + String(returnSite, radix: 16)
        #expect(plain.stack.map(\.symbol).contains("ccsymbols!CcsEntryPoint" + offset), "without symbols, the export names it: \(plain.stack.map(\.symbol))")
        #expect(named.stack.map(\.symbol).contains("ccsymbols!CcsDispatchRequest" + offset), "with them, the PDB does: \(named.stack.map(\.symbol))")
        #expect(plain.symbolFiles == nil && named.symbolFiles?.count == 1 && named.symbolFiles?.first?.hasSuffix("ccsymbols.pdb/\(pdb.identity.storeKey)/ccsymbols.pdb") == true,
                "\(named.symbolFiles ?? [])")
        #expect(named.signature == plain.signature && named.failureBucketId == plain.failureBucketId, "names are for people; buckets key on module+RVA")
        #expect(named.culprit == plain.culprit && named.culprit.name.hasPrefix("ccsymbols"))
        #expect(symbols.problems.isEmpty)

        // The static function has no export: only the PDB names it, with its size.
        let space = try dump.kernelAddressSpace()
        let modules = KernelObjects.read(from: dump, layout: KernelLayout.known(build: 19041, debuggerData: dump.debuggerData.data), space: space).modules
        let module = try #require(modules.first { $0.name == "ccsymbols.sys" })
        let validate = try #require(pdb.functions.first { $0.name == "CcsValidateRequest" })
        let inside = module.base + UInt64(validate.rva) + 4
        #expect(Symbolizer(modules: modules, space: space, symbols: symbols).locate(inside)?.text == "ccsymbols!CcsValidateRequest+0x4")
        #expect(Symbolizer(modules: modules, space: space).locate(inside)?.text == "ccsymbols+0x\(String(validate.rva + 4, radix: 16))")
    }

    /// A damaged PDB under the right key, and a good one under another build's key: both are
    /// reported in `problems`, neither names a frame, and the analysis goes on.
    @Test func damagedAndMismatchedFilesAreReportedAndIgnored() throws {
        let (forged, _) = try Self.crashInCompiledDriver()
        let pdbBytes = try PDBFileTests.bytes()
        let identity = try PDBFile(pdbBytes, name: "ccsymbols.pdb").identity
        let damaged = try Self.store(Array(pdbBytes.prefix(0x2000)), key: identity.storeKey)
        var other = identity
        other.age += 1
        let mismatched = try Self.store(pdbBytes, key: other.storeKey)
        defer { for folder in [damaged, mismatched] { try? FileManager.default.removeItem(atPath: folder) } }
        let dump = try KernelDump(source: Fixtures.source(forged))
        let plain = CrashAnalyzer(parallelism: 1).analyze(dump)
        let symbols = try SymbolDirectories([damaged, mismatched])
        let report = CrashAnalyzer(parallelism: 1, symbols: symbols).analyze(dump)
        #expect(report.stack.map(\.symbol) == plain.stack.map(\.symbol) && report.symbolFiles == [])
        #expect(symbols.problems.count == 1 && symbols.problems.first?.contains("the MSF claims 18 blocks") == true, "\(symbols.problems)")
        #expect(symbols.symbols(for: other) == nil, "a file under the right name for another build is refused")
        #expect(symbols.problems.contains { $0.contains("for ccsymbols.pdb") }, "\(symbols.problems)")
        #expect(throws: SymbolFileError.self) { try SymbolDirectories(["/nonexistent/symbols"]) }
    }

    /// A Windows build no offset table has (27000): with the kernel's ISF in the symbol folder,
    /// the layout comes from its types and the analysis reads what the 19041 table reads of
    /// the same memory; without it, only what the invariants find.
    @Test func aBuildTheTablesLackTakesItsOffsetsFromTheKernelsTypes() throws {
        guard let folder = Fixtures.sharedPath("fixtures/isf") else {
            print("note: ../shared/fixtures/isf is absent, skipping the ISF-driven layout check")
            return
        }
        var description = DumpDescription.timerListCorruption(kind: .bitmapKernel, layoutSeed: 5)
        description.memory = DumpDescription.vmMemory(gibibytes: 1)
        let kernel = try #require(PDBIdentity(guidText: "5278AFF86C341677D7D7835C85B7B844", age: 1, name: "ntkrnlmp.pdb"))
        description.modules[0].codeView = CodeViewRecord(guid: kernel.guid, age: 1, pdbName: "ntkrnlmp.pdb")
        let known = CrashAnalyzer(parallelism: 1).analyze(try KernelDump(source: Fixtures.source(Forge.dump(description))))
        description.buildNumber = 27000  // written with 19041's layout, which no table names 27000
        let dump = try KernelDump(source: Fixtures.source(Forge.dump(description)))
        let guessed = CrashAnalyzer(parallelism: 1).analyze(dump)
        let symbols = try SymbolDirectories([folder])
        let typed = CrashAnalyzer(parallelism: 1, symbols: symbols).analyze(dump)

        #expect(guessed.layoutSource?.contains("invariants") == true)
        #expect(typed.layoutSource?.contains("the kernel's own types in \(folder)/ntkrnlmp-19041") == true, "\(typed.layoutSource ?? "-")")
        #expect(typed.processes.map(\.name) == known.processes.map(\.name) && typed.processes.allSatisfy { $0.name != nil })
        #expect(typed.processes.map(\.threads) == known.processes.map(\.threads), "thread lists need ThreadListHead, which only the types give")
        #expect(typed.culprit == known.culprit && typed.failureBucketId == known.failureBucketId,
                "the timer tables (TimerTable, TimerEntries) come from the types too: \(typed.failureBucketId)")
        #expect(guessed.processes.map(\.threads) != known.processes.map(\.threads))
        #expect(symbols.problems.isEmpty, "\(symbols.problems)")
    }
}
