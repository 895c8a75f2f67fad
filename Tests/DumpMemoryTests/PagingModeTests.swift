import DumpFormat
import DumpForge
@testable import DumpMemory
import Testing
import TestSupport

/// Dumps this reader cannot translate say so instead of giving wrong answers.
@Suite struct PagingModeTests {
    static func patch64(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt64) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    @Test func fiveLevelKernelPointersAreDetected() throws {
        let (_, source) = Fixtures.standard(.bitmapKernel)
        var bytes = try source.bytes(at: 0, count: source.count)
        // Under LA57 kernel addresses are canonical in 57 bits: 0xFF... rather than 0xFFFF8....
        Self.patch64(&bytes, 0x20, 0xFF00_F803_1234_5670)  // PsLoadedModuleList
        let dump = try KernelDump(source: ByteSource(copying: bytes))
        #expect(dump.virtualMemoryUnavailable?.contains("LA57") == true)
        let error = #expect(throws: DumpError.self) { try dump.kernelAddressSpace() }
        #expect(error?.code == .unsupported)
    }

    @Test func debuggerDataSayingFiveLevelsIsHonoured() throws {
        let (_, source) = Fixtures.standard(.triage)
        var bytes = try source.bytes(at: 0, count: source.count)
        let triage = try TriageDump(parsing: source)
        // KDBG+0x36 holds PaePresent:1, KiBugCheckRecoveryActive:1, PagingLevels:4.
        bytes[Int(triage.debuggerDataOffset) + 0x36] = 5 << 2
        let dump = try KernelDump(source: ByteSource(copying: bytes))
        #expect(dump.debuggerData.data?.pagingLevels == 5)
        #expect(dump.virtualMemoryUnavailable?.contains("5-level") == true)
    }

    @Test func arm64DumpsKeepTheirFactsButNotTranslation() throws {
        guard let source = try Fixtures.realDump("triage_arm64_22000.dmp") else { return }
        let dump = try KernelDump(source: source)
        #expect(dump.virtualMemoryUnavailable?.contains("ARM64") == true)
        #expect(dump.debuggerData.data?.pteBase == 0xFFFF_A880_0000_0000)
        #expect(dump.triage?.driverCount == 245)
    }

    @Test func canonicalChecks() {
        #expect(isCanonical(0xFFFF_8000_0000_0000))
        #expect(isCanonical(0x0000_7FFF_FFFF_FFFF))
        #expect(!isCanonical(0x0000_8000_0000_0000))
        #expect(!isCanonical(0x0050_0044_0048_005C), "UTF-16 text read as a pointer is not an address")
        #expect(isCanonicalLA57(0xFF00_F803_1234_5670))
        #expect(!isCanonicalLA57(0x0100_0000_0000_0000))
    }
}
