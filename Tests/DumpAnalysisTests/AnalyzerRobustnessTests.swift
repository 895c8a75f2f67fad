import DumpAnalysis
import DumpFormat
import DumpForge
import DumpMemory
import Testing
import TestSupport

/// Damaged dumps and unknown builds give partial reports that say what is missing.
@Suite struct AnalyzerRobustnessTests {
    static func bytes(_ description: DumpDescription) -> [UInt8] {
        var small = description
        small.memory = [0x1..<0x9F, 0x100..<0x8000]
        return Forge.dump(small).contiguousBytes()
    }

    @Test func buildWithoutATableFindsProcessesFromInvariants() throws {
        var description = DumpDescription.displayDriverFault(kind: .full)
        description.buildNumber = 27764  // a Windows 11 Canary build: not in the tables
        description.offsetShift = 0x40   // and EPROCESS and ETHREAD offsets no table has
        let report = CrashAnalyzer().analyze(try KernelDump(source: ByteSource(copying: Self.bytes(description))))
        #expect(report.layoutSource?.contains("invariants") == true)
        #expect(KernelLayout.known(build: 19041, debuggerData: nil)?.processUniqueId == 0x440, "the forged 0x480 is no table's")
        #expect(report.processes.map(\.name) == ["System", "smss.exe", "csrss.exe", "winlogon.exe", "explorer.exe"])
        #expect(report.processes.first?.processId == 4)
        #expect(report.imageName == "nvlddmkm.sys", "the stack does not need the tables")
    }

    @Test func aSecondCopyOfTheKernelDTBInSystemDoesNotMisplaceTheProcesses() throws {
        var description = DumpDescription.displayDriverFault(kind: .full)
        description.buildNumber = 27764
        description.memory = [0x1..<0x9F, 0x100..<0x8000]
        let forged = Forge.dump(description)
        var bytes = forged.contiguousBytes()
        // The kernel's DTB again at System's EPROCESS + 0x128: the offset scan, trying the
        // ActiveProcessLinks offset 0x100 short of the real one, finds "its" DTB there.
        let system = try #require(forged.kernel.processes.first { $0.processId == 4 })
        let dump = try KernelDump(source: ByteSource(copying: bytes))
        let space = try #require(try dump.kernelAddressSpace() as? X64AddressSpace)
        let decoy = system.eprocess + 0x128
        let offset = Int(try dump.physical!.fileOffset(physical: try space.translate(decoy).get(), reading: decoy))
        for index in 0..<8 { bytes[offset + index] = UInt8(truncatingIfNeeded: system.directoryTableBase >> (8 * index)) }

        let report = CrashAnalyzer().analyze(try KernelDump(source: ByteSource(copying: bytes)))
        #expect(report.layoutSource?.contains("invariants") == true)
        #expect(report.processes.map(\.directoryTableBase) == forged.kernel.processes.map { "0x" + String($0.directoryTableBase, radix: 16) })
    }

    @Test func truncatedDumpGivesAPartialReportAndSaysWhy() throws {
        let bytes = Self.bytes(.displayDriverFault(kind: .full))
        for cut in [bytes.count / 2, 0x2000 + 0x1000 * 0x200, 0x3000] {
            let dump = try KernelDump(source: ByteSource(copying: Array(bytes.prefix(cut))))
            let report = CrashAnalyzer().analyze(dump)
            #expect(report.bugCheckName == "KMODE_EXCEPTION_NOT_HANDLED")
            #expect(report.completeness == "truncated")
            #expect(report.advice.contains { $0.contains("truncated") })
            #expect(!report.failureBucketId.isEmpty)
        }
    }

    @Test func encodedDebuggerDataStillGivesTheHeaderFacts() throws {
        var bytes = Self.bytes(.displayDriverFault(kind: .bitmapFull))
        let intact = try KernelDump(source: ByteSource(copying: bytes))
        let space = try intact.addressSpace(directoryTableBase: intact.header.directoryTableBase)
        let pa = try space.translate(intact.header.kdDebuggerDataBlock).get()
        guard case .inFile(let offset) = intact.physical?.locate(pfn: pa >> 12) else { Issue.record("no KDBG page"); return }
        for i in 0..<0x380 { bytes[Int(offset + (pa & 0xFFF)) + i] ^= 0xA5 }
        let report = CrashAnalyzer().analyze(try KernelDump(source: ByteSource(copying: bytes)))
        #expect(report.bugCheckCode == "0x0000001E")
        #expect(report.modules.count == 6, "PsLoadedModuleList from the header")
        #expect(report.imageName == "nvlddmkm.sys")
    }

    @Test(arguments: [DumpDescription.DumpKind.triage, .full])
    func parametersPointingAtTheTopOfTheAddressSpaceDoNotTrap(kind: DumpDescription.DumpKind) throws {
        var bytes = Self.bytes(.listEntryCorruption(kind: kind))
        for (offset, value) in [(0x48, UInt64.max), (0x48, UInt64.max - 0x100), (0x50, UInt64.max)] {
            for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
            let report = CrashAnalyzer().analyze(try KernelDump(source: ByteSource(copying: bytes)))
            #expect(report.notes.contains { $0.contains("KTRAP_FRAME") }, "\(report.notes)")
        }
    }

    @Test(arguments: [DumpDescription.DumpKind.triage, .bitmapKernel])
    func randomDamageNeverTraps(kind: DumpDescription.DumpKind) throws {
        let intact = Self.bytes(.timerListCorruption(kind: kind))
        var random = TestRandom()
        var analyzed = 0
        for _ in 0..<60 {
            var bytes = intact
            for _ in 0..<(1 + random.below(24)) {
                // Mostly the headers; sometimes anywhere (stacks, lists, KDBG, page tables).
                let limit = random.below(3) == 0 ? UInt64(bytes.count) : 0x3000
                bytes[Int(random.below(limit))] = UInt8(truncatingIfNeeded: random.next())
            }
            let dump: KernelDump
            do {
                dump = try KernelDump(source: ByteSource(copying: bytes))
            } catch {
                // A dump that cannot be opened says why, in the reader's own terms.
                #expect(error is DumpError || error is MemoryError, "seed \(random.seed): \(type(of: error)) \(error)")
                continue
            }
            let report = CrashAnalyzer(parallelism: 1).analyze(dump)
            #expect(!report.failureBucketId.isEmpty)
            analyzed += 1
        }
        // Most damage leaves a dump that opens: the analysis, not only the header checks, is tried.
        #expect(analyzed >= 20, "seed \(random.seed): only \(analyzed) of 60 damaged dumps opened")
    }
}
