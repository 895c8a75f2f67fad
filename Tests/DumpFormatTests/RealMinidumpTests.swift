import DumpFormat
import Testing
import TestSupport

/// The real Windows 11 ARM64 kernel minidump (rizin test corpus), when ../shared is present.
@Suite struct RealMinidumpTests {
    @Test func arm64MinidumpHeaderAndDrivers() throws {
        guard let source = try Fixtures.realDump("triage_arm64_22000.dmp") else { return }
        let header = try DumpHeader64(parsing: source)
        #expect(header.buildNumber == 22000)
        #expect(header.numberProcessors == 8)
        #expect(header.bugCheckCode == 0x1C8)
        #expect(BugCheck(rawCode: header.bugCheckCode, parameters: []).name == "MANUALLY_INITIATED_POWER_BUTTON_HOLD")
        #expect(header.machine == .arm64)
        #expect(header.dumpType == .triage)
        #expect(header.miniDumpFields == 0xCFF)
        #expect(header.bootId == 0xD)

        let triage = try TriageDump(parsing: source)
        #expect(triage.hasEndMarker)
        #expect(triage.debuggerDataSize == 0x380)
        let drivers = try triage.drivers(in: source)
        #expect(drivers.count == 245)
        #expect(drivers.allSatisfy { $0.path != nil && $0.base >> 48 == 0xFFFF && $0.size > 0 })
        // The writer leaves TimeDateStamp 0 for a few images (msrpc.sys, win32k.sys, ...).
        #expect(drivers.filter { $0.timeDateStamp == 0 }.count == 7)
        #expect(drivers.first { $0.name == "msrpc.sys" }?.base == 0xFFFF_F803_F57B_0000)
        #expect(drivers[0].name?.lowercased() == "ntoskrnl.exe")
        #expect(drivers[1].name?.lowercased() == "hal.dll")
        #expect(drivers[0].path?.hasPrefix("\\SystemRoot\\") == true)
        let unloaded = try triage.unloadedDrivers(in: source)
        #expect(unloaded.count == 11)
        #expect(unloaded.first?.name == "MSKSSRV.sys")
        #expect(unloaded.first?.startAddress == 0xFFFF_F803_FA16_0000)
        #expect(unloaded.first?.endAddress == 0xFFFF_F803_FA17_1000)
        #expect(unloaded.allSatisfy { !$0.name.isEmpty && $0.endAddress > $0.startAddress })
        #expect(triage.driverEntrySizeIsExpected)

        let kdbg = try DebuggerData(bytes: source.bytes(at: UInt64(triage.debuggerDataOffset), count: UInt64(triage.debuggerDataSize)))
        #expect(kdbg.pteBase == 0xFFFF_A880_0000_0000)
        #expect(kdbg.pagingLevels == 4)
        #expect(kdbg.sizeEProcess == 0xC80)
        #expect(kdbg.offsetPrcbContext == 0x8A0)
    }
}
