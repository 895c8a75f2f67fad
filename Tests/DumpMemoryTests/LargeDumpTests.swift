import DumpFormat
import DumpForge
import DumpMemory
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A 16 GiB machine written as sparse files: the forge writes only non-zero pages, and the
/// parser indexes the file without touching the holes.
@Suite struct LargeDumpTests {
    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapFull])
    func sixteenGiBDumpIsSparseAndTranslates(kind: DumpDescription.DumpKind) throws {
        let forged = Forge.dump(.standard(kind: kind, gibibytes: 16, layoutSeed: 42))
        let (path, source) = try Fixtures.mapped(forged)
        defer { Fixtures.discard(path) }
        #expect(source.count >= 16 << 30 - 0x1000_0000)
        var status = stat()
        #expect(stat(path, &status) == 0)
        #expect(status.st_blocks * 512 < 64 << 20, "a forged 16 GiB dump should occupy a few MiB of disk")

        let dump = try KernelDump(source: source)
        #expect(dump.physical?.storedPages == 16 * 0x40000 - 0x62)  // 16 GiB less the holes below 1 MiB
        #expect(dump.debuggerData.data?.kernBase == forged.kernel.kernelBase)
        let space = try dump.kernelAddressSpace()
        // The first page above the PCI hole comes right after the pages below 3 GiB.
        let below = UInt64(0x9E + 0xBFF00) * 0x1000
        let first: UInt64 = kind == .full ? 0x2000 : (0x2038 + 0x44_0000 / 8 + 0xFFF) & ~0xFFF  // bitmap of 17 GiB of PFNs
        #expect(dump.physical?.locate(pfn: 0x10_0000) == .inFile(first + below))
        #expect(dump.physical?.locate(pfn: 0xC_0000) == .notInDump, "3 GiB..4 GiB is the PCI hole")
        for mapping in forged.kernel.mappings.filter({ $0.directoryTableBase == forged.kernel.directoryTableBase }).prefix(500) {
            #expect(try (space as! X64AddressSpace).translate(mapping.va).get() == mapping.pa)
        }
    }
}
