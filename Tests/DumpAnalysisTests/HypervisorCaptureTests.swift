import DumpAnalysis
import DumpForge
import DumpFormat
import DumpMemory
import Testing
import TestSupport

/// Analyses of a hypervisor's capture (a QEMU ELF core of a running guest), found without the
/// guest's help and without symbols, and dumps of running systems in Windows' own format.
/// Against the forge's writers; the captures a real QEMU writes are in RealQEMUCaptureTests.
@Suite struct HypervisorCaptureTests {
    static func hang() -> DumpDescription {
        var description = DumpDescription.spinLockHang(kind: .full, layoutSeed: 21)
        description.memory = [0x1..<0x9F, 0x100..<0x8000]
        return description
    }

    /// The hung desktop captured by its host: the kernel is found from a vCPU's CR3 (checked
    /// against KUSER_SHARED_DATA) and IDT, KDBG by its tag in the kernel image, every CPU's
    /// stack from its vCPU registers; the report is a live capture's, with a bucket of its own
    /// kind, and reads what the full dump of the same machine reads.
    @Test func aCaptureOfAHungGuestIsAnalyzedLikeItsFullDump() throws {
        let description = Self.hang()
        let elf = Forge.elfCore(description)
        let dump = try KernelDump(source: Fixtures.source(elf))
        let capture = try #require(dump.capture)
        #expect(capture.directoryTableBaseSource == "CR3 of vCPU 0" && capture.kernelBase == elf.kernel.kernelBase)
        #expect(dump.header.kdDebuggerDataBlock == elf.kernel.debuggerDataBlock && dump.debuggerData.data != nil)
        #expect(dump.header.buildNumber == description.buildNumber && dump.header.systemTime == description.systemTime && dump.header.bugCheckCode == 0)

        let report = CrashAnalyzer(parallelism: 1).analyze(dump)
        let full = CrashAnalyzer(parallelism: 1).analyze(try KernelDump(source: Fixtures.source(Forge.dump(description))))
        #expect(report.dumpType == "QEMU ELF core (a hypervisor's capture)")
        #expect(report.processes.map(\.name) == full.processes.map(\.name) && report.modules.map(\.name) == full.modules.map(\.name))
        #expect(report.cpus.map(\.activity) == full.cpus.map(\.activity), "\(report.cpus.map(\.activity))")
        #expect(report.culprit.name == "vfstor.sys" && report.failureBucketId.hasPrefix("LIVE_vfstor+"), "\(report.culprit) \(report.failureBucketId)")
        let inspection = DumpInspector.inspect(dump)
        #expect(inspection.completeness.verdict == "hypervisor capture" && inspection.signature == "ELF core")
    }

    /// A hang's report reads every CPU: the lock the waiters spin on, whether it is still
    /// held, which CPU seems to hold it (x64 spin locks record no owner; the holder keeps the
    /// address, here in RBX), that the holder runs third-party code in a DPC, and how and when
    /// the capture was taken. Without the address on any other CPU, no holder is claimed. Two
    /// VMs (layouts) with the same hang share the bucket.
    @Test func aHangsReportNamesTheLockHolderAndWhatEachCPUDoes() throws {
        var buckets: Set<String> = []
        for seed in [21, 34] as [UInt64] {
            var description = Self.hang()
            description.layoutSeed = seed
            let report = CrashAnalyzer(parallelism: 2).analyze(try KernelDump(source: Fixtures.source(Forge.elfCore(description))))
            buckets.insert(report.failureBucketId)
            let waiters = report.cpus.filter { $0.number != 0 }
            #expect(waiters.count == 3 && waiters.allSatisfy { $0.spinLockHolder == 0 && $0.activity.contains(": held (0x1); CPU 0 seems to hold it (its RBX") },
                    "\(report.cpus.map(\.activity))")
            #expect(report.cpus.first?.activity.hasPrefix("running vfstor.sys code in a DPC") == true, "\(report.cpus.first?.activity ?? "-")")
            #expect(report.culprit.reason.contains("wait for a spin lock that it seems to hold"), "\(report.culprit.reason)")
            #expect(report.capture?.hasPrefix("by the hypervisor: QEMU ELF core at 2024-03-01") == true && report.text.contains("CAPTURE: by the hypervisor"), "\(report.capture ?? "-")")
        }
        #expect(buckets.count == 1, "\(buckets)")

        var unowned = Self.hang()
        unowned.spinLockHolder = nil
        let report = CrashAnalyzer(parallelism: 1).analyze(try KernelDump(source: Fixtures.source(Forge.elfCore(unowned))))
        #expect(report.cpus.filter { $0.number != 0 }.allSatisfy { $0.spinLockHolder == nil && $0.activity.hasSuffix("held (0x1); no CPU shows it") },
                "\(report.cpus.map(\.activity))")
        let crash = CrashAnalyzer(parallelism: 1).analyze(try KernelDump(source: Fixtures.source(Forge.dump(unowned))))
        #expect(crash.capture == nil, "a crash is no capture")
    }

    /// A running kernel keeps KDDEBUGGER_DATA64 encoded with random keys: it is decoded from
    /// what is known in plain text (its tag, its size, the kernel base), never a PDB, and the
    /// analysis reads what the clear block gives. Three layouts, three sets of keys.
    @Test(arguments: [21, 22, 23] as [UInt64])
    func anEncodedDebuggerDataBlockIsDecodedWithoutSymbols(seed: UInt64) throws {
        var description = Self.hang()
        description.layoutSeed = seed
        let clear = try KernelDump(source: Fixtures.source(Forge.elfCore(description)))
        description.debuggerDataEncoded = true
        let elf = Forge.elfCore(description)
        let dump = try KernelDump(source: Fixtures.source(elf))
        let stored = try dump.kernelAddressSpace().read(elf.kernel.debuggerDataBlock, count: 0x20)
        #expect(stored[0x10..<0x14] != [0x4B, 0x44, 0x42, 0x47], "memory holds the block encoded")
        guard case .found(let decoded, let source)? = Optional(dump.debuggerData) else {
            Issue.record("not decoded: \(dump.debuggerData.status) \(dump.notes)")
            return
        }
        #expect(decoded.bytes == clear.debuggerData.data?.bytes && source.contains("decoded without symbols"), "\(source)")
        #expect(CrashAnalyzer(parallelism: 1).analyze(dump).failureBucketId == CrashAnalyzer(parallelism: 1).analyze(clear).failureBucketId)
    }

    /// The same hung machine as three other ways of reading a running system write it: QEMU's
    /// `dump-guest-memory -w` (a full DUMP_HEADER64 with LIVE_SYSTEM_DUMP, 0x161, and QEMU's
    /// patched KDBG pointer), a live acquisition tool's conversion (the marker 'MATT' with
    /// parameters 1–4, KDBG left encoded), and a bitmap dump of the same kind. Each is a live
    /// capture: the encoded block is decoded without symbols, and the bucket is the hypervisor
    /// capture's, so one hang is one bucket however it was taken.
    @Test func liveDumpsOfEveryKindShareTheHangsBucket() throws {
        let description = Self.hang()
        let capture = CrashAnalyzer(parallelism: 1).analyze(try KernelDump(source: Fixtures.source(Forge.elfCore(description))))
        var qemuWindows = description
        qemuWindows.bugCheckCode = 0x161
        qemuWindows.bugCheckParameters = [0, 0, 0, 0]
        var tool = description
        tool.bugCheckCode = 0x4D41_5454  // 'MATT'
        tool.bugCheckParameters = [1, 2, 3, 4]
        tool.debuggerDataEncoded = true
        tool.comment = "Microsoft Crash Dump file generated with a memory acquisition toolkit"
        var toolBitmap = tool
        toolBitmap.kind = .bitmapFull
        for (label, variant, name) in [("QEMU -w", qemuWindows, "LIVE_SYSTEM_DUMP"), ("tool", tool, "LIVE_ACQUISITION ('MATT'"), ("tool, bitmap", toolBitmap, "LIVE_ACQUISITION")] {
            let forged = Forge.dump(variant)
            let dump = try KernelDump(source: Fixtures.source(forged))
            #expect(dump.debuggerData.data?.kernBase == forged.kernel.kernelBase, "\(label): \(dump.debuggerData.status)")
            if variant.debuggerDataEncoded {
                guard case .found(_, let source) = dump.debuggerData else { Issue.record("\(label): not decoded"); continue }
                #expect(source.contains("decoded without symbols"), "\(label): \(source)")
            }
            let report = CrashAnalyzer(parallelism: 1).analyze(dump)
            #expect(report.bugCheckName?.hasPrefix(name) == true, "\(label): \(report.bugCheckName ?? "-")")
            #expect(report.failureBucketId == capture.failureBucketId && report.failureBucketId.hasPrefix("LIVE_vfstor+"), "\(label): \(report.failureBucketId)")
            #expect(report.advice.contains { $0.contains("taken from the running system") }, "\(label)")
        }
        // A crash is not a live capture, however alike its stacks: its bucket keeps its class.
        let crash = CrashAnalyzer(parallelism: 1).analyze(try KernelDump(source: Fixtures.source(Forge.dump(description))))
        #expect(!crash.failureBucketId.hasPrefix("LIVE_"), "\(crash.failureBucketId)")
    }

    /// vCPUs still in firmware or reset hold a CR3 that maps no Windows: the page tables are
    /// then found by scanning physical memory for the self-map, and the rest follows.
    @Test func withoutAUsableCR3ThePageTablesAreFoundByScanning() throws {
        let elf = Forge.elfCore(Self.hang())
        var bytes = elf.contiguousBytes()
        let dtb = elf.kernel.directoryTableBase
        // Every copy of CR3 in the notes (the first pages) becomes a page of no tables.
        for at in stride(from: 0, to: 0x2000, by: 4) where (0..<8).reduce(UInt64(0), { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) }) == dtb {
            for index in 0..<8 { bytes[at + index] = index == 1 ? 0x70 : 0 }  // 0x7000, which maps nothing
        }
        let dump = try KernelDump(source: ByteSource(copying: bytes))
        let capture = try #require(dump.capture)
        #expect(capture.directoryTableBaseSource.hasPrefix("a scan of physical memory"), "\(capture.directoryTableBaseSource)")
        #expect(dump.header.directoryTableBase == dtb && dump.notes.contains { $0.contains("does not translate KUSER_SHARED_DATA") })
        let full = CrashAnalyzer(parallelism: 1).analyze(try KernelDump(source: Fixtures.source(Forge.dump(Self.hang()))))
        #expect(CrashAnalyzer(parallelism: 1).analyze(dump).processes.map(\.name) == full.processes.map(\.name))

        // Without an IDT or GS base either (a vCPU in reset), a clear KDBG in physical memory
        // names the kernel.
        let kpcrs = Set(elf.kernel.processors.map(\.kpcr)).union([elf.kernel.interruptTable])
        for at in stride(from: 0, to: 0x2000, by: 4) where kpcrs.contains((0..<8).reduce(UInt64(0), { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) })) {
            for index in 0..<8 { bytes[at + index] = 0 }
        }
        let reset = try KernelDump(source: ByteSource(copying: bytes))
        #expect(reset.capture?.kernelBase == elf.kernel.kernelBase && reset.debuggerData.data != nil)
        #expect(reset.notes.contains { $0.contains("found through a clear KDDEBUGGER_DATA64 at physical") }, "\(reset.notes)")
    }
}
