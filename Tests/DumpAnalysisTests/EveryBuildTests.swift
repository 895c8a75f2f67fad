import DumpAnalysis
import DumpForge
import DumpMemory
import Testing
import TestSupport

/// Each Windows build the offsets document lists, forged with its own structure layout (the
/// forge's BuildLayout) and analyzed: the table for that build must find the processes, the
/// threads and the timer lists, whatever moved between builds.
@Suite struct EveryBuildTests {
    static let builds: [UInt32] = [10240, 10586, 14393, 15063, 16299, 17134, 17763, 18326, 18362, 19041, 19045, 20348, 22000, 22621, 22631, 26100]

    @Test(arguments: builds)
    func aForgedBuildIsReadWithItsOwnTable(build: UInt32) throws {
        var description = DumpDescription.timerListCorruption(kind: .full)
        description.buildNumber = build
        description.memory = [0x1..<0x9F, 0x100..<0x8000]
        let forged = Forge.dump(description)
        let report = CrashAnalyzer().analyze(try KernelDump(source: Fixtures.source(forged)))
        let family: UInt32 = (19041...19045).contains(build) ? 19041 : build == 18362 ? 18326 : build == 22631 ? 22621 : build
        #expect(report.layoutSource == "KDDEBUGGER_DATA64 and the build \(family) table", "\(String(describing: report.layoutSource))")
        #expect(report.processes.map(\.name) == forged.kernel.processes.map(\.imageName), "build \(build)")
        #expect(report.processes.map(\.threads) == forged.kernel.processes.map(\.threads.count), "build \(build)")
        // The timer lists are found (256 or 512 of them per CPU) and the overwritten one names its writer.
        #expect(report.culprit.name == "VideoAccelerator.exe", "build \(build): \(report.culprit)")
        #expect(report.failureBucketId == "0x3B_c0000005_CORRUPTION_VideoAccelerator.exe")
        #expect(report.cpus.count == description.processors && report.cpus.allSatisfy { $0.thread != nil }, "build \(build): \(report.cpus.map(\.activity))")
    }
}
