/// The structure layouts of a PDB's TPI stream (stream 2), as much of CodeView's type records
/// as finding a field's offset and size needs: structures, classes and unions with their field
/// lists, arrays, pointers, modifiers, bitfields, enums and the primitive types.
///
/// The stream is a 56-byte header (Version, HeaderSize, TypeIndexBegin, TypeIndexEnd,
/// TypeRecordBytes, hash stream fields), then records: RecordLength (excluding itself), Kind,
/// data. Type indices count from TypeIndexBegin (0x1000); lower indices are primitives.
public struct CodeViewTypes: Sendable, KernelTypeLayout {
    enum Record: Sendable {
        /// LF_STRUCTURE, LF_CLASS, LF_UNION. A forward reference names its definition by the
        /// unique (decorated) name where it has one, anonymous types by that alone.
        case structure(name: String, uniqueName: String?, fieldList: UInt32, size: UInt64, forwardReference: Bool)
        /// Members, and the field list an LF_INDEX continues them in, if any.
        case fieldList([Member], continuation: UInt32?)
        case array(element: UInt32, size: UInt64)
        case pointer(size: UInt64)
        /// LF_MODIFIER (const, volatile) and LF_BITFIELD: the type underneath.
        case alias(UInt32)
        case enumeration(underlying: UInt32)
        case other
    }

    struct Member: Sendable {
        var name: String
        var type: UInt32
        var offset: UInt64
    }

    let begin: UInt32
    let records: [Record]
    /// Records that could not be parsed (each stands as an unknown type).
    public private(set) var damagedRecords = 0
    /// Each structure's definition (not a forward reference), by name and by unique name;
    /// the first one wins.
    let definitions: [String: Int]
    let uniqueDefinitions: [String: Int]

    static let empty = CodeViewTypes(begin: 0x1000, records: [])

    init(begin: UInt32, records: [Record]) {
        self.begin = begin
        self.records = records
        var definitions: [String: Int] = [:], uniqueDefinitions: [String: Int] = [:]
        for (index, record) in records.enumerated() {
            guard case .structure(let name, let uniqueName, _, _, false) = record else { continue }
            if definitions[name] == nil { definitions[name] = index }
            if let uniqueName, uniqueDefinitions[uniqueName] == nil { uniqueDefinitions[uniqueName] = index }
        }
        self.definitions = definitions
        self.uniqueDefinitions = uniqueDefinitions
    }

    /// Type records beyond this are corruption (ntkrnlmp.pdb holds about 100,000).
    static let maximumRecords = 1 << 22

    public init(_ stream: [UInt8]) throws {
        guard !stream.isEmpty else {
            self.init(begin: 0x1000, records: [])
            return
        }
        var reader = ByteReader(stream, name: "the TPI stream")
        let version = try reader.u32("the TPI version")
        guard version == 20_040_203 || version == 19_990_903 else {
            throw SymbolFileError(.notASymbolFile, "the TPI stream has version \(version); this reader knows 20040203 (VC 8.0 and later)")
        }
        let headerSize = Int(try reader.u32("the TPI header size"))
        let begin = try reader.u32("the first type index")
        let end = try reader.u32("the end type index")
        let recordBytes = Int(try reader.u32("the type record size"))
        guard headerSize >= 20, begin <= end, end - begin <= UInt32(Self.maximumRecords) else {
            throw SymbolFileError(.corrupt, "the TPI header claims a \(headerSize)-byte header and type indices 0x\(hex(begin))..<0x\(hex(end))")
        }
        reader.offset = headerSize
        var body = ByteReader(try reader.bytes(recordBytes, "the type records"), name: "the TPI type records")
        var records: [Record] = []
        records.reserveCapacity(min(Int(end - begin), recordBytes / 4))  // a record is 4 bytes at least
        // A record this reader cannot parse stands as `.other`: one bad type costs that type only.
        var damaged = 0
        while body.remaining >= 4, records.count < Int(end - begin) {
            let length = Int(try body.u16("a type record's length"))
            var record = ByteReader(try body.bytes(length, "a type record"), name: "a type record")
            do { records.append(try Self.parse(&record)) } catch {
                records.append(.other)
                damaged += 1
            }
        }
        self.init(begin: begin, records: records)
        self.damagedRecords = damaged
    }

    static func parse(_ record: inout ByteReader) throws -> Record {
        let kind = try record.u16("the type record's kind")
        switch kind {
        case 0x1504, 0x1505:  // LF_CLASS, LF_STRUCTURE: count, properties, field list, derived, vshape, size, name
            _ = try record.u16("the member count")
            let properties = try record.u16("the properties")
            let fieldList = try record.u32("the field list")
            try record.skip(8, "the derivation and vshape")
            let size = try numeric(&record)
            return try structure(&record, properties: properties, fieldList: fieldList, size: size)
        case 0x1608, 0x1609:  // LF_CLASS2, LF_STRUCTURE2 (cvinfo.h's lfClass2): 32-bit properties, field list, derived, vshape, count, size, name
            let properties = UInt16(truncatingIfNeeded: try record.u32("the properties"))
            let fieldList = try record.u32("the field list")
            try record.skip(10, "the derivation, vshape and member count")
            let size = try numeric(&record)
            return try structure(&record, properties: properties, fieldList: fieldList, size: size)
        case 0x1506:  // LF_UNION: count, properties, field list, size, name
            _ = try record.u16("the member count")
            let properties = try record.u16("the properties")
            let fieldList = try record.u32("the field list")
            let size = try numeric(&record)
            return try structure(&record, properties: properties, fieldList: fieldList, size: size)
        case 0x1203:  // LF_FIELDLIST
            let (members, continuation) = try Self.members(&record)
            return .fieldList(members, continuation: continuation)
        case 0x1503:  // LF_ARRAY: element type, index type, size in bytes, name
            let element = try record.u32("the array's element type")
            _ = try record.u32("the array's index type")
            return .array(element: element, size: try numeric(&record))
        case 0x1002:  // LF_POINTER: referent, attributes (size in bits 13..18)
            _ = try record.u32("the pointer's referent")
            let attributes = try record.u32("the pointer's attributes")
            return .pointer(size: UInt64((attributes >> 13) & 0x3F))
        case 0x1001, 0x1205:  // LF_MODIFIER, LF_BITFIELD: the underlying type first
            return .alias(try record.u32("the underlying type"))
        case 0x1507:  // LF_ENUM: count, properties, underlying type, field list, name
            try record.skip(4, "the enum's count and properties")
            return .enumeration(underlying: try record.u32("the enum's underlying type"))
        default:
            return .other
        }
    }

    /// The names that end a structure record: the name, then the unique name when property
    /// bit 0x200 (HasUniqueName) is set. Bit 0x80 marks a forward reference.
    static func structure(_ record: inout ByteReader, properties: UInt16, fieldList: UInt32, size: UInt64) throws -> Record {
        let name = try record.cString()
        let uniqueName = properties & 0x200 != 0 && !record.atEnd ? try record.cString() : nil
        return .structure(name: name, uniqueName: uniqueName, fieldList: fieldList, size: size, forwardReference: properties & 0x80 != 0)
    }

    /// An LF_FIELDLIST's data members, and the list an LF_INDEX continues it in. Each
    /// sub-record is padded to 4 bytes with LF_PAD bytes (0xF0 and up); a kind this reader does
    /// not know ends the list (what came before stands).
    static func members(_ record: inout ByteReader) throws -> ([Member], UInt32?) {
        var members: [Member] = []
        var continuation: UInt32?
        while record.remaining >= 2 {
            let kind = try record.u16("a field's kind")
            switch kind {
            case 0x150D:  // LF_MEMBER: attributes, type, offset, name
                _ = try record.u16("the member's attributes")
                let type = try record.u32("the member's type")
                let offset = try numeric(&record)
                members.append(Member(name: try record.cString(), type: type, offset: offset))
            case 0x1400:  // LF_BCLASS: attributes, type, offset
                try record.skip(6, "a base class")
                _ = try numeric(&record)
            case 0x1401, 0x1402:  // LF_VBCLASS, LF_IVBCLASS: attributes, base, vbptr type, vbptr offset, vbtable index
                try record.skip(10, "a virtual base class")
                _ = try numeric(&record)
                _ = try numeric(&record)
            case 0x1511:  // LF_ONEMETHOD: attributes, type, a vtable offset when introducing a virtual, name
                let attributes = try record.u16("a method's attributes")
                try record.skip(4, "a method's type")
                if [4, 6].contains((attributes >> 2) & 7) { try record.skip(4, "a method's vtable offset") }
                _ = try record.cString()
            case 0x1502:  // LF_ENUMERATE: attributes, value, name
                try record.skip(2, "an enumerator's attributes")
                _ = try numeric(&record)
                _ = try record.cString()
            case 0x150E, 0x1510:  // LF_STMEMBER, LF_NESTTYPE: attributes or padding, type, name
                try record.skip(6, "a static member or nested type")
                _ = try record.cString()
            case 0x150F:  // LF_METHOD: count, method list, name
                try record.skip(6, "a method list")
                _ = try record.cString()
            case 0x1409:  // LF_VFUNCTAB: padding, type
                try record.skip(6, "a vtable pointer")
            case 0x1404:  // LF_INDEX: padding, the field list these members continue in
                try record.skip(2, "a continuation's padding")
                continuation = try record.u32("a continuation")
            default:
                return (members, continuation)
            }
            while let pad = record.bytes[safe: record.offset], pad >= 0xF0 { record.offset += max(1, Int(pad & 0x0F)) }
        }
        return (members, continuation)
    }

    /// A numeric leaf: a value below 0x8000 is itself; otherwise a kind and the value.
    static func numeric(_ record: inout ByteReader) throws -> UInt64 {
        let leaf = try record.u16("a numeric leaf")
        switch leaf {
        case ..<0x8000: return UInt64(leaf)
        case 0x8000: return UInt64(bitPattern: Int64(Int8(bitPattern: try record.u8("LF_CHAR"))))
        case 0x8001: return UInt64(bitPattern: Int64(Int16(bitPattern: try record.u16("LF_SHORT"))))
        case 0x8002: return UInt64(try record.u16("LF_USHORT"))
        case 0x8003: return UInt64(bitPattern: Int64(Int32(bitPattern: try record.u32("LF_LONG"))))
        case 0x8004: return UInt64(try record.u32("LF_ULONG"))
        case 0x8009, 0x800A: return try record.u64("LF_QUADWORD")
        default: throw SymbolFileError(.corrupt, "\(record.name) holds numeric leaf kind 0x\(hex(leaf)), which this reader does not know")
        }
    }

    func record(_ index: UInt32) -> Record? {
        guard index >= begin, Int(index - begin) < records.count else { return nil }
        return records[Int(index - begin)]
    }

    /// Sizes of the primitive types (index < 0x1000): a pointer mode in bits 8..11 makes it a
    /// pointer; otherwise the low byte is the kind (cvinfo.h's T_ constants).
    static func primitiveSize(_ index: UInt32) -> UInt64? {
        switch (index >> 8) & 0xF {
        case 0: break
        case 1: return 2                // near 16-bit
        case 2, 3, 4: return 4          // far and huge 16:16, near 32-bit
        case 5: return 6                // far 16:32
        case 6: return 8                // near 64-bit
        case 7: return 16               // 128-bit
        default: return nil
        }
        switch index & 0xFF {
        case 0x03: return 0
        case 0x08: return 4  // HRESULT
        case 0x10, 0x20, 0x30, 0x68, 0x69, 0x70, 0x7C: return 1
        case 0x11, 0x21, 0x31, 0x71, 0x72, 0x73, 0x7A: return 2
        case 0x12, 0x22, 0x32, 0x40, 0x74, 0x75, 0x7B: return 4
        case 0x13, 0x23, 0x33, 0x41, 0x76, 0x77: return 8
        case 0x14, 0x24, 0x78, 0x79: return 16
        default: return nil
        }
    }

    /// The record index of the structure definition type `index` names, through modifiers and
    /// forward references (at most 32 steps: a cycle is corruption).
    func definitionIndex(ofType index: UInt32, depth: Int = 0) -> Int? {
        guard depth < 32 else { return nil }
        switch record(index) {
        case .structure(let name, let uniqueName, _, _, let forward)?:
            guard forward else { return Int(index - begin) }
            return uniqueName.flatMap { uniqueDefinitions[$0] } ?? definitions[name]
        case .alias(let underlying)?: return definitionIndex(ofType: underlying, depth: depth + 1)
        default: return nil
        }
    }

    /// The size of type `index`, following aliases (at most 32 deep: a cycle is corruption).
    func size(ofType index: UInt32, depth: Int = 0) -> UInt64? {
        guard depth < 32 else { return nil }
        if index < begin { return Self.primitiveSize(index) }
        switch record(index) {
        case .structure?: return definitionIndex(ofType: index).map { layout(at: $0).size }
        case .array(_, let size)?: return size
        case .pointer(let size)?: return size
        case .alias(let underlying)?, .enumeration(let underlying)?: return self.size(ofType: underlying, depth: depth + 1)
        default: return nil
        }
    }

    /// The size and data members of the definition at record `index`, through LF_INDEX
    /// continuations (at most 64: a cycle is corruption).
    func layout(at index: Int) -> (size: UInt64, members: [Member]) {
        guard case .structure(_, _, let fieldList, let size, _) = records[index] else { return (0, []) }
        var members: [Member] = []
        var next: UInt32? = fieldList
        for _ in 0..<64 {
            guard let list = next, case .fieldList(let more, let continuation)? = record(list) else { break }
            members += more
            next = continuation
        }
        return (size, members)
    }

    // MARK: KernelTypeLayout

    public func size(of type: String) -> UInt64? { definitions[type].map { layout(at: $0).size } }

    public func field(_ path: String, in type: String) -> FieldLayout? {
        guard var container = definitions[type] else { return nil }
        var offset: UInt64 = 0
        var last: Member?
        for (step, name) in path.split(separator: ".").enumerated() {
            if step > 0 {
                guard let member = last, let next = definitionIndex(ofType: member.type) else { return nil }
                container = next
            }
            var searched: Set<Int> = [container]
            guard let (member, at) = find(String(name), in: layout(at: container).members, searched: &searched) else { return nil }
            let (sum, overflow) = offset.addingReportingOverflow(at)
            guard !overflow else { return nil }
            offset = sum
            last = member
        }
        guard let last else { return nil }
        return FieldLayout(offset: offset, size: size(ofType: last.type))
    }

    /// `name` among `members`, or inside one of their anonymous unions and structures (a member
    /// without a name, or whose type is named `<unnamed-tag>`, `<anonymous-tag>` or `__unnamed`:
    /// MSVC flattens such members into the parent, clang keeps them nested), with its offset
    /// from the members' start. Each definition is searched once per lookup (`searched`), so
    /// a hostile file whose anonymous types hold themselves cannot make the search explode.
    func find(_ name: String, in members: [Member], searched: inout Set<Int>, depth: Int = 0) -> (Member, UInt64)? {
        if let member = members.first(where: { $0.name == name }) { return (member, member.offset) }
        guard depth < 8 else { return nil }
        for member in members {
            guard let nested = definitionIndex(ofType: member.type), searched.insert(nested).inserted,
                  case .structure(let typeName, _, _, _, _) = records[nested],
                  member.name.isEmpty || typeName.hasPrefix("<") || typeName.hasPrefix("__unnamed"),
                  let (found, at) = find(name, in: layout(at: nested).members, searched: &searched, depth: depth + 1) else { continue }
            let (sum, overflow) = member.offset.addingReportingOverflow(at)
            return overflow ? nil : (found, sum)
        }
        return nil
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
