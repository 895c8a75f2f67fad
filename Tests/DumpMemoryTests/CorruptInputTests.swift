import Testing
@testable import DumpMemory
import DumpFormat
import DumpForge
import TestSupport

// Corrupt input never traps: every forged dump type is cut at each structure boundary, its
// header fields are flipped, its counts and offsets are pointed past the file, its run tables
// overlap and its bitmap counts lie. Each case must either throw a DumpError / MemoryError with
// a message, or open and say in its notes (or missingPages) what is missing. A trap kills the
// whole test process, so most cases only need to run; where the outcome is predictable it is
// checked. Cases that do trap today are exit tests at the end of the file.

@Suite("Corrupt input never traps")
struct CorruptInputTests {
    // MARK: Baseline

    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapFull, .bitmapKernel, .triage])
    func intactForgedDumpsOpenCleanly(kind: DumpDescription.DumpKind) {
        let outcome = Forged.bytes(kind).withUnsafeBytes { exercise(ByteSource(unsafeBytes: $0, release: nil), "intact \(kind)") }
        #expect(outcome.opened)
        #expect(outcome.debuggerData == "found")
        #expect(outcome.notes.isEmpty, "\(outcome.notes)")
        // A minidump does not capture PsLoadedModuleList (format notes §3.5).
        #expect(outcome.readablePointers >= (kind == .triage ? 2 : 3))
    }

    // MARK: Truncation at every structure boundary

    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapFull, .bitmapKernel])
    func truncatedMemoryDumpsFailClearlyOrReportMissingPages(kind: DumpDescription.DumpKind) {
        let bytes = Forged.bytes(kind)
        let isBitmap = kind != .full
        let firstPage = isBitmap ? Int(bytes.u64(0x2020)) : 0x2000
        // Everything before this offset is needed to open; a cut after it only loses pages.
        let structuresEnd = isBitmap ? 0x2038 + Int((bytes.u64(0x2030) + 7) / 8) : 0x2000
        let cuts = [0, 4, 8, 0x88, 0x348, 0xF00, 0xF98, 0x1000, 0x2000 - 1, 0x2000, 0x2038, structuresEnd,
                    firstPage, firstPage + 0x1000, bytes.count / 2, bytes.count - 1]
        exerciseTruncations(of: bytes, at: cuts, "\(kind)") { cut, outcome in
            let context = "\(kind) cut at 0x\(hex(cut))"
            switch cut {
            case ..<8:
                #expect(outcome.dumpError?.code == .notADump, "\(context)")
            case ..<structuresEnd:
                #expect(outcome.dumpError?.code == .truncated, "\(context): \(outcome.failureText)")
            default:
                #expect(outcome.opened, "\(context): \(outcome.failureText)")
                #expect((outcome.missingPages ?? 0) > 0, "\(context)")
                #expect(outcome.noted("the file ends early"), "\(context): \(outcome.notes)")
            }
        }
    }

    @Test func truncatedMinidumpsFailClearlyOrNoteTheMissingEndMarker() throws {
        let bytes = Forged.triage
        let source = ByteSource(copying: bytes)
        let triage = try TriageDump(parsing: source)
        let blockOffsets = triage.dataBlocks(in: source).blocks.map(\.offset)
        let stored: [UInt32] = [
            triage.contextOffset, triage.exceptionOffset, triage.mmOffset, triage.unloadedDriversOffset,
            triage.prcbOffset, triage.processOffset, triage.threadOffset, triage.callStackOffset,
            triage.driverListOffset, triage.stringPoolOffset, triage.brokenDriverOffset, triage.dataPageOffset,
            triage.debuggerDataOffset, triage.dataBlocksOffset, triage.validOffset, triage.sizeOfDump,
        ] + blockOffsets
        var cuts = [0, 4, 8, 0x88, 0x348, 0xF00, 0xF98, 0x1000, 0x2000 - 1, 0x2000, 0x2038, 0x2080 - 1, 0x2080, bytes.count - 1]
        for offset in stored where offset != 0 { cuts += [Int(offset), Int(offset) + 1] }

        exerciseTruncations(of: bytes, at: cuts, "triage") { cut, outcome in
            let context = "triage cut at 0x\(hex(cut))"
            switch cut {
            case ..<8:
                #expect(outcome.dumpError?.code == .notADump, "\(context)")
            case ..<0x2080:  // the header and TRIAGE_DUMP64 are needed to open
                #expect(outcome.dumpError?.code == .truncated, "\(context): \(outcome.failureText)")
            default:
                #expect(outcome.opened, "\(context): \(outcome.failureText)")
                #expect(outcome.noted("TRGD"), "\(context): \(outcome.notes)")
            }
        }
    }

    // MARK: Header field flips

    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapFull, .bitmapKernel, .triage])
    func unknownDumpTypeIsUnsupported(kind: DumpDescription.DumpKind) {
        var dump = Patcher(kind)
        for dumpType: UInt32 in [0, 7, 0xFF, 0xFFFF_FFFF] {
            let outcome = dump.open("\(kind) DumpType \(dumpType)") { $0.patch32(0xF98, dumpType) }
            #expect(outcome.dumpError?.code == .unsupported, "DumpType \(dumpType)")
            #expect(outcome.dumpError?.message.contains("unsupported dump type") == true, "\(outcome.failureText)")
        }
    }

    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapFull, .bitmapKernel, .triage])
    func dumpTypeThatContradictsThePayloadFailsClearly(kind: DumpDescription.DumpKind) {
        var dump = Patcher(kind)
        for dumpType: UInt32 in [1, 2, 3, 4, 5, 6, 8, 9, 0xA] {
            let outcome = dump.open("\(kind) DumpType \(dumpType)") { $0.patch32(0xF98, dumpType) }
            switch dumpType {
            case 3:
                #expect(outcome.opened, "header-only: \(outcome.failureText)")
                #expect(outcome.debuggerData == "unreadable")
                #expect(outcome.virtualMemoryUnavailable != nil)
            case 1 where kind != .full:
                // Only the full dump's writer fills in the run table; elsewhere it is "PAGE".
                #expect(outcome.dumpError?.code == .corrupt, "DumpType 1: \(outcome.failureText)")
            case 8, 9, 0xA:
                #expect(outcome.dumpError?.code == .corrupt, "DumpType \(dumpType): \(outcome.failureText)")
            default:
                break  // whatever the payload reads as, exercise() has checked it did not trap
            }
        }
    }

    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapFull, .bitmapKernel, .triage])
    func headerFieldsNothingIndexesByStillOpen(kind: DumpDescription.DumpKind) {
        var dump = Patcher(kind)
        let processors = dump.open("\(kind) NumberProcessors") { $0.patch32(0x34, 0xFFFF_FFFF) }
        #expect(processors.opened, "\(processors.failureText)")
        let parameters = dump.open("\(kind) ExceptionRecord.NumberParameters") { $0.patch32(0xF18, 0xFFFF_FFFF) }
        #expect(parameters.opened, "\(parameters.failureText)")
        let comment = dump.open("\(kind) comment without NUL") { bytes in
            for offset in 0xFB0..<0x1030 { bytes[offset] = 0x41 }
        }
        #expect(comment.opened, "\(comment.failureText)")
        let machine = dump.open("\(kind) ARM64 machine") { $0.patch32(0x30, 0xAA64) }
        #expect(machine.opened, "\(machine.failureText)")
        // Page tables are walked for x64 only; a minidump's captured blocks need none.
        #expect((machine.virtualMemoryUnavailable != nil) == (kind != .triage))
    }

    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapKernel, .triage])
    func badDebuggerDataPointerLeavesTheBlockUnreadableOrEncoded(kind: DumpDescription.DumpKind) {
        var dump = Patcher(kind)
        // 0x0000_8000_0000_0000 is canonical only under 5-level paging; 0x8000_0000_0000_0000 never.
        for pointer: UInt64 in [0, 0x0000_8000_0000_0000, 0x8000_0000_0000_0000, .max] {
            let outcome = dump.open("\(kind) KdDebuggerDataBlock 0x\(hex(pointer))") { $0.patch64(0x80, pointer) }
            #expect(outcome.opened, "\(outcome.failureText)")
            if kind == .triage {
                // A minidump reads its clear copy at DebuggerDataOffset whatever the pointer says.
                #expect(outcome.debuggerData == "found", "pointer 0x\(hex(pointer))")
            } else {
                #expect(outcome.debuggerData == "unreadable" || outcome.debuggerData == "encoded", "pointer 0x\(hex(pointer))")
            }
        }
    }

    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapKernel])
    func directoryTableBaseOutsideTheDumpLeavesMemoryUnreadable(kind: DumpDescription.DumpKind) {
        var dump = Patcher(kind)
        for directoryTableBase: UInt64 in [0, 0x1_0000_0000, .max] {
            let outcome = dump.open("\(kind) DirectoryTableBase 0x\(hex(directoryTableBase))") { $0.patch64(0x10, directoryTableBase) }
            #expect(outcome.opened, "\(outcome.failureText)")
            #expect(outcome.debuggerData == "unreadable", "DTB 0x\(hex(directoryTableBase))")
            #expect(outcome.readablePointers == 0, "DTB 0x\(hex(directoryTableBase))")
        }
    }

    // MARK: Run tables (DumpType 1)

    @Test func runCountThatCannotFitInTheHeaderIsCorrupt() {
        var dump = Patcher(.full)
        for count: UInt32 in [43, 0xFFFF_FFFF] {
            let outcome = dump.open("NumberOfRuns \(count)") { $0.patch32(0x88, count) }
            #expect(outcome.dumpError?.code == .corrupt, "NumberOfRuns \(count): \(outcome.failureText)")
        }
    }

    @Test func zeroRunsOpenWithNoMemory() {
        var dump = Patcher(.full)
        let outcome = dump.open("NumberOfRuns 0") { $0.patch32(0x88, 0) }
        #expect(outcome.opened, "\(outcome.failureText)")
        #expect(outcome.storedPages == 0)
        #expect(outcome.noted("NumberOfPages"), "\(outcome.notes)")
        #expect(outcome.debuggerData == "unreadable")
    }

    @Test func runWhosePagesOverflowIsCorrupt() {
        var dump = Patcher(.full)
        let edits: [(String, (inout [UInt8]) -> Void)] = [
            ("run 0 PageCount UInt64.max", { $0.patch64(0xA0, .max) }),
            ("run 0 BasePage UInt64.max - 1", { $0.patch64(0x98, UInt64.max - 1) }),
            ("run 1 PageCount 2^52 (bytes overflow)", { $0.patch64(0xB0, 1 << 52) }),
        ]
        for (name, edit) in edits {
            let outcome = dump.open(name, edit)
            #expect(outcome.dumpError?.code == .corrupt, "\(name): \(outcome.failureText)")
            #expect(outcome.dumpError?.message.contains("overflows") == true, "\(name): \(outcome.failureText)")
        }
    }

    @Test func overlappingRunsAreCorrupt() {
        var dump = Patcher(.full)
        let edits: [(String, (inout [UInt8]) -> Void)] = [
            ("run 1 starts inside run 0", { $0.patch64(0xA8, 0x50) }),
            ("run 1 repeats run 0", { $0.patch64(0xA8, 1); $0.patch64(0xB0, 0x9E) }),
        ]
        for (name, edit) in edits {
            let outcome = dump.open(name, edit)
            #expect(outcome.dumpError?.code == .corrupt, "\(name): \(outcome.failureText)")
            #expect(outcome.dumpError?.message.contains("overlap") == true, "\(name): \(outcome.failureText)")
        }
    }

    @Test func runsOutOfPfnOrderStillOpen() {
        var dump = Patcher(.full)
        let outcome = dump.open("runs swapped") { bytes in
            bytes.patch64(0x98, 0x100); bytes.patch64(0xA0, 0x7F00)
            bytes.patch64(0xA8, 1); bytes.patch64(0xB0, 0x9E)
        }
        #expect(outcome.opened, "\(outcome.failureText)")
    }

    @Test func runThatReachesPastTheFileReportsMissingPages() {
        var dump = Patcher(.full)
        let pageCount = Forged.full.u64(0xB0)
        let outcome = dump.open("run 1 PageCount + 0x1000") { $0.patch64(0xB0, pageCount + 0x1000) }
        #expect(outcome.opened, "\(outcome.failureText)")
        #expect(outcome.missingPages == 0x1000)
        #expect(outcome.noted("the file ends early"), "\(outcome.notes)")
        #expect(outcome.noted("NumberOfPages"), "\(outcome.notes)")
    }

    // MARK: Bitmap lies (DumpType 5 and 6)

    @Test(arguments: [DumpDescription.DumpKind.bitmapFull, .bitmapKernel])
    func presentPageCountThatDisagreesWithTheBitmapIsNoted(kind: DumpDescription.DumpKind) {
        var dump = Patcher(kind)
        let intact = Forged.bytes(kind)
        let present = intact.u64(0x2028)
        let claims: [UInt64] = [present - 1, present + 1000, 0, .max]
        for claimed in claims {
            let outcome = dump.open("\(kind) TotalPresentPages \(claimed)") { $0.patch64(0x2028, claimed) }
            #expect(outcome.opened, "\(outcome.failureText)")
            #expect(outcome.storedPages == present, "the bitmap, not the header, decides")
            #expect(outcome.noted("set bits"), "\(outcome.notes)")
        }
        let bitmapEnd = 0x2038 + Int((intact.u64(0x2030) + 7) / 8)
        let firstSet: Int = (0x2038..<bitmapEnd).first(where: { intact[$0] != 0 }) ?? 0x2038
        let cleared = dump.open("\(kind) 64 bitmap bytes cleared from 0x\(hex(firstSet))") { bytes in
            for offset in firstSet..<min(firstSet + 64, bitmapEnd) { bytes[offset] = 0 }
        }
        #expect(cleared.opened, "\(cleared.failureText)")
        #expect(cleared.noted("set bits"), "\(cleared.notes)")
    }

    @Test(arguments: [DumpDescription.DumpKind.bitmapFull, .bitmapKernel])
    func bitmapSizeThatCannotBeTrueFailsClearly(kind: DumpDescription.DumpKind) {
        var dump = Patcher(kind)
        let bitCount = Forged.bytes(kind).u64(0x2030)
        let expected: [(UInt64, DumpError.Code)] = [
            (.max, .unsupported),
            (0x1_0000_0000, .unsupported),
            (0xFFFF_FFFF, .truncated),  // a 512 MiB bitmap in a smaller file
            (bitCount * 2, .corrupt),   // the bitmap would run into the first stored page
        ]
        for (claimed, code) in expected {
            let outcome = dump.open("\(kind) bit count 0x\(hex(claimed))") { $0.patch64(0x2030, claimed) }
            #expect(outcome.dumpError?.code == code, "bit count 0x\(hex(claimed)): \(outcome.failureText)")
        }
        let empty = dump.open("\(kind) bit count 0") { $0.patch64(0x2030, 0) }
        #expect(empty.opened, "\(empty.failureText)")
        #expect(empty.storedPages == 0)
        #expect(empty.noted("set bits"), "\(empty.notes)")
    }

    @Test(arguments: [DumpDescription.DumpKind.bitmapFull, .bitmapKernel])
    func firstPageInsideTheBitmapIsCorrupt(kind: DumpDescription.DumpKind) {
        var dump = Patcher(kind)
        for firstPage: UInt64 in [0, 0x2040] {
            let outcome = dump.open("\(kind) FirstPage 0x\(hex(firstPage))") { $0.patch64(0x2020, firstPage) }
            #expect(outcome.dumpError?.code == .corrupt, "FirstPage 0x\(hex(firstPage)): \(outcome.failureText)")
            #expect(outcome.dumpError?.message.contains("inside the page bitmap") == true, "\(outcome.failureText)")
        }
    }

    @Test(arguments: [DumpDescription.DumpKind.bitmapFull, .bitmapKernel])
    func firstPagePastTheFileLeavesEveryPageMissing(kind: DumpDescription.DumpKind) {
        var dump = Patcher(kind)
        let pastTheEnd = UInt64(Forged.bytes(kind).count + 0xFFF) & ~0xFFF
        for firstPage in [pastTheEnd, UInt64.max - 0xFFF] {
            let outcome = dump.open("\(kind) FirstPage 0x\(hex(firstPage))") { $0.patch64(0x2020, firstPage) }
            #expect(outcome.opened, "\(outcome.failureText)")
            #expect(outcome.missingPages != nil && outcome.missingPages == outcome.storedPages)
            #expect(outcome.firstRunLocation == .beyondEndOfFile(firstPage))
            #expect(outcome.noted("the file ends early"), "\(outcome.notes)")
            #expect(outcome.debuggerData == "unreadable")
        }
    }

    // MARK: Minidump lies (DumpType 4)

    @Test func driverListPastTheFileThrowsClearly() throws {
        for (field, value, name) in [(0x2034, 0xFFFF_FFFF, "DriverCount"), (0x2030, 0xFFFF_FF00, "DriverListOffset")] as [(Int, UInt32, String)] {
            var bytes = Forged.triage
            bytes.patch32(field, value)
            let source = ByteSource(copying: bytes)
            let triage = try #require(try KernelDump(source: source).triage)
            let error = #expect(throws: DumpError.self, "\(name)") { try triage.drivers(in: source) }
            #expect(error?.code == .truncated || error?.code == .corrupt, "\(name): \(String(describing: error))")
            // Only the driver list is lost: the dump opens and reads what the intact one reads.
            let outcome = exercise(bytes, name)
            #expect(outcome.opened && outcome.readablePointers == exercise(Forged.triage).readablePointers, "\(name): \(outcome.failureText)")
        }
    }

    @Test func driverWithAnUnreadableNameKeepsItsOtherFields() throws {
        let intactSource = ByteSource(copying: Forged.triage)
        let intact = try TriageDump(parsing: intactSource)
        let drivers = try intact.drivers(in: intactSource)
        try #require(drivers.count >= 3)

        var bytes = Forged.triage
        let list = Int(intact.driverListOffset)
        let firstName = Int(bytes.u32(list))
        bytes.patch32(firstName, 0xFFFF_FFFF)             // driver 0: DUMP_STRING length 0xFFFFFFFF
        bytes.patch32(list + 0x90, 0xFFFF_FF00)           // driver 1: name offset past the file
        let source = ByteSource(copying: bytes)
        let read = try TriageDump(parsing: source).drivers(in: source)

        #expect(read.count == drivers.count)
        for index in 0..<2 {
            var expected = drivers[index]
            expected.path = nil
            #expect(read[index] == expected)
        }
        #expect(Array(read[2...]) == Array(drivers[2...]))
        #expect(exercise(bytes, "unreadable driver names").readablePointers == exercise(Forged.triage).readablePointers)
    }

    @Test func dataBlockTableThatLiesLeavesTheRestReadable() throws {
        let intact = try TriageDump(parsing: ByteSource(copying: Forged.triage))

        // A count far past the file: the entries that are there are kept, the rest noted.
        var bytes = Forged.triage
        bytes.patch32(0x207C, 0xFFFF_FFFF)
        let huge = try KernelDump(source: ByteSource(copying: bytes))
        #expect(huge.notes.contains { $0.contains("lie past the end of the file") }, "\(huge.notes)")
        let space = try huge.kernelAddressSpace()
        do { _ = try space.read(intact.topOfStack, count: 8) } catch { Issue.record(error, "the stack window should survive a bad data block table") }
        let intactReads = exercise(Forged.triage).readablePointers
        #expect(intactReads == 2, "two of the header's three list and KDBG pointers lie in memory the intact minidump captured")
        #expect(exercise(bytes, "DataBlocksCount 0xFFFFFFFF").readablePointers == intactReads)

        // A count a little too large: the extra entries are whatever follows the table.
        bytes = Forged.triage
        bytes.patch32(0x207C, intact.dataBlocksCount + 3)
        let threeMore = exercise(bytes, "DataBlocksCount + 3")
        #expect(threeMore.opened && threeMore.readablePointers == intactReads, "\(threeMore.failureText)")

        // One block whose bytes lie past the file: that block alone is dropped and counted.
        bytes = Forged.triage
        bytes.patch32(Int(intact.dataBlocksOffset) + 8, 0xFFFF_FF00)
        let pastEnd = try KernelDump(source: ByteSource(copying: bytes))
        #expect(pastEnd.notes.contains { $0.contains("1 captured memory block(s) point outside the file") }, "\(pastEnd.notes)")

        // One block whose size runs past the file.
        bytes = Forged.triage
        bytes.patch32(Int(intact.dataBlocksOffset) + 12, 0xFFFF_FFFF)
        #expect(exercise(bytes, "data block size 0xFFFFFFFF").noted("ignored"))
    }

    @Test func stackWindowThatWrapsTheAddressSpaceIsIgnored() {
        var bytes = Forged.triage
        bytes.patch64(0x2048, UInt64.max - 0x10)  // TopOfStack
        let outcome = exercise(bytes, "TopOfStack near 2^64")
        #expect(outcome.opened, "\(outcome.failureText)")
        #expect(outcome.noted("ignored"), "\(outcome.notes)")
    }

    @Test func debuggerDataCopyPastTheFileIsUnreadable() {
        let edits: [(String, (inout [UInt8]) -> Void)] = [
            ("DebuggerDataOffset past the file", { $0.patch32(0x2070, 0xFFFF_FF00) }),
            ("DebuggerDataSize shorter than its header", { $0.patch32(0x2074, 0x10) }),
            ("DebuggerDataOffset 0", { $0.patch32(0x2070, 0) }),
        ]
        for (name, edit) in edits {
            var bytes = Forged.triage
            edit(&bytes)
            let outcome = exercise(bytes, name)
            #expect(outcome.opened, "\(name): \(outcome.failureText)")
            #expect(outcome.debuggerData == "unreadable", "\(name)")
        }
    }

    @Test func debuggerDataCopySizesThatLieAreBounded() throws {
        // A size of 4 GiB reads no more than the largest plausible block, which is intact here.
        var bytes = Forged.triage
        bytes.patch32(0x2074, 0xFFFF_FFFF)
        #expect(exercise(bytes, "DebuggerDataSize 0xFFFFFFFF").debuggerData == "found")
        // A copy shorter than the block's own Size keeps the fields it has, and says so.
        bytes = Forged.triage
        bytes.patch32(0x2074, 0x300)
        let dump = try KernelDump(source: ByteSource(copying: bytes))
        let kdbg = try #require(dump.debuggerData.data)
        #expect(kdbg.isShort)
        #expect(kdbg.kiProcessorBlock != nil)
        #expect(kdbg.pteBase == nil, "PteBase at 0x360 lies past the 0x300 bytes present")
        #expect(dump.notes.contains { $0.contains("cut short") }, "\(dump.notes)")
    }

    @Test func unloadedDriverListPastTheFileThrowsClearly() throws {
        let intact = try TriageDump(parsing: ByteSource(copying: Forged.triage))
        let edits: [(String, (inout [UInt8]) -> Void)] = [
            ("unloaded driver count 0xFFFFFFFF", { $0.patch32(Int(intact.unloadedDriversOffset), 0xFFFF_FFFF) }),
            ("UnloadedDriversOffset past the file", { $0.patch32(0x2018, 0xFFFF_FF00) }),
        ]
        for (name, edit) in edits {
            var bytes = Forged.triage
            edit(&bytes)
            let source = ByteSource(copying: bytes)
            let triage = try #require(try KernelDump(source: source).triage)
            let error = #expect(throws: DumpError.self, "\(name)") { try triage.unloadedDrivers(in: source) }
            #expect(error?.code == .truncated, "\(name): \(String(describing: error))")
        }
    }

    // MARK: Random flips

    @Test func randomByteFlipsInTheHeadersNeverTrap() {
        // To replay a failure: DUMPFLEET_TEST_SEED=N (TestRandom prints N when it draws it).
        var random = TestRandom()
        for kind in [DumpDescription.DumpKind.triage, .bitmapKernel] {
            var bytes = Forged.bytes(kind)
            for iteration in 0..<300 {
                var flips: [(offset: Int, original: UInt8)] = []
                for _ in 0...random.below(8) {
                    let offset = Int(random.below(0x3000))
                    flips.append((offset, bytes[offset]))
                    bytes[offset] ^= UInt8(1 + random.below(255))
                }
                let context = "seed \(random.seed), \(kind) iteration \(iteration), flipped \(flips.map { "0x\(hex($0.offset))" })"
                _ = bytes.withUnsafeBytes { exercise(ByteSource(unsafeBytes: $0, release: nil), context) }
                for flip in flips.reversed() { bytes[flip.offset] = flip.original }
            }
        }
    }
}
