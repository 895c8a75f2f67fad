/// DUMP_HEADER64: the first 0x2000 bytes of every 64-bit Windows kernel dump ("PAGEDU64").
///
/// Windows fills every field it does not set with the ASCII pattern "PAGE" (0x45474150), so a
/// run count of 0x45474150 means "this is not a run-based dump" and a comment full of "PAGE" means
/// "no comment". Fields that are often unset are optionals here; `nil` means the fill pattern.
public struct DumpHeader64: Sendable {
    public static let size: UInt64 = 0x2000
    public static let fill32: UInt32 = 0x4547_4150  // "PAGE"

    public var majorVersion: UInt32
    /// MinorVersion is the OS build number (19041, 22000, ...).
    public var buildNumber: UInt32
    /// Kernel CR3 at crash time, as written (PCID bits included).
    public var directoryTableBase: UInt64
    /// Address of the variable nt!MmPfnDatabase (not the array).
    public var pfnDataBase: UInt64
    public var psLoadedModuleList: UInt64
    public var psActiveProcessHead: UInt64
    public var machine: Machine
    public var numberProcessors: UInt32
    public var bugCheckCode: UInt32
    public var bugCheckParameters: [UInt64]
    /// VersionUser (0x60, 32 bytes): a writer's free-form version text, normally the fill.
    public var versionUser: String?
    public var kdDebuggerDataBlock: UInt64
    /// The run table of a full (DumpType 1) dump; nil for other types, where the field is
    /// meaningless (normally the "PAGE" fill), or when a full dump's field holds the fill.
    public var physicalMemoryBlock: PhysicalMemoryDescriptor?
    /// The crashing CPU's CONTEXT (x64 layout; ARM64 dumps hold an ARM64 CONTEXT instead).
    public var context: Context64
    public var exception: ExceptionRecord64
    public var dumpType: DumpType
    public var requiredDumpSpace: UInt64
    /// FILETIME: 100 ns units since 1601-01-01 UTC.
    public var systemTime: UInt64
    public var comment: String?
    /// 100 ns units since boot.
    public var systemUpTime: UInt64
    public var miniDumpFields: UInt32?
    public var secondaryDataState: UInt32?
    public var productType: UInt32?
    public var suiteMask: UInt32?
    public var writerStatus: UInt32?
    public var kdSecondaryVersion: UInt8
    public var attributes: UInt32?
    public var bootId: UInt32?

    /// The header's DTB with the PCID bits (0-11) and bit 63 cleared.
    public var kernelDirectoryTableBase: UInt64 { directoryTableBase & 0x000F_FFFF_FFFF_F000 }

    /// The header a capture without one stands for (a hypervisor's ELF core of the guest): the
    /// facts found in the guest's memory, no bug check, and the first CPU's registers.
    public init(capturedBuild buildNumber: UInt32, directoryTableBase: UInt64, debuggerDataBlock: UInt64, psLoadedModuleList: UInt64,
                psActiveProcessHead: UInt64, processors: UInt32, context: Context64, systemTime: UInt64, systemUpTime: UInt64) {
        majorVersion = 0xF
        self.buildNumber = buildNumber
        self.directoryTableBase = directoryTableBase
        pfnDataBase = 0
        self.psLoadedModuleList = psLoadedModuleList
        self.psActiveProcessHead = psActiveProcessHead
        machine = .amd64
        numberProcessors = processors
        bugCheckCode = 0
        bugCheckParameters = [0, 0, 0, 0]
        versionUser = nil
        kdDebuggerDataBlock = debuggerDataBlock
        physicalMemoryBlock = nil
        self.context = context
        exception = .none
        dumpType = .full
        requiredDumpSpace = 0
        self.systemTime = systemTime
        comment = nil
        self.systemUpTime = systemUpTime
        miniDumpFields = nil
        secondaryDataState = nil
        productType = nil
        suiteMask = nil
        writerStatus = nil
        kdSecondaryVersion = 0
        attributes = nil
        bootId = nil
    }

    /// Parses the header at offset 0. Throws `.notADump` unless the file starts with "PAGEDU64".
    public init(parsing source: ByteSource) throws {
        guard source.count >= 8, try source.u32(at: 0) == 0x4547_4150 else {
            throw DumpError(.notADump, "not a Windows crash dump: the file does not start with \"PAGE\"", offset: 0)
        }
        guard try source.u32(at: 4) == 0x3436_5544 else {  // "DU64"
            throw DumpError(.notADump, "not a 64-bit Windows crash dump: signature is not PAGEDU64", offset: 4)
        }
        let h = try source.record(at: 0, length: Self.size, "the 0x2000-byte DUMP_HEADER64")
        majorVersion = try h.u32(0x8)
        buildNumber = try h.u32(0xC)
        directoryTableBase = try h.u64(0x10)
        pfnDataBase = try h.u64(0x18)
        psLoadedModuleList = try h.u64(0x20)
        psActiveProcessHead = try h.u64(0x28)
        machine = Machine(rawValue: try h.u32(0x30))
        numberProcessors = try h.u32(0x34)
        bugCheckCode = try h.u32(0x38)
        bugCheckParameters = try [0x40, 0x48, 0x50, 0x58].map { try h.u64($0) }
        versionUser = Self.asciiUnlessFill(try h.bytes(0x60, 32))
        kdDebuggerDataBlock = try h.u64(0x80)
        dumpType = DumpType(rawValue: try h.u32(0xF98))
        physicalMemoryBlock = dumpType == .full ? try PhysicalMemoryDescriptor(parsing: h, at: 0x88) : nil
        context = try Context64(parsing: h, at: 0x348)
        exception = try ExceptionRecord64(parsing: h, at: 0xF00)
        requiredDumpSpace = try h.u64(0xFA0)
        systemTime = try h.u64(0xFA8)
        comment = Self.asciiUnlessFill(try h.bytes(0xFB0, 128))
        systemUpTime = try h.u64(0x1030)
        let optional = { (field: UInt64) throws -> UInt32? in
            let value = try h.u32(field)
            return value == Self.fill32 ? nil : value
        }
        miniDumpFields = try optional(0x1038)
        secondaryDataState = try optional(0x103C)
        productType = try optional(0x1040)
        suiteMask = try optional(0x1044)
        writerStatus = try optional(0x1048)
        kdSecondaryVersion = try h.u8(0x104D)
        attributes = try optional(0x1050)
        bootId = try optional(0x1054)
    }

    /// A NUL-terminated ASCII comment, or nil when the field holds only the "PAGE" fill.
    static func asciiUnlessFill(_ bytes: [UInt8]) -> String? {
        let text = bytes.prefix { $0 != 0 }
        if text.isEmpty || Array(text.prefix(4)) == Array("PAGE".utf8) { return nil }
        return String(decoding: text.map { (0x20...0x7E).contains($0) ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
    }
}

/// PHYSICAL_MEMORY_DESCRIPTOR64 (header 0x88): the physical page runs of a DumpType 1 file.
public struct PhysicalMemoryDescriptor: Sendable, Equatable {
    public struct Run: Sendable, Equatable {
        public var basePage: UInt64
        public var pageCount: UInt64
    }

    /// The 700-byte buffer has room for 42 runs ((700 - 16) / 16).
    public static let maximumRuns = 42

    public var numberOfPages: UInt64
    public var runs: [Run]

    /// Returns nil when NumberOfRuns holds the "PAGE" fill; throws when the count cannot fit.
    init?(parsing header: Record, at offset: UInt64) throws {
        let runCount = try header.u32(offset)
        if runCount == DumpHeader64.fill32 { return nil }
        guard runCount <= Self.maximumRuns else {
            throw DumpError(.corrupt, "PHYSICAL_MEMORY_DESCRIPTOR64 claims \(runCount) runs; at most \(Self.maximumRuns) fit in the header", offset: offset)
        }
        numberOfPages = try header.u64(offset + 8)
        runs = try (0..<UInt64(runCount)).map { index in
            let entry = offset + 0x10 + 0x10 * index
            return Run(basePage: try header.u64(entry), pageCount: try header.u64(entry + 8))
        }
    }
}
