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

    /// KDBG's L1TF bytes choose the bits; unset or impossible ones fall back to bit 45 and
    /// SwizzleBit 4, and only an entry with SwizzleBit clear loses the mask.
    @Test func swizzledEntriesAreUndoneByKDBGsBitsOrTheCommonOnes() {
        let common = InvalidEntrySwizzle(highPhysicalBit: 45, swizzleBit: 4)
        #expect(common.mask == 1 << 45 && common.swizzleBit == 1 << 4)
        for (high, swizzle) in [(nil, nil), (0, 0), (60, 20), (11, 12)] as [(UInt8?, UInt8?)] {
            #expect(InvalidEntrySwizzle(highPhysicalBit: high, swizzleBit: swizzle) == common, "\(String(describing: high)), \(String(describing: swizzle))")
        }
        let named = InvalidEntrySwizzle(highPhysicalBit: 39, swizzleBit: 3)
        let transition: UInt64 = 0x1234_5000 | 1 << 11
        #expect(named.unswizzled(transition | 1 << 39) == transition)
        #expect(named.unswizzled(transition | 1 << 39 | 1 << 3) == transition | 1 << 39 | 1 << 3, "SwizzleBit set: the bit is the entry's own")
        #expect(named.unswizzled(transition | 1 << 45) == transition | 1 << 45, "bit 45 is not this machine's mask")
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
        let (forged, source) = Fixtures.standard(.bitmapKernel)
        let intact = try KernelDump(source: source)
        let pa = try intact.addressSpace(directoryTableBase: forged.kernel.directoryTableBase).translate(forged.kernel.debuggerDataBlock).get()
        guard case .inFile(let offset) = intact.physical?.locate(pfn: pa >> 12) else { Issue.record("KDBG page missing"); return }
        var bytes = try source.bytes(at: 0, count: source.count)
        // KDBG+0x36 holds PaeEnabled:1, KiBugCheckRecoveryActive:1, PagingLevels:4.
        bytes[Int(offset + (pa & 0xFFF)) + 0x36] = 5 << 2
        let dump = try KernelDump(source: ByteSource(copying: bytes))
        #expect(dump.debuggerData.data?.pagingLevels == 5)
        #expect(dump.virtualMemoryUnavailable?.contains("5-level") == true)
    }

    @Test func arm64MinidumpMemoryReadsWithoutPageTables() throws {
        guard let source = try Fixtures.realDump("triage_arm64_22000.dmp") else { return }
        let dump = try KernelDump(source: source)
        #expect(dump.virtualMemoryUnavailable == nil)
        #expect(dump.debuggerData.data?.pteBase == 0xFFFF_A880_0000_0000)
        #expect(dump.triage?.driverCount == 245)
        #expect(dump.notes.isEmpty, "\(dump.notes)")
        // The captured blocks answer by VA: the KDBG copy at its address, the stack window.
        let space = try dump.kernelAddressSpace()
        #expect(try space.read(dump.header.kdDebuggerDataBlock + 0x10, count: 4) == Array("KDBG".utf8))
        let triage = try #require(dump.triage)
        #expect(try space.read(triage.topOfStack, count: Int(triage.sizeOfCallStack)).count == Int(triage.sizeOfCallStack))
        #expect((dump.triageMemory?.capturedBytes ?? 0) > 0x1_0000)
    }

    @Test func arm64FullDumpsAreNotTranslated() throws {
        let (_, source) = Fixtures.standard(.bitmapKernel)
        var bytes = try source.bytes(at: 0, count: source.count)
        bytes.replaceSubrange(0x30..<0x34, with: [0x64, 0xAA, 0, 0])
        let dump = try KernelDump(source: ByteSource(copying: bytes))
        #expect(dump.virtualMemoryUnavailable?.contains("ARM64") == true)
        #expect(throws: DumpError.self) { try dump.kernelAddressSpace() }
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
