// Range dumps built by hand, and the traps these tests once found.
import Testing
@testable import DumpMemory
import DumpFormat
import DumpForge
import TestSupport

extension CorruptInputTests {
    // MARK: Range dumps (DumpType 8, 9, 0xA), built by hand

    @Test func inconsistentRangeHeaderIsCorrupt() {
        let cases: [(metadataSize: UInt64, firstPageOffset: UInt64)] = [
            (0x40, 0x3000), (0x20, 0x2041), (0x10, 0x2030), (0x40, 0x1000), (.max, .max),
        ]
        for (metadataSize, firstPageOffset) in cases {
            let bytes = rangeDump(metadataSize: metadataSize, firstPageOffset: firstPageOffset, ranges: [(5, 1)])
            let outcome = exercise(bytes, "MetadataSize 0x\(hex(metadataSize)), FirstPageOffset 0x\(hex(firstPageOffset))")
            #expect(outcome.dumpError?.code == .corrupt, "0x\(hex(metadataSize)) / 0x\(hex(firstPageOffset)): \(outcome.failureText)")
        }
        var unsigned = rangeDump(metadataSize: 0x40, firstPageOffset: 0x2060, ranges: [(5, 1)])
        unsigned.patch32(0x2004, 0x504D_4453)  // "SDMP" where "RDMP" belongs
        #expect(exercise(unsigned, "no RDMP").dumpError?.code == .corrupt)
        let cut = Array(rangeDump(metadataSize: 0x40, firstPageOffset: 0x2060, ranges: [(5, 1)]).prefix(0x2010))
        #expect(exercise(cut, "RDMP header cut short").dumpError?.code == .truncated)
    }

    @Test func rangePagePastTheEndOfTheFileIsMissing() throws {
        let bytes = rangeDump(metadataSize: 0x40, firstPageOffset: 0x2060, ranges: [(5, 1)])
        let dump = try KernelDump(source: ByteSource(copying: bytes))
        let physical = try #require(dump.physical)
        #expect(physical.locate(pfn: 5) == .beyondEndOfFile(0x2060))
        #expect(physical.locate(pfn: 6) == .notInDump)
        #expect(physical.storedPages == 1)
        #expect(physical.missingPages == 1)
        #expect(dump.notes.contains { $0.contains("the file ends early") }, "\(dump.notes)")
        #expect(exercise(bytes, "range page past the end").firstRunLocation == .beyondEndOfFile(0x2060))
    }

    @Test func overlappingRangesAreCorrupt() {
        let bytes = rangeDump(metadataSize: 0x40, firstPageOffset: 0x2060, ranges: [(5, 4), (6, 1)])
        let outcome = exercise(bytes, "overlapping ranges")
        #expect(outcome.dumpError?.code == .corrupt, "\(outcome.failureText)")
        #expect(outcome.dumpError?.message.contains("overlap") == true, "\(outcome.failureText)")
    }

    @Test func rangeSizesNearTwoToTheSixtyFourFailClearly() {
        // Consistent by the writer's rule, but the pages would start at 2^64 - 1.
        let huge = rangeDump(metadataSize: UInt64.max - 0x2020, firstPageOffset: .max, ranges: [(5, 1)])
        let outcome = exercise(huge, "MetadataSize near 2^64")
        #expect(outcome.dumpError != nil || outcome.missingPages == outcome.storedPages, "\(outcome.failureText)")

        // DumpType 0xA stops once the pages add up to TotalNumberOfPages.
        var complete = rangeDump(type: 0xA, metadataSize: 0x40, firstPageOffset: 0x2060, ranges: [(5, .max), (7, 1)])
        complete.patch64(0x2028, .max)
        #expect(exercise(complete, "complete range of 2^64 - 1 pages").dumpError != nil)
    }

    // MARK: Traps these tests once found (each runs in a child process, so a regression fails
    // one test instead of killing the run)

    /// A bit count that is not whole 64-bit words but fills whole bytes up to one (57...63 mod
    /// 64: 63, 0x7FFF, ...) once made the partial-word arithmetic underflow.
    @Test func bitmapWhoseBitCountIsNotWholeWordsOpensEmpty() async throws {
        guard await #expect(processExitsWith: .success, performing: { _ = try openBitmapWithBitCount63() }) != nil else { return }
        // It does not trap, so it can run here: no bit is set, so nothing is stored.
        let physical = try #require(try openBitmapWithBitCount63().physical)
        #expect(physical.storedPages == 0)
        #expect(physical.locate(pfn: 0) == .notInDump && physical.locate(pfn: 62) == .notInDump)
    }

    /// Reading the last page of the 64-bit physical space (a run at PFN 0xF_FFFF_FFFF_FFFF is
    /// legal in a run table) once overflowed the address advanced past it.
    @Test func theLastPhysicalPageReadsWhole() async throws {
        guard await #expect(processExitsWith: .success, performing: { _ = try readLastPhysicalPage() }) != nil else { return }
        #expect(try readLastPhysicalPage() == [UInt8](repeating: 0x5A, count: 0x1000))
    }

    /// A UNICODE_STRING within 8 bytes of 2^64 once overflowed computing its Buffer field's address.
    @Test func unicodeStringAtTheTopOfTheAddressSpaceIsRefused() async throws {
        guard await #expect(processExitsWith: .success, performing: { _ = try? readStringAtTheTopOfTheAddressSpace() }) != nil else { return }
        let error = #expect(throws: MemoryError.self) { try readStringAtTheTopOfTheAddressSpace() }
        // The structure is read whole; its last captured byte is 2^64 - 2, so the read stops at the
        // next one rather than wrapping round to address 0 for the Buffer field.
        #expect(error == MemoryError(.notCaptured, address: 0xFFFF_FFFF_FFFF_FFFF))
    }
}
