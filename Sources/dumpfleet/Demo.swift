import ArgumentParser
import DumpAnalysis
import DumpFile
import DumpForge
import DumpMemory
import Foundation

/// `dumpfleet demo`: the end-to-end run on an embedded default. For now it forges one dump of
/// each kind, inspects and analyzes it; the queue, workers and PostgreSQL join as they arrive.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Forge a sample of each dump kind into a scratch folder, inspect and analyze them."
    )

    @Option(name: .customLong("memory-gib"), help: "RAM of the forged machines, in GiB.")
    var memoryGiB: UInt64 = 16

    @Option(help: "Keep the dumps in this folder instead of deleting them.")
    var keep: String?

    func validate() throws {
        guard (1...1024).contains(memoryGiB) else { throw ValidationError("--memory-gib must be 1 to 1024") }
    }

    func run() throws {
        let folder = keep ?? NSTemporaryDirectory() + "dumpfleet-demo-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { if keep == nil { try? FileManager.default.removeItem(atPath: folder) } }
        // One crash of each kind the forge knows, each in another dump type.
        let samples: [(String, DumpDescription)] = [
            ("display-driver-full", .displayDriverFault(kind: .full, layoutSeed: 1)),
            ("timer-corruption-kernel", .timerListCorruption(kind: .bitmapKernel, layoutSeed: 2)),
            ("spinlock-hang-complete", .spinLockHang(kind: .bitmapFull, layoutSeed: 3)),
            ("network-driver-minidump", .networkDriverFault(kind: .triage, layoutSeed: 4)),
        ]
        for (name, sample) in samples {
            var description = sample
            description.memory = DumpDescription.vmMemory(gibibytes: memoryGiB)
            let path = "\(folder)/\(name).dmp"
            let started = Date()
            let dump = DumpForge.Forge.dump(description)
            try MappedFile.writeSparse(path, size: dump.size, chunks: dump.chunks.map { ($0.offset, $0.bytes) })
            let forged = Date().timeIntervalSince(started)
            let report = try DumpInspector.inspect(MappedFile.open(path))
            print("== \(name).dmp: \(dump.size / 1_048_576) MiB, forged in \(String(format: "%.2f", forged)) s")
            print(report.text)
            print()
            let analysis = CrashAnalyzer().analyze(try KernelDump(source: MappedFile.open(path)))
            print("   bucket \(analysis.failureBucketId), culprit \(analysis.culprit.name), signature \(analysis.signature.id)")
            print()
        }
        print(keep == nil ? "demo dumps deleted" : "demo dumps kept in \(folder)")
    }
}
