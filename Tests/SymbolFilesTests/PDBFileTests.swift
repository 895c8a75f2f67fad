import DumpAnalysis
import Foundation
import SymbolFiles
import Testing
import TestSupport

/// The PDB reader on a PDB a real toolchain wrote (Tests/Fixtures/compiled/ccsymbols.pdb, from
/// clang -gcodeview and lld-link /debug), checked against llvm-pdbutil, LLVM's own reader.
@Suite struct PDBFileTests {
    static let path = Fixtures.compiled("ccsymbols.pdb")
    static func bytes() throws -> [UInt8] { try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) }

    /// llvm-pdbutil's output for `arguments`, or nil (with a note, or a failure under CI) when
    /// the tool is missing.
    static func pdbutil(_ arguments: [String]) throws -> String? {
        guard let tool = Tools.find("llvm-pdbutil") else {
            if Tools.isCI { Issue.record("llvm-pdbutil is missing: scripts/setup installs Debian's llvm") } else {
                print("note: llvm-pdbutil not found (Debian's llvm), skipping the comparison with LLVM's PDB reader")
            }
            return nil
        }
        let run = try Tools.run(tool, ["dump"] + arguments + [path])
        #expect(run.status == 0)
        return String(decoding: run.output, as: UTF8.self)
    }

    @Test func identityAndFunctionsAreWhatLLVMReads() throws {
        let pdb = try PDBFile(try Self.bytes(), name: "ccsymbols.pdb")
        #expect(pdb.problems.isEmpty, "\(pdb.problems)")
        // The static function only the PDB names, with its size; the exported one under its own
        // name (the image exports it as CcsEntryPoint).
        #expect(pdb.functions.contains { $0.name == "CcsValidateRequest" && $0.size != nil })
        #expect(pdb.functions.contains { $0.name == "CcsDispatchRequest" })
        guard let summary = try Self.pdbutil(["--summary"]), let dump = try Self.pdbutil(["--symbols", "--publics", "--section-headers"]) else { return }

        let guid = try #require(summary.split(separator: "\n").first { $0.contains("GUID:") })
        #expect(guid.filter { $0.isHexDigit && $0 != "G" }.hasSuffix(pdb.identity.guidText), "\(guid) vs \(pdb.identity.guidText)")
        #expect(summary.contains("Age: \(pdb.identity.age)"))

        // Section virtual addresses, then every procedure and function public as section:offset.
        let lines = dump.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let sections = lines.filter { $0.hasSuffix(" virtual address") }.compactMap { UInt32($0.split(separator: " ")[0], radix: 16) }
        var expected: [String: UInt32] = [:]
        for (index, line) in lines.enumerated() where index + 1 < lines.count
            && (line.contains("| S_GPROC32") || line.contains("| S_LPROC32") || (line.contains("| S_PUB32") && lines[index + 1].contains("function"))) {
            let name = String(line.split(separator: "`")[1])
            let address = try #require(lines[index + 1].components(separatedBy: "addr = ").last?.prefix(9))
            let parts = address.split(separator: ":").compactMap { UInt32($0, radix: 10) }
            try #require(parts.count == 2 && parts[0] >= 1 && Int(parts[0]) <= sections.count, "\(address)")
            expected[name] = sections[Int(parts[0]) - 1] + parts[1]
        }
        try #require(expected.count >= 2, "llvm-pdbutil listed \(expected)")
        #expect(Dictionary(pdb.functions.map { ($0.name, $0.rva) }, uniquingKeysWith: { a, _ in a }) == expected)
    }

    /// Every data member of every structure, as llvm-pdbutil lists it, at the same offset by
    /// our reader; and the kernel layout built from these types is the 19041 table's.
    @Test func everyMemberOffsetIsWhatLLVMReads() throws {
        let pdb = try PDBFile(try Self.bytes(), name: "ccsymbols.pdb")
        let layout = try #require(KernelLayout.fromTypes(pdb.types, origin: "ccsymbols.pdb", debuggerData: nil))
        var table = try #require(KernelLayout.known(build: 19041, debuggerData: nil))
        table.source = layout.source
        #expect(layout == table, "the PDB's types give the 19041 table's offsets")

        guard let types = try Self.pdbutil(["--types"]) else { return }
        // Field lists by type index, then each defined structure's members through its list.
        var fieldLists: [String: [(name: String, offset: UInt64)]] = [:]
        var current: String?
        var checked = 0
        let lines = types.split(separator: "\n").map(String.init)
        for (index, line) in lines.enumerated() {
            if line.contains("| LF_FIELDLIST") { current = line.trimmingCharacters(in: .whitespaces).split(separator: " ")[0].lowercased() }
            else if line.contains("| LF_") { current = nil }
            if let current, line.contains("- LF_MEMBER"), let name = line.components(separatedBy: "name = `").last?.split(separator: "`").first,
               let offset = line.components(separatedBy: "offset = ").last?.split(separator: ",").first.flatMap({ UInt64($0) }) {
                fieldLists[current, default: []].append((String(name), offset))
            }
            guard line.contains("| LF_STRUCTURE") || line.contains("| LF_UNION"), index + 1 < lines.count,
                  let structure = line.split(separator: "`").dropFirst().first,
                  let list = lines[index + 1].components(separatedBy: "field list: ").last?.split(separator: ",").first,
                  list.hasPrefix("0x") else { continue }
            for member in fieldLists[list.lowercased()] ?? [] {
                #expect(pdb.types.field(member.name, in: String(structure))?.offset == member.offset, "\(structure).\(member.name)")
                checked += 1
            }
        }
        #expect(checked > 50, "llvm-pdbutil listed \(checked) members")
        print("PDB types: \(checked) members of ccsymbols.pdb at llvm-pdbutil's offsets")
    }

    /// Microsoft's own types for 19041 (Volatility's ISF of ntkrnlmp.pdb 19041.804) give the
    /// same layout as the table and as the toolchain's PDB.
    @Test func theKernelsISFGivesTheTablesLayout() throws {
        guard let folder = Fixtures.sharedPath("fixtures/isf") else {
            print("note: ../shared/fixtures/isf is absent, skipping the ISF layout check")
            return
        }
        let file = try #require(try FileManager.default.contentsOfDirectory(atPath: folder).first { $0.contains("19041") && $0.hasSuffix(".json.xz") })
        let json = try XZFixture.unpack(folder + "/" + file)
        let isf = try ISFFile(json: json)
        #expect(isf.identity.guidText == "5278AFF86C341677D7D7835C85B7B844" && isf.identity.age == 1 && isf.identity.name == "ntkrnlmp.pdb")
        let layout = try #require(KernelLayout.fromTypes(isf, origin: file, debuggerData: nil))
        var table = try #require(KernelLayout.known(build: 19041, debuggerData: nil))
        table.source = layout.source
        #expect(layout == table)
        #expect(isf.functions.count > 30_000 && isf.functions.contains { $0.name == "KiInsertTimerTable" && $0.rva == 0x266C80 })
    }
}

/// Unpacks a .xz fixture with the xz tool (the analysis's own reader is SymbolStore's).
enum XZFixture {
    static func unpack(_ path: String) throws -> [UInt8] {
        let xz = try #require(Tools.find("xz"), "xz is missing: scripts/setup installs xz-utils")
        let run = try Tools.run(xz, ["-dc", path])
        try #require(run.status == 0)
        return [UInt8](run.output)
    }
}
