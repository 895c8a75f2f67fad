import DumpFormat
import DumpMemory
import SymbolFiles

// A PE32+ image as the loader mapped it in kernel memory: every section sits at its RVA, so a
// field at RVA r is read at base + r. Nothing here trusts the image: every count and offset
// taken from it is bounded before it drives a read, and a read of an absent page surfaces as
// the address space's `MemoryError`, unchanged, so a caller can tell "paged out" from "corrupt".

/// RUNTIME_FUNCTION: one entry of .pdata (the exception directory), all fields RVAs.
public struct RuntimeFunction: Sendable, Equatable, Hashable {
    public var beginAddress: UInt32
    /// One past the function's last byte.
    public var endAddress: UInt32
    /// RVA of the UNWIND_INFO. Bit 0 set means "indirect": the RVA (minus that bit) of another
    /// RUNTIME_FUNCTION that holds the unwind data (`ExceptionTable` resolves these).
    public var unwindData: UInt32

    public static let size = 12

    public init(beginAddress: UInt32, endAddress: UInt32, unwindData: UInt32) {
        self.beginAddress = beginAddress
        self.endAddress = endAddress
        self.unwindData = unwindData
    }

    /// Decodes 12 little-endian bytes starting at `offset` of `bytes`.
    init(_ bytes: [UInt8], at offset: Int) {
        beginAddress = PEBytes.u32(bytes, offset)
        endAddress = PEBytes.u32(bytes, offset + 4)
        unwindData = PEBytes.u32(bytes, offset + 8)
    }

    public func contains(_ rva: UInt32) -> Bool { beginAddress <= rva && rva < endAddress }
}

/// The .pdata array of one image: where it lies and how many entries it holds. It can come from
/// the PE headers (data directory 3) or from KLDR_DATA_TABLE_ENTRY.ExceptionTable and
/// ExceptionTableSize, which lets a module whose header page is paged out still be unwound.
public struct ExceptionTable: Sendable, Equatable {
    /// The image base every RVA in the table is relative to.
    public let imageBase: UInt64
    /// Virtual address of the first RUNTIME_FUNCTION.
    public let address: UInt64
    public let count: Int

    /// No real image comes near this (ntoskrnl has some 40,000 functions); a larger table is
    /// taken for garbage rather than searched.
    public static let maximumEntries = 1 << 22

    /// - Parameters:
    ///   - imageBase: the module's DllBase.
    ///   - address: the table's virtual address (KLDR ExceptionTable, or base + directory RVA).
    ///   - size: the table's size in bytes; a partial trailing entry is ignored.
    public init(imageBase: UInt64, address: UInt64, size: UInt32) throws {
        let count = Int(size) / RuntimeFunction.size
        guard count <= Self.maximumEntries else {
            throw DumpError(.corrupt, "the exception table at 0x\(hex(address)) claims \(count) RUNTIME_FUNCTION entries (0x\(hex(size)) bytes); at most \(Self.maximumEntries) are accepted")
        }
        guard address % 4 == 0 else {
            throw DumpError(.corrupt, "the exception table at 0x\(hex(address)) is not DWORD aligned")
        }
        let (_, overflow) = address.addingReportingOverflow(UInt64(count) * UInt64(RuntimeFunction.size))
        guard !overflow else { throw DumpError(.corrupt, "the exception table at 0x\(hex(address)) runs past the end of the address space") }
        self.imageBase = imageBase
        self.address = address
        self.count = count
    }

    /// Entry `index` (0 ..< count), read from memory.
    public func entry(_ index: Int, in space: any KernelAddressSpace) throws -> RuntimeFunction {
        precondition(index >= 0 && index < count, "RUNTIME_FUNCTION index out of range")
        let bytes = try space.read(address &+ UInt64(index) &* UInt64(RuntimeFunction.size), count: RuntimeFunction.size)
        return RuntimeFunction(bytes, at: 0)
    }

    /// The function whose [BeginAddress, EndAddress) holds `rva`, or nil when none does (a
    /// leaf function, or an address outside any function). The table is sorted by BeginAddress,
    /// so this binary-searches it for the last entry beginning at or below `rva`, reading about
    /// log2(count) entries.
    ///
    /// Ranges should not overlap, but LLVM's assembler gives a function with a chained fragment
    /// (.seh_startchained) the whole procedure's range, the fragment's included. The innermost
    /// entry is the right one there (the fragment's codes, then its parent's), so when the last
    /// entry beginning below `rva` ends before it, the few before it are tried too.
    ///
    /// An indirect entry (UnwindData bit 0 set) is replaced by the entry it points to, one level
    /// deep, as Windows' own lookup does; a second indirection is reported as corrupt.
    public func runtimeFunction(containing rva: UInt32, in space: any KernelAddressSpace) throws -> RuntimeFunction? {
        var low = 0, high = count  // the first entry beginning above rva is in [low, high]
        while low < high {
            let middle = low + (high - low) / 2
            if try entry(middle, in: space).beginAddress <= rva { low = middle + 1 } else { high = middle }
        }
        for index in stride(from: low - 1, through: max(0, low - Self.overlapsTried), by: -1) {
            let function = try entry(index, in: space)
            if rva < function.endAddress { return try resolveIndirect(function, in: space) }
        }
        return nil
    }

    /// How many entries before the last one beginning below an address may still cover it.
    static let overlapsTried = 4

    private func resolveIndirect(_ function: RuntimeFunction, in space: any KernelAddressSpace) throws -> RuntimeFunction {
        guard function.unwindData & 1 != 0 else { return function }
        let target = imageBase &+ UInt64(function.unwindData & ~1)
        let resolved = RuntimeFunction(try space.read(target, count: RuntimeFunction.size), at: 0)
        guard resolved.unwindData & 1 == 0 else {
            throw DumpError(.corrupt, "the RUNTIME_FUNCTION at 0x\(hex(target)) is indirect twice over")
        }
        return resolved
    }
}

/// A PE32+ (x64) image mapped in kernel memory: the header facts symbol servers key on, the
/// sections, and the export and exception directories.
public struct PEImage: Sendable {
    public struct Section: Sendable, Equatable {
        /// Up to 8 bytes, NUL padding removed.
        public var name: String
        public var virtualAddress: UInt32
        public var virtualSize: UInt32
        public var characteristics: UInt32

        public init(name: String, virtualAddress: UInt32, virtualSize: UInt32, characteristics: UInt32) {
            self.name = name
            self.virtualAddress = virtualAddress
            self.virtualSize = virtualSize
            self.characteristics = characteristics
        }
    }

    /// IMAGE_DATA_DIRECTORY.
    public struct DataDirectory: Sendable, Equatable {
        public var virtualAddress: UInt32
        public var size: UInt32

        public init(virtualAddress: UInt32, size: UInt32) {
            self.virtualAddress = virtualAddress
            self.size = size
        }
    }

    /// A named export; ordinal-only exports and forwarders are left out.
    public struct Export: Sendable, Equatable {
        public var name: String
        public var rva: UInt32

        public init(name: String, rva: UInt32) {
            self.name = name
            self.rva = rva
        }
    }

    public let base: UInt64
    public let sizeOfImage: UInt32
    /// IMAGE_FILE_HEADER.TimeDateStamp (a build hash for reproducible Microsoft builds).
    public let timeDateStamp: UInt32
    public let checkSum: UInt32
    public let sections: [Section]
    /// Data directory 0, or nil when absent (zero RVA or size, or not among NumberOfRvaAndSizes).
    public let exportDirectory: DataDirectory?
    /// Data directory 3 (.pdata), or nil when absent.
    public let exceptionDirectory: DataDirectory?
    /// Data directory 6: IMAGE_DEBUG_DIRECTORY entries.
    public let debugDirectory: DataDirectory?

    /// Limits on header fields; anything past them is treated as corruption, not read.
    public static let maximumHeaderOffset: UInt32 = 0x1000
    public static let maximumSections = 96
    public static let maximumDirectories: UInt32 = 16
    public static let maximumExports = 65536
    public static let maximumNameLength = 256

    /// Reads and validates the headers of the image mapped at `base`.
    ///
    /// Throws `DumpError(.corrupt)` when the headers are not those of a PE32+ x64 image, and
    /// lets the address space's `MemoryError` through when a header page cannot be read.
    public init(reading space: any KernelAddressSpace, base: UInt64) throws {
        let dos = try space.read(base, count: 0x40)
        guard dos[0] == 0x4D, dos[1] == 0x5A else {
            throw DumpError(.corrupt, "no MZ signature at 0x\(hex(base)) (found \(hexBytes(dos[0..<2])))")
        }
        let peOffset = PEBytes.u32(dos, 0x3C)  // e_lfanew
        guard peOffset < Self.maximumHeaderOffset else {
            throw DumpError(.corrupt, "e_lfanew of the image at 0x\(hex(base)) is 0x\(hex(peOffset)), beyond the 0x\(hex(Self.maximumHeaderOffset)) accepted")
        }
        let peAddress = base &+ UInt64(peOffset)
        // "PE\0\0" (4) + IMAGE_FILE_HEADER (20), then the optional header up to its directories (112).
        let head = try space.read(peAddress, count: 24)
        guard head[0..<4].elementsEqual([0x50, 0x45, 0, 0]) else {
            throw DumpError(.corrupt, "no PE signature at 0x\(hex(peAddress)) (found \(hexBytes(head[0..<4])))")
        }
        let machine = PEBytes.u16(head, 4)
        guard machine == 0x8664 else {
            throw DumpError(.corrupt, "the image at 0x\(hex(base)) is for machine 0x\(hex(machine)), not x64 (0x8664)")
        }
        let sectionCount = Int(PEBytes.u16(head, 6))
        guard sectionCount <= Self.maximumSections else {
            throw DumpError(.corrupt, "the image at 0x\(hex(base)) claims \(sectionCount) sections; at most \(Self.maximumSections) are accepted")
        }
        let timeDateStamp = PEBytes.u32(head, 8)
        let optionalSize = Int(PEBytes.u16(head, 20))  // SizeOfOptionalHeader
        let optional = 24
        let fixed = try space.read(peAddress &+ UInt64(optional), count: 112)
        let magic = PEBytes.u16(fixed, 0)
        guard magic == 0x20B else {
            throw DumpError(.corrupt, "the optional header of the image at 0x\(hex(base)) has magic 0x\(hex(magic)), not PE32+ (0x20b)")
        }
        let sizeOfImage = PEBytes.u32(fixed, 56)
        let checkSum = PEBytes.u32(fixed, 64)
        let directoryCount = PEBytes.u32(fixed, 108)  // NumberOfRvaAndSizes
        guard directoryCount <= Self.maximumDirectories else {
            throw DumpError(.corrupt, "the image at 0x\(hex(base)) claims \(directoryCount) data directories; PE32+ defines \(Self.maximumDirectories)")
        }
        guard optionalSize >= 112 + 8 * Int(directoryCount) else {
            throw DumpError(.corrupt, "the optional header of the image at 0x\(hex(base)) is 0x\(hex(optionalSize)) bytes, too short for its \(directoryCount) data directories")
        }
        guard sizeOfImage > 0 else {
            throw DumpError(.corrupt, "the image at 0x\(hex(base)) has a SizeOfImage of 0")
        }
        let headersEnd = UInt64(peOffset) + UInt64(optional + optionalSize + 40 * sectionCount)
        guard headersEnd <= UInt64(sizeOfImage) else {
            throw DumpError(.corrupt, "the headers of the image at 0x\(hex(base)) (0x\(hex(headersEnd)) bytes) do not fit its SizeOfImage 0x\(hex(sizeOfImage))")
        }

        let directories = directoryCount == 0 ? [] : try space.read(peAddress &+ UInt64(optional + 112), count: 8 * Int(directoryCount))
        func directory(_ index: Int) -> DataDirectory? {
            guard index < Int(directoryCount) else { return nil }
            let entry = DataDirectory(virtualAddress: PEBytes.u32(directories, 8 * index), size: PEBytes.u32(directories, 8 * index + 4))
            return entry.virtualAddress == 0 || entry.size == 0 ? nil : entry
        }

        var sections: [Section] = []
        if sectionCount > 0 {
            let table = try space.read(peAddress &+ UInt64(optional + optionalSize), count: 40 * sectionCount)
            for index in 0..<sectionCount {
                let at = 40 * index
                let rawName = table[at..<at + 8]
                let name = String(decoding: rawName.prefix { $0 != 0 }, as: UTF8.self)
                sections.append(Section(name: name, virtualAddress: PEBytes.u32(table, at + 12), virtualSize: PEBytes.u32(table, at + 8),
                                        characteristics: PEBytes.u32(table, at + 36)))
            }
        }

        self.base = base
        self.sizeOfImage = sizeOfImage
        self.timeDateStamp = timeDateStamp
        self.checkSum = checkSum
        self.sections = sections
        self.exportDirectory = directory(0)
        self.exceptionDirectory = directory(3)
        self.debugDirectory = directory(6)
    }

    // MARK: Debug directory

    /// IMAGE_DEBUG_DIRECTORY entries are 28 bytes; Type is at +12. Images carry a handful
    /// (CodeView, POGO, REPRO, ...); more than this is corruption.
    public static let maximumDebugEntries = 64
    /// IMAGE_DEBUG_TYPE_REPRO: the image was linked reproducibly (/Brepro), and its
    /// TimeDateStamp is a hash of the build, not a time.
    public static let debugTypeReproducible: UInt32 = 16

    /// The Type of each debug directory entry; empty when the image has no debug directory.
    /// Throws `MemoryError` when the directory's page is absent.
    public func debugEntryTypes(in space: any KernelAddressSpace) throws -> [UInt32] {
        guard let debugDirectory else { return [] }
        let count = Int(debugDirectory.size / 28)
        guard count <= Self.maximumDebugEntries, UInt64(debugDirectory.virtualAddress) + UInt64(debugDirectory.size) <= UInt64(sizeOfImage) else {
            throw DumpError(.corrupt, "the debug directory of the image at 0x\(hex(base)) (0x\(hex(debugDirectory.size)) bytes at RVA 0x\(hex(debugDirectory.virtualAddress))) does not fit the image")
        }
        let entries = try space.read(base &+ UInt64(debugDirectory.virtualAddress), count: 28 * count)
        return (0..<count).map { PEBytes.u32(entries, 28 * $0 + 12) }
    }

    /// The PDB the image was built with, from its CodeView (type 2) debug entry: "RSDS", the
    /// PDB's GUID and Age, its path (AddressOfRawData at +20, SizeOfData at +16 of the entry).
    /// Nil when the image has none; throws when the record's pages are absent or it is damaged.
    public func pdbIdentity(in space: any KernelAddressSpace) throws -> PDBIdentity? {
        guard let debugDirectory, let index = try debugEntryTypes(in: space).firstIndex(of: 2) else { return nil }
        let entry = try space.read(base &+ UInt64(debugDirectory.virtualAddress) &+ UInt64(28 * index), count: 28)
        let size = PEBytes.u32(entry, 16), rva = PEBytes.u32(entry, 20)
        guard size >= 24, rva != 0, UInt64(rva) + UInt64(size) <= UInt64(sizeOfImage) else {
            throw DumpError(.corrupt, "the CodeView record of the image at 0x\(hex(base)) (0x\(hex(size)) bytes at RVA 0x\(hex(rva))) does not fit the image")
        }
        // A path longer than Windows' MAX_PATH is cut; the file name is what a store keys by.
        return try PDBIdentity(codeViewRecord: try space.read(base &+ UInt64(rva), count: Int(min(size, 24 + 260))))
    }

    /// The section holding `rva`, if any.
    public func section(containing rva: UInt32) -> Section? {
        sections.first { rva >= $0.virtualAddress && UInt64(rva) < UInt64($0.virtualAddress) + UInt64($0.virtualSize) }
    }

    // MARK: Exports

    /// The named exports, sorted by RVA (then name). Forwarders (whose address lies inside the
    /// export directory and names another DLL's function) are skipped, as are names whose
    /// ordinal points outside the address table. Names longer than 256 bytes are cut there.
    ///
    /// Throws `DumpError(.corrupt)` when the directory's counts cannot fit its size or pass
    /// 65,536, or when it lies outside the image; `MemoryError` when its pages are absent.
    public func exports(in space: any KernelAddressSpace) throws -> [Export] {
        guard let directory = exportDirectory else { return [] }
        try checkInside(directory, "export directory")
        guard directory.size >= 40 else {
            throw DumpError(.corrupt, "the export directory of the image at 0x\(hex(base)) is 0x\(hex(directory.size)) bytes, smaller than its 40-byte header")
        }
        let header = try space.read(base &+ UInt64(directory.virtualAddress), count: 40)
        let functionCount = PEBytes.u32(header, 20)
        let nameCount = PEBytes.u32(header, 24)
        let functionsRVA = PEBytes.u32(header, 28)
        let namesRVA = PEBytes.u32(header, 32)
        let ordinalsRVA = PEBytes.u32(header, 36)
        // Every table lives inside the directory: 4 bytes per address, 4 + 2 per name.
        guard functionCount <= UInt32(Self.maximumExports), nameCount <= UInt32(Self.maximumExports),
              UInt64(functionCount) * 4 + UInt64(nameCount) * 6 <= UInt64(directory.size) else {
            throw DumpError(.corrupt, "the export directory of the image at 0x\(hex(base)) claims \(functionCount) functions and \(nameCount) names, which do not fit its 0x\(hex(directory.size)) bytes")
        }
        guard nameCount > 0, functionCount > 0 else { return [] }
        try checkInside(DataDirectory(virtualAddress: functionsRVA, size: functionCount * 4), "export address table")
        try checkInside(DataDirectory(virtualAddress: namesRVA, size: nameCount * 4), "export name table")
        try checkInside(DataDirectory(virtualAddress: ordinalsRVA, size: nameCount * 2), "export ordinal table")

        let addresses = try space.read(base &+ UInt64(functionsRVA), count: Int(functionCount) * 4)
        let names = try space.read(base &+ UInt64(namesRVA), count: Int(nameCount) * 4)
        let ordinals = try space.read(base &+ UInt64(ordinalsRVA), count: Int(nameCount) * 2)
        let directoryRange = UInt64(directory.virtualAddress)..<UInt64(directory.virtualAddress) + UInt64(directory.size)

        var exports: [Export] = []
        for index in 0..<Int(nameCount) {
            let slot = Int(PEBytes.u16(ordinals, 2 * index))
            guard slot < Int(functionCount) else { continue }
            let rva = PEBytes.u32(addresses, 4 * slot)
            guard rva != 0, !directoryRange.contains(UInt64(rva)) else { continue }  // unused slot or forwarder
            let nameRVA = PEBytes.u32(names, 4 * index)
            guard nameRVA < sizeOfImage else { continue }
            let name = try peCString(at: base &+ UInt64(nameRVA), limit: Self.maximumNameLength, in: space)
            guard !name.isEmpty else { continue }
            exports.append(Export(name: name, rva: rva))
        }
        exports.sort { $0.rva != $1.rva ? $0.rva < $1.rva : $0.name < $1.name }
        return exports
    }

    /// Throws unless [rva, rva + size) lies inside the image.
    private func checkInside(_ range: DataDirectory, _ what: String) throws {
        guard UInt64(range.virtualAddress) + UInt64(range.size) <= UInt64(sizeOfImage) else {
            throw DumpError(.corrupt, "the \(what) of the image at 0x\(hex(base)) (RVA 0x\(hex(range.virtualAddress)), 0x\(hex(range.size)) bytes) lies outside its SizeOfImage 0x\(hex(sizeOfImage))")
        }
    }

    // MARK: Exception directory

    /// The image's .pdata as the headers describe it, or nil when it has none.
    public func exceptionTable() throws -> ExceptionTable? {
        guard let directory = exceptionDirectory else { return nil }
        try checkInside(directory, "exception directory")
        return try ExceptionTable(imageBase: base, address: base &+ UInt64(directory.virtualAddress), size: directory.size)
    }

    /// The RUNTIME_FUNCTION covering `rva`, or nil for a leaf function or an image without .pdata.
    public func runtimeFunction(containing rva: UInt32, in space: any KernelAddressSpace) throws -> RuntimeFunction? {
        try exceptionTable()?.runtimeFunction(containing: rva, in: space)
    }

    /// .pdata located from outside the headers (KLDR_DATA_TABLE_ENTRY.ExceptionTable and
    /// ExceptionTableSize), for a module whose header page is not in the dump.
    public static func exceptionTable(imageBase: UInt64, exceptionTable address: UInt64, size: UInt32) throws -> ExceptionTable {
        try ExceptionTable(imageBase: imageBase, address: address, size: size)
    }
}

// MARK: - Little helpers

/// A NUL-terminated string of at most `limit` bytes at `va`, read page by page so that a short
/// name just before an absent page is still read. Stops at `limit` without a NUL.
func peCString(at va: UInt64, limit: Int, in space: any KernelAddressSpace) throws -> String {
    var bytes: [UInt8] = []
    var address = va
    while bytes.count < limit {
        let toPageEnd = Int(0x1000 - (address & 0xFFF))
        let chunk = try space.read(address, count: min(toPageEnd, limit - bytes.count))
        if let end = chunk.firstIndex(of: 0) {
            bytes += chunk[..<end]
            return String(decoding: bytes, as: UTF8.self)
        }
        bytes += chunk
        address &+= UInt64(chunk.count)
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Little-endian loads from byte arrays read out of an image (callers check the bounds).
enum PEBytes {
    static func u16(_ bytes: [UInt8], _ offset: Int) -> UInt16 {
        UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8
    }

    static func u32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(u16(bytes, offset)) | UInt32(u16(bytes, offset + 2)) << 16
    }
}

private func hexBytes(_ bytes: ArraySlice<UInt8>) -> String {
    bytes.map { $0 < 0x10 ? "0" + hex($0) : hex($0) }.joined(separator: " ")
}
