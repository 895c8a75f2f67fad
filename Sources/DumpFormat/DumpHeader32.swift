/// The 32-bit "PAGEDUMP" header (0x1000 bytes), recognised so that `inspect` can say what the
/// file is; x86 dumps are not analysed.
public struct DumpHeader32: Sendable {
    public static let size: UInt64 = 0x1000

    public var majorVersion: UInt32
    public var buildNumber: UInt32
    public var directoryTableBase: UInt32
    public var machine: Machine
    public var numberProcessors: UInt32
    public var bugCheckCode: UInt32
    public var bugCheckParameters: [UInt64]
    public var paeEnabled: Bool
    public var kdDebuggerDataBlock: UInt32
    public var dumpType: DumpType
    public var requiredDumpSpace: UInt64
    public var systemUpTime: UInt64
    public var systemTime: UInt64
    public var comment: String?

    public init(parsing source: ByteSource) throws {
        guard source.count >= 8, try source.u32(at: 0) == 0x4547_4150, try source.u32(at: 4) == 0x504D_5544 else {
            throw DumpError(.notADump, "not a 32-bit Windows crash dump: signature is not PAGEDUMP", offset: 0)
        }
        let h = try source.record(at: 0, length: Self.size, "the 0x1000-byte 32-bit DUMP_HEADER")
        majorVersion = try h.u32(0x8)
        buildNumber = try h.u32(0xC)
        directoryTableBase = try h.u32(0x10)
        machine = Machine(rawValue: try h.u32(0x20))
        numberProcessors = try h.u32(0x24)
        bugCheckCode = try h.u32(0x28)
        bugCheckParameters = try [0x2C, 0x30, 0x34, 0x38].map { UInt64(try h.u32($0)) }
        paeEnabled = try h.u8(0x5C) != 0
        kdDebuggerDataBlock = try h.u32(0x60)
        dumpType = DumpType(rawValue: try h.u32(0xF88))
        requiredDumpSpace = try h.u64(0xFA0)
        systemUpTime = try h.u64(0xFB8)
        systemTime = try h.u64(0xFC0)
        comment = DumpHeader64.asciiUnlessFill(try h.bytes(0x820, 128))
    }
}
