/// Which PDB an image was built with: the GUID and Age of its CodeView "RSDS" record (the
/// image's debug directory, type 2), and the PDB's file name. A symbol store files a PDB under
/// `name.pdb/GUIDAGE/name.pdb` (symstore's layout), and Volatility files an ISF table under the
/// same key, so this is how DumpFleet finds an image's symbols.
public struct PDBIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The GUID's 16 bytes as stored (Data1, Data2 and Data3 little-endian, then Data4).
    public var guid: [UInt8]
    public var age: UInt32
    /// The PDB's file name without directories (`ntkrnlmp.pdb`).
    public var name: String

    /// `guid` is cut or padded with zeros to its 16 bytes.
    public init(guid: [UInt8], age: UInt32, name: String) {
        self.guid = Array((guid + [UInt8](repeating: 0, count: 16)).prefix(16))
        self.age = age
        // The record holds the build machine's path; stores key by the file name alone.
        self.name = String(name.split(whereSeparator: { $0 == "\\" || $0 == "/" }).last ?? Substring(name))
    }

    /// The CodeView record's bytes: "RSDS", GUID, Age, a NUL-terminated path.
    public init(codeViewRecord bytes: [UInt8]) throws {
        var reader = ByteReader(bytes, name: "the CodeView record")
        let signature = try reader.bytes(4, "the CodeView signature")
        guard signature == Array("RSDS".utf8) else {
            throw SymbolFileError(.notASymbolFile, "the CodeView record starts \(signature.map { hex($0) }) (an RSDS record starts \"RSDS\"; NB10 records of old compilers are not read)")
        }
        let guid = try reader.bytes(16, "the PDB GUID")
        let age = try reader.u32("the PDB age")
        self.init(guid: guid, age: age, name: try reader.cString("the PDB path"))
    }

    /// From the GUID as `guidText` writes it (32 hexadecimal digits, either case); nil when it
    /// is not that.
    public init?(guidText text: String, age: UInt32, name: String) {
        let digits = Array(text.utf8)
        guard digits.count == 32 else { return nil }
        var values: [UInt8] = []
        for index in stride(from: 0, to: 32, by: 2) {
            guard let byte = UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16) else { return nil }
            values.append(byte)
        }
        // Data1, Data2 and Data3 are written as numbers, so their bytes come reversed.
        let stored = Array(values[0..<4].reversed()) + values[4..<6].reversed() + values[6..<8].reversed() + values[8..<16]
        self.init(guid: stored, age: age, name: name)
    }

    /// The GUID as a symbol store writes it: Data1, Data2, Data3 as numbers, then Data4's bytes,
    /// upper-case hexadecimal (`5278AFF86C341677D7D7835C85B7B844`).
    public var guidText: String {
        func digits(_ value: UInt64, _ count: Int) -> String {
            let text = String(value, radix: 16, uppercase: true)
            return String(repeating: "0", count: max(0, count - text.count)) + text
        }
        let data1 = UInt64(guid[0]) | UInt64(guid[1]) << 8 | UInt64(guid[2]) << 16 | UInt64(guid[3]) << 24
        let data2 = UInt64(guid[4]) | UInt64(guid[5]) << 8
        let data3 = UInt64(guid[6]) | UInt64(guid[7]) << 8
        return digits(data1, 8) + digits(data2, 4) + digits(data3, 4) + guid[8..<16].map { digits(UInt64($0), 2) }.joined()
    }

    /// symstore's directory key: the GUID text and the age in hexadecimal without padding.
    public var storeKey: String { guidText + String(age, radix: 16, uppercase: true) }

    public var description: String { "\(name) \(guidText)-\(age)" }
}
