import DumpAnalysis
import DumpForge
import Foundation
import SymbolFiles
import Testing
import TestSupport

/// Symbol files come from a site's store and are hostile input like dumps: damaged PDBs, ISF
/// tables and CodeView records must give errors or partial answers, never a trap.
@Suite struct HostileSymbolFileTests {
    /// 1,500 damaged copies of the toolchain's PDB: cut short, bytes flipped in its headers and
    /// directory, 32-bit fields overwritten with extreme values anywhere.
    @Test func damagedPDBsNeverTrap() throws {
        let original = try PDBFileTests.bytes()
        var random = SeededRandom(seed: 0x5EED)
        var outcomes: [String: Int] = [:]
        for round in 0..<1500 {
            var bytes = original
            switch round % 3 {
            case 0:
                bytes = Array(bytes.prefix(Int(random.below(UInt64(bytes.count)))))
            case 1:
                for _ in 0..<(1 + random.below(8)) { bytes[Int(random.below(0x5000))] ^= UInt8(truncatingIfNeeded: 1 + random.below(255)) }
            default:
                let at = Int(random.below(UInt64(bytes.count / 4))) * 4
                let value: UInt32 = [0, 1, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x1000, UInt32(truncatingIfNeeded: random.next())][Int(random.below(7))]
                for index in 0..<4 { bytes[at + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(index))) }
            }
            do {
                let pdb = try PDBFile(bytes, name: "damaged.pdb")
                let symbols = ModuleSymbols(pdb, origin: "damaged")
                _ = KernelLayout.fromTypes(pdb.types, origin: "damaged", debuggerData: nil)
                _ = symbols.function(containing: 0x1010)
                outcomes["read", default: 0] += 1
            } catch let error as SymbolFileError {
                outcomes[error.code.rawValue, default: 0] += 1
            }
        }
        print("damaged PDBs: \(outcomes.sorted { $0.key < $1.key })")
        #expect((outcomes["read"] ?? 0) > 100 && outcomes.count >= 3, "both kinds of outcome happen: \(outcomes)")
    }

    /// A TPI stream from records given as (kind, payload); the header's fields as the reader
    /// checks them.
    static func typeStream(_ records: [(UInt16, [UInt8])]) -> [UInt8] {
        func le16(_ value: UInt16) -> [UInt8] { [UInt8(value & 0xFF), UInt8(value >> 8)] }
        func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
        var body: [UInt8] = []
        for (kind, payload) in records {
            var record = le16(kind) + payload
            while record.count % 4 != 2 { record.append(0xF0 | UInt8(4 - (record.count + 2) % 4)) }
            body += le16(UInt16(record.count)) + record
        }
        return le32(20_040_203) + le32(56) + le32(0x1000) + le32(0x1000 + UInt32(records.count)) + le32(UInt32(body.count))
            + [UInt8](repeating: 0, count: 36) + body
    }

    static func member(_ name: String, type: UInt32, offset: [UInt8]) -> [UInt8] {
        [0x0D, 0x15, 0x03, 0x00] + (0..<4).map { UInt8(truncatingIfNeeded: type >> (8 * $0)) } + offset + Array(name.utf8) + [0]
    }

    static func structure(_ name: String, fieldList: UInt32, size: UInt8) -> [UInt8] {
        [1, 0, 0, 0] + (0..<4).map { UInt8(truncatingIfNeeded: fieldList >> (8 * $0)) } + [UInt8](repeating: 0, count: 8) + [size, 0] + Array(name.utf8) + [0]
    }

    /// Type records crafted to break a careless reader: an offset that sign-extends to
    /// 0xFFFF…FF on a path the layout follows, and anonymous structures that hold themselves
    /// thirty times over (a search without memory would make 30^8 calls).
    @Test func craftedTypeRecordsNeverTrapOrHang() throws {
        let types = try CodeViewTypes(Self.typeStream([
            (0x1203, Self.member("ApcState", type: 0x1003, offset: [0x00, 0x80, 0xFF]) + Self.member("UniqueProcessId", type: 0x0603, offset: [0x40, 0x04])),  // 0x1000
            (0x1505, Self.structure("_KTHREAD", fieldList: 0x1000, size: 0x80)),                                                                              // 0x1001
            (0x1203, Self.member("Process", type: 0x0603, offset: [0x20, 0x00])),                                                                             // 0x1002
            (0x1505, Self.structure("_KAPC_STATE", fieldList: 0x1002, size: 0x30)),                                                                           // 0x1003
            (0x1203, (0..<30).flatMap { _ in Self.member("", type: 0x1005, offset: [0, 0]) }),                                                                // 0x1004
            (0x1505, Self.structure("<unnamed-tag>", fieldList: 0x1004, size: 0x10)),                                                                        // 0x1005
            (0x1203, Self.member("", type: 0x1005, offset: [0, 0])),                                                                                          // 0x1006
            (0x1505, Self.structure("_EPROCESS", fieldList: 0x1006, size: 0x40)),                                                                             // 0x1007
            (0x1505, [0xFF]),                                                                                                                                 // 0x1008: cut short
        ]))
        #expect(types.damagedRecords == 1)
        #expect(types.field("ApcState", in: "_KTHREAD")?.offset == UInt64.max, "LF_CHAR -1 sign-extends")
        #expect(types.field("ApcState.Process", in: "_KTHREAD") == nil, "an offset that overflows is no offset")
        #expect(types.field("UniqueProcessId", in: "_EPROCESS") == nil, "searched once per definition, found nowhere")
        #expect(KernelLayout.fromTypes(types, origin: "crafted", debuggerData: nil) == nil)
        // An MSF whose stream claims far more blocks than the file has is refused before any is read.
        var msf = MSFContainer.magic + [0, 0x10, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]
        msf += [UInt8](repeating: 0, count: 0x2000 - msf.count)
        msf += [3, 0, 0, 0] + [UInt8](repeating: 0, count: 0x1000 - 4)  // the block map: the directory is block 3
        msf += [1, 0, 0, 0, 0, 0, 0, 0xF0, 1, 0, 0, 0] + [UInt8](repeating: 0, count: 0x1000 - 12)  // one stream of 0xF0000000 bytes
        #expect(throws: SymbolFileError.self) { try MSFContainer(msf) }
    }

    @Test func hostileISFTablesNeverTrap() throws {
        func isf(_ types: String) -> [UInt8] {
            Array(#"{"metadata": {"windows": {"pdb": {"GUID": "5278AFF86C341677D7D7835C85B7B844", "age": 1, "database": "ntkrnlmp.pdb"}}}, "#.utf8)
                + Array(#""base_types": {"pointer": {"size": 8}}, "symbols": {"KiA": {"address": 4096}, "Bad": {"address": -5}}, "user_types": \#(types)}"#.utf8)
        }
        // Nesting deeper than any table: refused with the offset, not by exhausting the stack.
        let deep = Array(repeating: UInt8(ascii: "["), count: 100_000) + Array(repeating: UInt8(ascii: "]"), count: 100_000)
        #expect(throws: SymbolFileError.self) { try ISFFile(json: deep) }
        // A structure that holds itself, arrays whose sizes overflow, a field with no type.
        let cyclic = try ISFFile(json: isf(#"""
            {"_A": {"kind": "struct", "size": 16, "fields": {"Self": {"offset": 8, "type": {"kind": "struct", "name": "_A"}},
                                                             "Huge": {"offset": 0, "type": {"kind": "array", "count": 4611686018427387904, "subtype": {"kind": "pointer"}}},
                                                             "Odd": {"offset": -8, "type": {"kind": "base", "name": "int"}}, "Bare": {"offset": 4}}}}
            """#))
        #expect(cyclic.field("Self.Self.Self", in: "_A")?.offset == 24)
        #expect(cyclic.field("Huge", in: "_A")?.size == nil, "a size that overflows is unknown")
        #expect(cyclic.field("Odd", in: "_A") == nil && cyclic.field("Bare", in: "_A") == nil && cyclic.field("Missing.X", in: "_A") == nil)
        #expect(cyclic.functions.map(\.name) == ["KiA"], "a negative address is skipped")
        #expect(KernelLayout.fromTypes(cyclic, origin: "cyclic", debuggerData: nil) == nil, "no EPROCESS, no layout")
        // Every cut of a valid table fails cleanly.
        let whole = isf(#"{"_EPROCESS": {"kind": "struct", "size": 2624, "fields": {"UniqueProcessId": {"offset": 1088, "type": {"kind": "pointer"}}}}}"#)
        #expect(try KernelLayout.fromTypes(ISFFile(json: whole), origin: "table", debuggerData: nil)?.processUniqueId == 0x440)
        for cut in stride(from: 0, to: whole.count - 1, by: 7) {
            #expect(throws: SymbolFileError.self) { try ISFFile(json: Array(whole.prefix(cut))) }
        }
        #expect(throws: SymbolFileError.self) { try ISFFile(json: Array(#"{"user_types": {}}"#.utf8)) }
    }

    @Test func codeViewRecordsAreCheckedLikeEverythingElse() throws {
        var random = SeededRandom(seed: 99)
        for length in 0..<80 {
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            if length >= 4, length % 2 == 0 { bytes.replaceSubrange(0..<4, with: Array("RSDS".utf8)) }
            do {
                let identity = try PDBIdentity(codeViewRecord: bytes)
                #expect(length >= 24 && identity.guid.count == 16 && identity.storeKey.count >= 33)
            } catch {
                #expect(error is SymbolFileError)
            }
        }
        let path = try PDBIdentity(codeViewRecord: Array("RSDS".utf8) + [UInt8](repeating: 0xAB, count: 16) + [2, 0, 0, 0] + Array(#"d:\os\obj\ntkrnlmp.pdb"#.utf8))
        #expect(path.name == "ntkrnlmp.pdb" && path.storeKey == "ABABABABABABABABABABABABABABABAB2", "a store keys by the file name")
        #expect(PDBIdentity(guidText: path.guidText, age: 2, name: "ntkrnlmp.pdb") == path)
        #expect(PDBIdentity(guidText: "not a guid", age: 1, name: "x.pdb") == nil)
    }
}
