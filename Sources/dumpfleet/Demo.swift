import ArgumentParser
import BlobStore
import CrashClusters
import Coordinator
import DumpAnalysis
import DumpFile
import DumpForge
import FleetClient
import Foundation
import Logging
import Store
import Worker

/// `dumpfleet demo`: the whole system on an embedded default, end to end. A private PostgreSQL
/// in a scratch folder, the coordinator on a free loopback port, two workers; a simulated
/// estate's dumps are forged, uploaded through the real HTTP path, analyzed, and what was found
/// is printed per cause and per VM. Everything is removed afterwards (unless --keep).
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the fleet on a private PostgreSQL: forge an estate's crashes, upload, analyze, report.",
        discussion: """
        Needs the PostgreSQL server binaries (Debian: the postgresql package); as root the \
        server runs as the postgres user. Nothing listens beyond loopback, and everything the \
        demo creates is removed when it ends.
        """
    )

    @Option(help: "Desktops in the simulated estate.")
    var vms = 24

    @Option(help: "Workers to start.")
    var workers = 2

    @Option(name: .customLong("memory-gib"), help: "RAM of the forged desktops, in GiB.")
    var memoryGiB: UInt64 = 4

    @Option(help: "Seed of the simulated estate.")
    var seed: UInt64 = 2026

    @Option(help: "Keep the folder (database, blobs, forged dumps) here instead of deleting it.")
    var keep: String?

    @OptionGroup var symbols: SymbolOptions

    @Flag(help: "Print the service logs too.")
    var verbose = false

    func validate() throws {
        guard (1...500).contains(vms) else { throw ValidationError("--vms must be 1 to 500") }
        guard (1...16).contains(workers) else { throw ValidationError("--workers must be 1 to 16") }
        guard (1...64).contains(memoryGiB) else { throw ValidationError("--memory-gib must be 1 to 64") }
    }

    func run() async throws {
        FleetLogging.bootstrap(level: verbose ? .info : .warning)
        let logger = Logger(label: "dumpfleet.demo")
        let folder = keep ?? NSTemporaryDirectory() + "dumpfleet-demo-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder + "/dumps", withIntermediateDirectories: true)
        defer { if keep == nil { try? FileManager.default.removeItem(atPath: folder) } }
        let started = Date()

        print("1. starting a private PostgreSQL in \(folder)/postgres")
        let postgres = EmbeddedPostgres(folder: folder + "/postgres")
        try postgres.start()
        defer { postgres.stop() }
        let interrupts = postgres.stopOnInterrupt { [keep] in
            if keep == nil { try? FileManager.default.removeItem(atPath: folder) }
            print("\ninterrupted: PostgreSQL stopped, " + (keep == nil ? "demo folder removed" : "demo folder kept: \(folder)"))
        }
        defer { interrupts.forEach { $0.cancel() } }
        do {
            try await runFleet(postgres: postgres, folder: folder, started: started, logger: logger)
        } catch where postgres.interrupted {
            // Ctrl-C stopped the server under the fleet: the interrupt handler ends the process.
            while true { sleep(60) }
        }
    }

    /// Steps 2 to 4 and the summary, on the started PostgreSQL.
    func runFleet(postgres: EmbeddedPostgres, folder: String, started: Date, logger: Logger) async throws {
        let token = (0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 36) }.joined()
        var settings = CoordinatorConfiguration(database: postgres.connectionString, blobRoot: folder + "/blobs",
                                                tokens: [AccessToken(name: "demo", secret: token)], analyzerVersion: CrashAnalyzer.version)
        settings.port = 0
        settings.reapIntervalSeconds = 2
        settings.minFreeBytes = 64 << 20  // a scratch machine's disk: keep only a small reserve
        let coordinator = try await Coordinator(configuration: settings, logger: logger).start()
        print("2. coordinator listening on \(coordinator.url); starting \(workers) worker\(workers == 1 ? "" : "s")")

        let symbolSource = try symbols.source()
        let fleet = (1...workers).map { index in
            var configuration = WorkerConfiguration(database: postgres.connectionString, blobs: .coordinator(url: coordinator.url, token: token),
                                                    scratch: folder + "/scratch-\(index)", analyzerVersion: CrashAnalyzer.version)
            configuration.leaseSeconds = 15
            configuration.pollSeconds = 1
            configuration.symbols = symbolSource
            return Worker(configuration: configuration, logger: logger)
        }
        let running = fleet.map { worker in Task { try await ThreadRunner.run { try worker.run() } } }

        var estate = Estate()
        estate.vms = vms
        estate.memoryGiB = memoryGiB
        let crashes = estate.crashes(seed: seed)
        print("3. forging and uploading \(crashes.count) dumps from \(vms) desktops")
        let uploader = Uploader(client: FleetClient(server: coordinator.url, token: token))
        var planted: [Int64: Estate.Crash] = [:]
        var uploadedBytes: UInt64 = 0
        for (index, crash) in crashes.enumerated() {
            let path = "\(folder)/dumps/\(crash.vm)-\(index).dmp"
            let dump = DumpForge.Forge.dump(crash.description)
            try MappedFile.writeSparse(path, size: dump.size, chunks: dump.chunks.map { ($0.offset, $0.bytes) })
            let status = try await uploader.upload(file: path, vm: crash.vm, host: crash.host, tags: ["pool": "vdi", "os": "win10-19041"])
            guard let dumpId = status.dumpId else { throw ValidationError("upload of \(path) returned no dump id") }
            planted[dumpId] = crash
            uploadedBytes += dump.size
            try? FileManager.default.removeItem(atPath: path)
            if (index + 1) % 10 == 0 || index + 1 == crashes.count { print("   \(index + 1) of \(crashes.count) uploaded") }
        }
        // The same dump uploaded again (a second collection from one VM): recorded, not re-analyzed.
        if let first = crashes.first {
            let path = "\(folder)/dumps/again.dmp"
            let dump = DumpForge.Forge.dump(first.description)
            try MappedFile.writeSparse(path, size: dump.size, chunks: dump.chunks.map { ($0.offset, $0.bytes) })
            let again = try await uploader.upload(file: path, vm: first.vm, host: first.host, tags: ["collected": "twice"])
            print("   re-uploading \(first.vm)'s dump: \(again.state.rawValue) as dump \(again.dumpId ?? 0), no second analysis")
        }

        print("4. waiting for the workers")
        let database = try PostgresConnection(postgres.connectionString)
        let catalog = Catalog(analyzerVersion: CrashAnalyzer.version)
        var status = try catalog.status(on: database)
        while (status.jobs["queued"] ?? 0) + (status.jobs["running"] ?? 0) > 0 {
            try await Task.sleep(for: .milliseconds(250))
            status = try catalog.status(on: database)
        }
        let elapsed = Date().timeIntervalSince(started)
        fleet.forEach { $0.drain() }
        for task in running { try await task.value }
        await coordinator.stop()

        print()
        print(try Self.summary(planted: planted, database: database))
        print()
        print("\(status.dumps) dumps (\(ProgressDisplay.bytes(uploadedBytes)) uncompressed), \(status.uploads) uploads, "
              + "jobs done \(status.jobs["done"] ?? 0), failed \(status.jobs["failed"] ?? 0); "
              + String(format: "%.1f s in all, %.0f dumps per minute", elapsed, Double(status.dumps) / elapsed * 60))
        print(keep == nil ? "demo folder removed" : "demo folder kept: \(folder) (PostgreSQL stopped)")
    }

    /// What the fleet found, bucket by bucket, next to what the simulation planted.
    static func summary(planted: [Int64: Estate.Crash], database: PostgresConnection) throws -> String {
        let rows = try database.execute("""
            SELECT s.bucket, array_to_string(array_agg(DISTINCT d.id ORDER BY d.id), ','),
                   count(DISTINCT u.vm_name), count(DISTINCT u.host)
            FROM signatures s JOIN dumps d ON d.id = s.dump_id JOIN uploads u ON u.dump_id = d.id
            GROUP BY s.bucket ORDER BY count(DISTINCT d.id) DESC, s.bucket
            """)
        var lines = ["What the fleet found (bucket: dumps, VMs, hosts; the cause the simulation planted):"]
        for row in rows.values {
            let ids = (row[1] ?? "").split(separator: ",").compactMap { Int64($0) }
            let causes = Dictionary(grouping: ids.compactMap { planted[$0]?.cause }, by: { $0 }).mapValues(\.count)
            let vmNames = Set(ids.compactMap { planted[$0]?.vm }).sorted()
            lines.append("  \(row[0] ?? "?"): \(ids.count) dump\(ids.count == 1 ? "" : "s"), \(row[2] ?? "0") VMs, \(row[3] ?? "0") hosts")
            lines.append("      planted: " + causes.sorted { $0.value > $1.value }.map { "\($0.key) ×\($0.value)" }.joined(separator: "; "))
            lines.append("      VMs: " + vmNames.prefix(8).joined(separator: ", ") + (vmNames.count > 8 ? ", … (\(vmNames.count - 8) more)" : ""))
        }
        lines.append("")
        let clusters = try ClusterQueries().list(on: database)
        lines.append("Clusters of alike crashes (dumpfleet clusters; the web UI at /ui): \(clusters.count) clusters for \(rows.count) buckets")
        for cluster in clusters.prefix(8) {
            lines.append("  cluster \(cluster.id): \(cluster.dumps) dumps, \(cluster.vms) VMs, \(cluster.hosts) hosts: " + cluster.buckets.joined(separator: " "))
        }
        lines.append("")
        lines.append("Per cause: how many of its dumps landed in its most common bucket")
        let buckets = Dictionary(uniqueKeysWithValues: try database.execute("SELECT dump_id, bucket FROM signatures").values.compactMap { row -> (Int64, String)? in
            guard let id = row[0].flatMap({ Int64($0) }), let bucket = row[1] else { return nil }
            return (id, bucket)
        })
        for cause in Estate.causes.map(\.name) {
            let ids = planted.filter { $0.value.cause == cause }.map(\.key)
            guard !ids.isEmpty else { continue }
            let counts = Dictionary(grouping: ids.compactMap { buckets[$0] }, by: { $0 }).mapValues(\.count)
            let top = counts.max { $0.value < $1.value }
            lines.append("  \(cause): \(top?.value ?? 0) of \(ids.count) in \(top?.key ?? "no bucket")")
        }
        return lines.joined(separator: "\n")
    }
}
