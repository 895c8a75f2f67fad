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
        let infoAge = try info.u32("the PDB age")
        let guid = try info.bytes(16, "the PDB GUID")

        var problems: [String] = []
        let dbi = try DBIHeader(try msf.stream(3) ?? [])
        // The image's CodeView record carries the DBI stream's age; the info stream's may have
        // been raised since by tools that rewrote the PDB (Volatility keys ISF tables the same way).
        identity = PDBIdentity(guid: guid, age: dbi.age ?? infoAge, name: name)
        let sections = try Self.sections(dbi, msf, problems: &problems)
        var functions: [FunctionSymbol] = []
        var streams = dbi.moduleStreams.map { (stream: $0.stream, range: 4..<$0.symbolBytes, name: "module stream \($0.stream)") }
        if let stream = dbi.symbolRecordStream { streams.insert((stream, 0..<Int.max, "the symbol record stream"), at: 0) }
        for stream in streams {
            do {
                guard let bytes = try msf.stream(stream.stream) else { continue }
                // A module stream starts with its signature (4, CV_SIGNATURE_C13), then its records.
                let records = Array(bytes.prefix(stream.range.upperBound).dropFirst(stream.range.lowerBound))
                functions += try Self.symbols(in: records, name: stream.name, sections: sections, problems: &problems)
            } catch {
                problems.append("\(stream.name): \(error)")
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
            if types.damagedRecords > 0 { problems.append("the type stream: \(types.damagedRecords) records could not be read") }
        } catch {
            problems.append("the type stream: \(error)")
            types = CodeViewTypes.empty
        }
        self.problems = problems
    }

    /// Where each section starts, as symbols' section:offset pairs count them. An image that
    /// was rearranged after linking (OMAP: its PDB has an OmapFromSrc stream) keeps symbols in
    /// the original layout: their sections are the original ones (SectionHdrOrig), and the
    /// RVA they give is translated through OMAP (see `OMAP`).
    static func sections(_ dbi: DBIHeader, _ msf: MSFContainer, problems: inout [String]) throws -> Sections {
        if let omapStream = dbi.omapFromSource, let bytes = try msf.stream(omapStream), !bytes.isEmpty {
            guard let original = try dbi.originalSectionHeaderStream.flatMap({ try msf.stream($0) }) else {
                problems.append("the PDB maps addresses through OMAP but has no original section headers: its symbols' addresses are unknown")
                return Sections(starts: [], omap: nil)
            }
            return Sections(starts: try sectionAddresses(original), omap: try OMAP(bytes))
        }
        return Sections(starts: try dbi.sectionHeaderStream.flatMap { try msf.stream($0) }.map(sectionAddresses) ?? [], omap: nil)
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
    static func symbols(in bytes: [UInt8], name: String, sections: Sections, problems: inout [String]) throws -> [FunctionSymbol] {
        var reader = ByteReader(bytes, name: name)
        var found: [FunctionSymbol] = []
        func rva(_ section: UInt16, _ offset: UInt32) -> UInt32? { sections.rva(section: section, offset: offset) }
        while reader.remaining >= 4 {
            let start = reader.offset
            let length = Int(try reader.u16("a symbol record's length"))
            guard length >= 2 else { break }  // padding at the end of a stream
            var record = ByteReader(try reader.bytes(length, "a symbol record at 0x\(hex(start))"), name: name)
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
        if sections.starts.isEmpty, !found.isEmpty {
            problems.append("\(name): no section headers, so its symbols' addresses are unknown")
            return []
        }
        return found
    }
}

/// Section starts, and the OMAP that moves them, for turning section:offset into an RVA.
struct Sections {
    var starts: [UInt32]
    var omap: OMAP?

    func rva(section: UInt16, offset: UInt32) -> UInt32? {
        guard section >= 1, Int(section) <= starts.count else { return nil }
        let (sum, overflow) = starts[Int(section) - 1].addingReportingOverflow(offset)
        guard !overflow else { return nil }
        return omap.map { $0.translate(sum) } ?? sum
    }
}

/// An OMAP table (OmapFromSrc): pairs of (RVA before, RVA after) sorted by the first, which
/// map each run of original addresses to where the rearranged image holds it; a run mapped to
/// 0 was dropped.
struct OMAP {
    var entries: [(from: UInt32, to: UInt32)]

    init(_ bytes: [UInt8]) throws {
        var reader = ByteReader(bytes, name: "the OMAP stream")
        var entries: [(from: UInt32, to: UInt32)] = []
        while reader.remaining >= 8 { entries.append((try reader.u32("an OMAP source"), try reader.u32("an OMAP target"))) }
        self.entries = entries.sorted { $0.from < $1.from }
    }

    func translate(_ rva: UInt32) -> UInt32? {
        var low = 0, high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].from <= rva { low = middle + 1 } else { high = middle }
        }
        guard low > 0, entries[low - 1].to != 0 else { return nil }
        let (sum, overflow) = entries[low - 1].to.addingReportingOverflow(rva - entries[low - 1].from)
        return overflow ? nil : sum
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
    var age: UInt32?
    var symbolRecordStream: Int?
    var sectionHeaderStream: Int?
    var omapFromSource: Int?
    var originalSectionHeaderStream: Int?
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
        try reader.skip(4, "the DBI version")
        age = try reader.u32("the DBI age")
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
        // Stream indices: FPO, Exception, Fixup, OmapToSrc, OmapFromSrc, SectionHdr,
        // TokenRidMap, Xdata, Pdata, NewFPO, SectionHdrOrig.
        var indices: [Int?] = []
        while optional.remaining >= 2 { indices.append(Self.stream(try optional.u16("an optional debug stream"))) }
        omapFromSource = indices.count > 4 ? indices[4] : nil
        sectionHeaderStream = indices.count > 5 ? indices[5] : nil
        originalSectionHeaderStream = indices.count > 10 ? indices[10] : nil
    }

    /// 0xFFFF means "no stream".
    static func stream(_ index: UInt16) -> Int? { index == 0xFFFF ? nil : Int(index) }
}
