/// A PDB as DumpFleet reads it: which build it belongs to (the PDB info stream), the functions
/// it names (public symbols, and procedures where the PDB is not stripped), and the types it
/// describes (the TPI stream), for the structure offsets an analysis needs. Formats from LLVM's
/// "The PDB File Format" pages and microsoft-pdb's cvinfo.h.
///
/// Fixed streams: 1 PDB info, 2 TPI, 3 DBI. The DBI stream names the rest: the symbol record
/// stream (where S_PUB32 records live), the module streams (S_GPROC32 and S_LPROC32), and, in
/// its optional debug header, the stream of the image's section headers, which turns a
/// symbol's section:offset into an RVA.
public struct PDBFile: Sendable {
    public let identity: PDBIdentity
    /// Named code addresses, sorted by RVA.
    public let functions: [FunctionSymbol]
    public let types: CodeViewTypes
    /// What could not be read (a module stream, the types), for the report.
    public let problems: [String]

    /// Reads `file`, named `name` in the identity (a PDB does not store its own file name).
    public init(_ file: [UInt8], name: String) throws {
        let msf = try MSFContainer(file)
        var info = ByteReader(try msf.stream(1) ?? [], name: "the PDB info stream")
        let version = try info.u32("the PDB info version")
        guard version >= 19_990_604 else {
            throw SymbolFileError(.notASymbolFile, "the PDB info stream has version \(version), older than the VC 7.0 format (20000404) this reader knows")
        }
        _ = try info.u32("the PDB signature")
        let age = try info.u32("the PDB age")
        identity = PDBIdentity(guid: try info.bytes(16, "the PDB GUID"), age: age, name: name)

        var problems: [String] = []
        let dbi = try DBIHeader(try msf.stream(3) ?? [])
        let sections = try dbi.sectionHeaderStream.flatMap { try msf.stream($0) }.map(Self.sectionAddresses) ?? []
        var functions: [FunctionSymbol] = []
        if let stream = dbi.symbolRecordStream, let records = try msf.stream(stream) {
            functions += try Self.symbols(in: records, name: "the symbol record stream", sections: sections, problems: &problems)
        }
        for module in dbi.moduleStreams {
            do {
                guard let bytes = try msf.stream(module.stream) else { continue }
                // A module stream starts with its signature (4, CV_SIGNATURE_C13), then its records.
                let records = Array(bytes.prefix(module.symbolBytes).dropFirst(4))
                functions += try Self.symbols(in: records, name: "module stream \(module.stream)", sections: sections, problems: &problems)
            } catch {
                problems.append("module stream \(module.stream): \(error)")
            }
        }
        // A procedure and the public for it name one function: keep one name per address,
        // the procedure's (it has a size).
        functions.sort { ($0.rva, $0.size == nil ? 1 : 0, $0.name) < ($1.rva, $1.size == nil ? 1 : 0, $1.name) }
        var unique: [FunctionSymbol] = []
        for function in functions where unique.last?.rva != function.rva { unique.append(function) }
        self.functions = unique
        do {
            types = try CodeViewTypes(try msf.stream(2) ?? [])
        } catch {
            problems.append("the type stream: \(error)")
            types = CodeViewTypes.empty
        }
        self.problems = problems
    }

    /// IMAGE_SECTION_HEADERs are 40 bytes, VirtualAddress at +12. A symbol's section is 1-based.
    static func sectionAddresses(_ bytes: [UInt8]) throws -> [UInt32] {
        var reader = ByteReader(bytes, name: "the section header stream")
        var addresses: [UInt32] = []
        while reader.remaining >= 40 {
            try reader.skip(12, "a section header's name and size")
            addresses.append(try reader.u32("a section's VirtualAddress"))
            try reader.skip(24, "the rest of a section header")
        }
        return addresses
    }

    /// Code symbols of a record stream: S_PUB32 (0x110E) with its code or function flag,
    /// S_GPROC32 (0x1110) and S_LPROC32 (0x110F). Records are RecordLength (excluding itself),
    /// RecordKind, data. Other kinds are skipped by their length.
    static func symbols(in bytes: [UInt8], name: String, sections: [UInt32], problems: inout [String]) throws -> [FunctionSymbol] {
        var reader = ByteReader(bytes, name: name)
        var found: [FunctionSymbol] = []
        func rva(_ section: UInt16, _ offset: UInt32) -> UInt32? {
            guard section >= 1, Int(section) <= sections.count else { return nil }
            let (sum, overflow) = sections[Int(section) - 1].addingReportingOverflow(offset)
            return overflow ? nil : sum
        }
        while reader.remaining >= 4 {
            let start = reader.offset
            let length = Int(try reader.u16("a symbol record's length"))
            guard length >= 2 else { break }  // padding at the end of a stream
            var record = ByteReader(try reader.bytes(length, "a symbol record of 0x\(hex(length)) bytes"), name: "the symbol record at 0x\(hex(start)) of \(name)")
            let kind = try record.u16("the record kind")
            switch kind {
            case 0x110E:  // S_PUB32: Flags, Offset, Segment, Name
                let flags = try record.u32("S_PUB32 flags")
                let offset = try record.u32("S_PUB32 offset")
                let section = try record.u16("S_PUB32 segment")
                let symbolName = try record.cString()
                if flags & 0x3 != 0, let rva = rva(section, offset) { found.append(FunctionSymbol(rva: rva, size: nil, name: symbolName)) }
            case 0x110F, 0x1110:  // S_LPROC32, S_GPROC32: Parent, End, Next, CodeSize, DbgStart, DbgEnd, FunctionType, CodeOffset, Segment, Flags, Name
                try record.skip(12, "a procedure's parent, end and next")
                let size = try record.u32("a procedure's code size")
                try record.skip(12, "a procedure's debug range and type")
                let offset = try record.u32("a procedure's code offset")
                let section = try record.u16("a procedure's segment")
                _ = try record.u8("a procedure's flags")
                let symbolName = try record.cString()
                if let rva = rva(section, offset) { found.append(FunctionSymbol(rva: rva, size: size, name: symbolName)) }
            default:
                break
            }
        }
        if sections.isEmpty, !found.isEmpty {
            problems.append("\(name): no section headers, so its symbols' addresses are unknown")
            return []
        }
        return found
    }
}

/// A named function start in an image: an RVA and, for a procedure record, its size.
public struct FunctionSymbol: Sendable, Equatable {
    public var rva: UInt32
    public var size: UInt32?
    public var name: String

    public init(rva: UInt32, size: UInt32?, name: String) {
        self.rva = rva
        self.size = size
        self.name = name
    }
}

/// The DBI stream's 64-byte header and the streams it names.
struct DBIHeader {
    var symbolRecordStream: Int?
    var sectionHeaderStream: Int?
    var moduleStreams: [(stream: Int, symbolBytes: Int)] = []

    /// Header: VersionSignature (-1), VersionHeader, Age, GlobalStreamIndex, BuildNumber,
    /// PublicStreamIndex, PdbDllVersion, SymRecordStream, PdbDllRbld, then the sizes of the
    /// substreams that follow in order (ModInfo, SectionContribution, SectionMap, SourceInfo,
    /// TypeServerMap, MFCTypeServerIndex (not a size), OptionalDbgHeader, EC), Flags, Machine.
    /// The optional debug header's sixth stream index (index 5) is the section headers'.
    init(_ bytes: [UInt8]) throws {
        guard !bytes.isEmpty else { return }
        var reader = ByteReader(bytes, name: "the DBI stream")
        guard try reader.u32("the DBI signature") == 0xFFFF_FFFF else {
            throw SymbolFileError(.notASymbolFile, "the DBI stream does not start with the signature -1 of the VC 7.0 format")
        }
        try reader.skip(8, "the DBI version and age")
        _ = try reader.u16("the global symbol stream")
        _ = try reader.u16("the build number")
        _ = try reader.u16("the public symbol stream")
        _ = try reader.u16("the DLL version")
        symbolRecordStream = Self.stream(try reader.u16("the symbol record stream"))
        _ = try reader.u16("the DLL rebuild")
        var sizes: [Int] = []
        for what in ["module info", "section contribution", "section map", "source info", "type server map"] {
            let size = Int(Int32(bitPattern: try reader.u32("the \(what) size")))
            guard size >= 0 else { throw SymbolFileError(.corrupt, "the DBI \(what) substream size is \(size)") }
            sizes.append(size)
        }
        _ = try reader.u32("the MFC type server index")
        let optionalSize = Int(Int32(bitPattern: try reader.u32("the optional debug header size")))
        let ecSize = Int(Int32(bitPattern: try reader.u32("the EC substream size")))
        guard optionalSize >= 0, ecSize >= 0 else { throw SymbolFileError(.corrupt, "the DBI substream sizes are negative (\(optionalSize), \(ecSize))") }
        try reader.skip(8, "the DBI flags and machine")

        var modules = ByteReader(try reader.bytes(sizes[0], "the module info substream"), name: "the DBI module info")
        while modules.remaining >= 64 {
            // ModInfo: Unused, SectionContr (28), Flags, ModuleSymStream, SymByteSize, C11ByteSize,
            // C13ByteSize, SourceFileCount, Padding, Unused, SourceFileNameIndex, PdbFilePathNameIndex,
            // ModuleName, ObjFileName, padded to 4.
            try modules.skip(34, "a module's header")
            let stream = try modules.u16("a module's symbol stream")
            let symbolBytes = Int(try modules.u32("a module's symbol size"))
            try modules.skip(24, "the rest of a module's header")
            _ = try modules.cString("a module name")
            _ = try modules.cString("an object file name")
            modules.offset = min(modules.bytes.count, (modules.offset + 3) & ~3)
            if let stream = Self.stream(stream), symbolBytes >= 4 { moduleStreams.append((stream, symbolBytes)) }
        }
        try reader.skip(sizes[1...].reduce(0, +) + ecSize, "the DBI substreams before the optional debug header")
        var optional = ByteReader(try reader.bytes(optionalSize, "the optional debug header"), name: "the DBI optional debug header")
        if optional.remaining >= 12 {
            try optional.skip(10, "the FPO, exception, fixup, OMAP and OMAP streams")
            sectionHeaderStream = Self.stream(try optional.u16("the section header stream"))
        }
    }

    /// 0xFFFF means "no stream".
    static func stream(_ index: UInt16) -> Int? { index == 0xFFFF ? nil : Int(index) }
}
