import DumpFormat
import DumpForge
import Testing
import TestSupport

@Suite struct DumpHeaderTests {
    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapFull, .bitmapKernel, .triage, .rangeKernel, .rangeKernelAndUser, .rangeComplete])
    func headerRoundTrips(kind: DumpDescription.DumpKind) throws {
        var description = DumpDescription.standard(kind: kind)
        description.memory = [0x1..<0x9F, 0x100..<0x4000]
        description.bugCheckCode = 0x1000_007E
        description.bugCheckParameters = [0xC000_0005, 0xFFFF_F800_1234_5678, 0xFFFF_A000_0000_1000, 0xFFFF_A000_0000_2000]
        description.processors = 3
        description.comment = "forced by virsh inject-nmi"
        let dump = Forge.dump(description)
        let header = try DumpHeader64(parsing: Fixtures.source(dump))

        #expect(header.buildNumber == 19041)
        #expect(header.majorVersion == 0xF)
        #expect(header.machine == .amd64)
        #expect(header.numberProcessors == 3)
        #expect(header.bugCheckCode == 0x1000_007E)
        #expect(header.bugCheckParameters == dump.kernel.bugCheckParameters)
        #expect(dump.kernel.bugCheckParameters == [0xC000_0005, 0xFFFF_F800_1234_5678, 0xFFFF_A000_0000_1000, 0xFFFF_A000_0000_2000])
        #expect(header.kernelDirectoryTableBase == dump.kernel.directoryTableBase)
        #expect(header.directoryTableBase & 0xFFF != 0, "the forge sets PCID bits that readers must mask")
        #expect(header.psLoadedModuleList == dump.kernel.psLoadedModuleList)
        #expect(header.psActiveProcessHead == dump.kernel.psActiveProcessHead)
        #expect(header.kdDebuggerDataBlock == dump.kernel.debuggerDataBlock)
        #expect(header.systemTime == description.systemTime)
        #expect(header.systemUpTime == description.systemUpTime)
        #expect(header.comment == "forced by virsh inject-nmi")
        #expect(header.exception.code == 0x8000_0003)
        #expect(header.context.rip == dump.kernel.processors[0].context.rip)
        #expect(header.context.rsp == dump.kernel.processors[0].context.rsp)
        #expect(header.context.segCs == 0x10)
        #expect(header.productType == 1)
        #expect(header.suiteMask == 0x110)
        #expect(header.bootId == nil, "unset fields hold the PAGE fill")
        switch kind {
        case .full:
            #expect(header.dumpType == .full)
            #expect(header.physicalMemoryBlock?.runs.count == 2)
            #expect(header.physicalMemoryBlock?.numberOfPages == 0x9E + 0x3F00)
        case .bitmapFull, .bitmapKernel:
            #expect(header.dumpType == (kind == .bitmapFull ? .bitmapFull : .bitmapKernel))
            #expect(header.physicalMemoryBlock == nil)
            let bitmap = try BitmapDumpHeader(parsing: Fixtures.source(dump))
            #expect(bitmap.signature == (kind == .bitmapFull ? "FDMP" : "SDMP"))
            #expect(bitmap.bitCount >= 0x4000)
        case .triage:
            #expect(header.dumpType == .triage)
            #expect(header.miniDumpFields == 0xCFF)
        case .rangeKernel, .rangeKernelAndUser, .rangeComplete:
            let expected: DumpType = kind == .rangeKernel ? .rangeKernel : kind == .rangeKernelAndUser ? .rangeKernelAndUser : .rangeComplete
            #expect(header.dumpType == expected)
            let ranges = try RangeDumpHeader(parsing: Fixtures.source(dump), type: header.dumpType)
            let pages = ranges.ranges.reduce(0) { $0 + $1.pageCount }
            // Every stored page is in the file, and the ranges are sorted and apart.
            #expect(ranges.firstPageOffset + pages * 0x1000 == dump.size)
            #expect(zip(ranges.ranges, ranges.ranges.dropFirst()).allSatisfy { $0.basePage + $0.pageCount < $1.basePage })
            if kind == .rangeComplete {
                #expect(ranges.ranges.map { [$0.basePage, $0.pageCount] } == [[0x1, 0x9E], [0x100, 0x3F00]])
                #expect(ranges.firstPageOffset % 0x1000 == 0)
            } else {
                #expect(pages < 0x9E + 0x3F00, "a kernel range dump leaves out free pages")
            }
        }
    }

    @Test func bugCheckNamesMaskTheFlag() {
        #expect(BugCheck(rawCode: 0x1000_007E, parameters: []).name == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED")
        #expect(BugCheck(rawCode: 0x3B, parameters: []).name == "SYSTEM_SERVICE_EXCEPTION")
        #expect(BugCheck(rawCode: 0x1234, parameters: []).name == nil)
    }

    @Test func fileTimesBecomeDates() {
        #expect(FileTime.text(133_537_968_000_000_000) == "2024-03-01 20:00:00 UTC")
        #expect(FileTime.text(0) == nil)
        #expect(FileTime.iso8601(unixSeconds: 0x5F6A_9000) == "2020-09-23T00:00:00Z")
        #expect(FileTime.durationText(123_000_000_000) == "03:25:00")
        #expect(FileTime.durationText(864_000_000_000 + 10_000_000) == "1 day 00:00:01")
    }

    @Test func notADumpSaysSo() {
        let error = #expect(throws: DumpError.self) { try DumpHeader64(parsing: ByteSource(copying: Array("hello, world".utf8))) }
        #expect(error?.code == .notADump)
        let empty = #expect(throws: DumpError.self) { try DumpHeader64(parsing: ByteSource(copying: [])) }
        #expect(empty?.code == .notADump)
    }

    @Test func headerCutShortIsTruncated() throws {
        let bytes = Array(Forge.dump(.standard(kind: .triage)).contiguousBytes().prefix(0x1000))
        let error = #expect(throws: DumpError.self) { try DumpHeader64(parsing: ByteSource(copying: bytes)) }
        #expect(error?.code == .truncated)
        #expect(error?.message.contains("0x2000") == true)
    }

    @Test func thirtyTwoBitHeaderIsRecognised() throws {
        var bytes = [UInt8](repeating: 0, count: 0x1000)
        func put32(_ value: UInt32, _ offset: Int) { for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) } }
        bytes.replaceSubrange(0..<8, with: Array("PAGEDUMP".utf8))
        put32(0xF, 0x8); put32(7601, 0xC); put32(0x14C, 0x20); put32(1, 0x24); put32(0xD1, 0x28); put32(0x10, 0x2C); put32(1, 0xF88)
        let header = try DumpHeader32(parsing: ByteSource(copying: bytes))
        #expect(header.buildNumber == 7601)
        #expect(header.machine == .i386)
        #expect(header.bugCheckCode == 0xD1)
        #expect(header.bugCheckParameters[0] == 0x10)
        #expect(header.dumpType == .full)
    }
}
