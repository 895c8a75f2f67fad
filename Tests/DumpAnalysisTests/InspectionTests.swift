import DumpAnalysis
import DumpFormat
import DumpForge
import Testing
import TestSupport

@Suite struct InspectionTests {
    @Test func fullDumpIsComplete() throws {
        let (_, source) = Fixtures.standard(.full)
        let report = try DumpInspector.inspect(source)
        #expect(report.dumpType == 1)
        #expect(report.machine == "x64")
        #expect(report.processors == 2)
        #expect(report.bugCheck.code == "0x0000001E")
        #expect(report.bugCheck.name == "KMODE_EXCEPTION_NOT_HANDLED")
        #expect(report.systemTime == "2024-03-01 20:00:00 UTC")
        #expect(report.physicalMemory?.index == "runs")
        #expect(report.physicalMemory?.runs.count == 2)
        #expect(report.debuggerData?.status == "clear")
        #expect(report.completeness.verdict == "complete")
        #expect(report.text.contains("KMODE_EXCEPTION_NOT_HANDLED"))
    }

    @Test func kernelBitmapDumpSaysKernelOnly() throws {
        let (_, source) = Fixtures.standard(.bitmapKernel)
        let report = try DumpInspector.inspect(source)
        #expect(report.physicalMemory?.index == "bitmap")
        #expect(report.completeness.verdict == "kernel memory only")
    }

    @Test func minidumpListsDriversAndAdvisesAFullerDump() throws {
        var description = DumpDescription.standard(kind: .triage)
        description.unloadedDrivers = [UnloadedDriverDescription(name: "VideoAccelerator.sys", startAddress: 0xFFFF_F800_1000_0000, endAddress: 0xFFFF_F800_1001_0000)]
        let report = try DumpInspector.inspect(Fixtures.source(Forge.dump(description)))
        let minidump = try #require(report.minidump)
        #expect(minidump.drivers.map(\.name) == ["ntoskrnl.exe", "hal.dll", "dxgkrnl.sys", "nvlddmkm.sys", "ndis.sys", "tcpip.sys"])
        #expect(minidump.drivers[3].timestamp.date == "2020-09-23T00:00:00Z")
        #expect(minidump.drivers[3].timestamp.meaning == .unverifiedLinkTime)
        #expect(minidump.drivers[0].timestamp.meaning == .buildHash, "ntoskrnl's 0x9C8F6A7B would be 2053")
        #expect(report.text.contains("built 2020-09-23? (unverified)") && !report.text.contains("2053"))
        #expect(minidump.unloadedDrivers.map(\.name) == ["VideoAcceler"], "the writer keeps 12 characters inline")
        #expect(minidump.endMarker)
        #expect(report.completeness.verdict == "minidump")
        #expect(report.completeness.details.contains { $0.contains("complete or kernel memory dump") })
    }

    @Test func truncatedDumpSaysHowMuchIsMissing() throws {
        let (_, source) = Fixtures.standard(.full)
        let cut = ByteSource(copying: try source.bytes(at: 0, count: source.count - 0x10_0000))
        let report = try DumpInspector.inspect(cut)
        #expect(report.completeness.verdict == "truncated")
        #expect(report.physicalMemory?.missingPages == 0x100)
        #expect(report.completeness.details.contains { $0.contains("256 of") })
    }

    @Test func encodedDebuggerDataIsReportedPlainly() throws {
        let (forged, source) = Fixtures.standard(.bitmapFull)
        var bytes = try source.bytes(at: 0, count: source.count)
        // Scramble the block in place, as KdpDataBlockEncoded leaves it in live memory.
        let dump = try DumpMemoryProbe.fileOffset(of: forged.kernel.debuggerDataBlock, in: ByteSource(copying: bytes))
        for i in 0..<0x380 { bytes[Int(dump) + i] ^= 0x5A }
        let report = try DumpInspector.inspect(ByteSource(copying: bytes))
        #expect(report.debuggerData?.status == "encoded")
        #expect(report.debuggerData?.detail.contains("not \"KDBG\"") == true)
        #expect(report.bugCheck.name == "KMODE_EXCEPTION_NOT_HANDLED", "the header's facts still come through")
    }

    @Test func realArm64Minidump() throws {
        guard let source = try Fixtures.realDump("triage_arm64_22000.dmp") else { return }
        let report = try DumpInspector.inspect(source)
        #expect(report.machine == "ARM64")
        #expect(report.buildNumber == 22000)
        #expect(report.processors == 8)
        #expect(report.bugCheck.code == "0x000001C8")
        #expect(report.minidump?.drivers.count == 245)
        let kernel = try #require(report.minidump?.drivers.first)
        #expect(kernel.name?.lowercased() == "ntoskrnl.exe" && kernel.timestamp.meaning == .buildHash, "\(kernel.timestamp)")
        #expect(!report.text.contains("2088"))
        #expect(report.debuggerData?.status == "clear")
        #expect(report.completeness.verdict == "minidump")
    }
}
