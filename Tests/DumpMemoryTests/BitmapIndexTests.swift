import DumpFormat
@testable import DumpMemory
import DumpForge
import Testing

/// The rank index and run listing over hand-made bitmaps, where every answer can be worked out.
@Suite struct BitmapIndexTests {
    /// A DumpType 5 file whose bitmap is `bitmap` over `bitCount` bits, with every set bit's page
    /// stored and holding its own PFN in its first 8 bytes.
    static func bitmapDump(_ bitmap: [UInt8], bitCount: UInt64) -> ByteSource {
        let firstPage = (0x2038 + bitmap.count + 0xFFF) & ~0xFFF
        let present = (0..<Int(bitCount)).filter { bitmap[$0 / 8] & (1 << ($0 % 8)) != 0 }
        var bytes = bareHeader(dumpType: 5, size: firstPage + present.count * 0x1000)
        bytes.replaceSubrange(0x2000..<0x2008, with: Array("FDMPDUMP".utf8))
        bytes.patch64(0x2020, UInt64(firstPage))
        bytes.patch64(0x2028, UInt64(present.count))
        bytes.patch64(0x2030, bitCount)
        bytes.replaceSubrange(0x2038..<0x2038 + bitmap.count, with: bitmap)
        for (rank, pfn) in present.enumerated() { bytes.patch64(firstPage + rank * 0x1000, UInt64(pfn)) }
        return ByteSource(copying: bytes)
    }

    @Test func everyStoredPageIsFoundAndEveryHoleIsNot() throws {
        var random = SeededRandom(seed: 5)
        let bitmap = (0..<40).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let bitCount: UInt64 = 317  // not whole words, not whole bytes
        let source = Self.bitmapDump(bitmap, bitCount: bitCount)
        let physical = try #require(KernelDump(source: source).physical)
        for pfn in 0..<bitCount + 70 {
            let set = pfn < bitCount && bitmap[Int(pfn / 8)] & (1 << (pfn % 8)) != 0
            switch physical.locate(pfn: pfn) {
            case .inFile(let offset): #expect(set && source.uncheckedU64(at: offset) == pfn, "PFN \(pfn)")
            case .notInDump: #expect(!set, "PFN \(pfn)")
            case .beyondEndOfFile, .compressed: Issue.record("PFN \(pfn): \(physical.locate(pfn: pfn))")
            }
        }
    }

    @Test func runsAreMaximalAndCrossWords() throws {
        // Bits 60..<70 set (a run across the first word boundary), 128..<192 (a whole word), 200.
        var bitmap = [UInt8](repeating: 0, count: 32)
        for bit in Array(60..<70) + Array(128..<192) + [200] { bitmap[bit / 8] |= 1 << (bit % 8) }
        let physical = try #require(KernelDump(source: Self.bitmapDump(bitmap, bitCount: 256)).physical)
        let (runs, total) = physical.runs()
        #expect(runs.map(\.basePage) == [60, 128, 200])
        #expect(runs.map(\.pageCount) == [10, 64, 1])
        #expect(total == 3)
    }

    @Test func alternatingBitmapListsOnlyWhatIsAsked() throws {
        let physical = try #require(KernelDump(source: Self.bitmapDump([UInt8](repeating: 0x55, count: 512), bitCount: 4096)).physical)
        let (runs, total) = physical.runs(limit: 64)
        #expect(runs.count == 64)
        #expect(total == 2048)
        #expect(runs.allSatisfy { $0.pageCount == 1 && $0.basePage % 2 == 0 })
    }
}
