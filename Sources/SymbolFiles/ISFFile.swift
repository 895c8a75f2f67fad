/// A Volatility 3 symbol table (ISF, "Intermediate Symbol Format"), JSON made from a PDB:
///
///     metadata.windows.pdb: {GUID, age, database ("ntkrnlmp.pdb")}
///     symbols: {name: {address: RVA}}
///     user_types: {name: {kind: struct|union, size, fields: {name: {offset, type}}}}
///     base_types: {name: {size, ...}}, enums: {name: {base, ...}}
///
/// A field's type is {kind: base|pointer|struct|union|enum|array|bitfield, name, count,
/// subtype}. The reader keeps what the analysis asks: function names by RVA and layouts.
public struct ISFFile: Sendable, KernelTypeLayout {
    public let identity: PDBIdentity
    /// Named addresses, sorted by RVA (an ISF does not tell code from data).
    public let functions: [FunctionSymbol]
    let userTypes: [String: JSONValue]
    let baseTypes: [String: JSONValue]
    let enums: [String: JSONValue]

    public init(json bytes: [UInt8]) throws {
        let document = try JSONValue.parse(bytes)
        guard let pdb = document["metadata"]?["windows"]?["pdb"], let guid = pdb["GUID"]?.string, let age = pdb["age"]?.integer,
              let database = pdb["database"]?.string, (0...Int64(UInt32.max)).contains(age),
              let identity = PDBIdentity(guidText: guid, age: UInt32(age), name: database) else {
            throw SymbolFileError(.notASymbolFile, "the JSON has no metadata.windows.pdb with a GUID, an age and a database name, as an ISF table for Windows does")
        }
        self.identity = identity
        var functions: [FunctionSymbol] = []
        for (name, symbol) in document["symbols"]?.object ?? [:] {
            guard let address = symbol["address"]?.integer, (0...Int64(UInt32.max)).contains(address) else { continue }
            functions.append(FunctionSymbol(rva: UInt32(address), size: nil, name: name))
        }
        self.functions = functions.sorted { ($0.rva, $0.name) < ($1.rva, $1.name) }
        userTypes = document["user_types"]?.object ?? [:]
        baseTypes = document["base_types"]?.object ?? [:]
        enums = document["enums"]?.object ?? [:]
    }

    public func size(of type: String) -> UInt64? {
        userTypes[type]?["size"]?.integer.flatMap { $0 >= 0 ? UInt64($0) : nil }
    }

    public func field(_ path: String, in type: String) -> FieldLayout? {
        var container = type
        var offset: UInt64 = 0
        var last: JSONValue?
        for name in path.split(separator: ".") {
            if let previous = last {
                guard previous["kind"]?.string == "struct" || previous["kind"]?.string == "union", let next = previous["name"]?.string else { return nil }
                container = next
            }
            guard let member = userTypes[container]?["fields"]?[String(name)], let at = member["offset"]?.integer, at >= 0,
                  let memberType = member["type"] else { return nil }
            let (sum, overflow) = offset.addingReportingOverflow(UInt64(at))
            guard !overflow else { return nil }
            offset = sum
            last = memberType
        }
        guard let last else { return nil }
        return FieldLayout(offset: offset, size: size(ofType: last, depth: 0))
    }

    /// The size of a field's type description, nil where the table does not give it.
    func size(ofType type: JSONValue, depth: Int) -> UInt64? {
        guard depth < 16, let kind = type["kind"]?.string else { return nil }
        switch kind {
        case "pointer": return baseTypes["pointer"]?["size"]?.integer.map { UInt64(max(0, $0)) } ?? 8
        case "base": return type["name"]?.string.flatMap { baseTypes[$0]?["size"]?.integer }.map { UInt64(max(0, $0)) }
        case "struct", "union": return type["name"]?.string.flatMap(size(of:))
        case "enum": return type["name"]?.string.flatMap { enums[$0]?["size"]?.integer }.map { UInt64(max(0, $0)) }
        case "array":
            guard let count = type["count"]?.integer, count >= 0, let subtype = type["subtype"],
                  let element = size(ofType: subtype, depth: depth + 1) else { return nil }
            let (total, overflow) = UInt64(count).multipliedReportingOverflow(by: element)
            return overflow ? nil : total
        case "bitfield": return type["type"].flatMap { size(ofType: $0, depth: depth + 1) }
        default: return nil
        }
    }
}
