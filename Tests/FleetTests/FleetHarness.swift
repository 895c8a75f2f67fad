import BlobStore
import Coordinator
import DumpAnalysis
import DumpFile
import DumpForge
import FleetAPI
import FleetClient
import Foundation
import Logging
import Store
import TestSupport
import Worker

/// One test's fleet: a fresh database on the test server, a blob folder, and (when asked) a
/// coordinator on a free loopback port. Dumps are forged small (1 GiB machines, minidumps and
/// kernel dumps), so each test moves megabytes, not gigabytes.
final class FleetHarness: @unchecked Sendable {
    static let token = "test-token-0123456789abcdef"
    static let analyzerVersion = CrashAnalyzer.version
    let database: String
    let folder: String
    let blobRoot: String
    let blobs: BlobStore
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
    var coordinator: RunningCoordinator?

    /// A fresh database on the shared test server, or `database` when given.
    init(database: String? = nil) throws {
        self.database = try database ?? TestDatabase.fresh()
        folder = Fixtures.temporaryFolder()
        blobRoot = folder + "/blobs"
        blobs = try BlobStore(root: blobRoot)
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    func startCoordinator(maxUploadBytes: UInt64 = 1 << 30) async throws -> FleetClient {
        var configuration = CoordinatorConfiguration(database: database, blobRoot: blobRoot,
                                                     tokens: [AccessToken(name: "tester", secret: Self.token)], analyzerVersion: Self.analyzerVersion)
        configuration.port = 0
        configuration.maxUploadBytes = maxUploadBytes
        configuration.reapIntervalSeconds = 0.5
        configuration.minFreeBytes = 0
        let running = try await Coordinator(configuration: configuration, logger: logger).start()
        coordinator = running
        return FleetClient(server: running.url, token: Self.token)
    }

    func stop() async {
        await coordinator?.stop()
    }

    /// A `dumpfleet coordinator` process on this harness's database and blob folder, and a
    /// client with the harness's token.
    func startCoordinatorProcess(_ arguments: [String] = [], port: Int = 0, openFiles: Int? = nil, environment: [String: String] = [:],
                                 tokens: [(name: String, secret: String)] = [("tester", FleetHarness.token)],
                                 name: String = "coordinator") throws -> (CoordinatorProcess, FleetClient) {
        let process = try CoordinatorProcess(database: database, blobs: blobRoot, tokens: tokens, folder: folder, arguments: ["--min-free-gib", "0"] + arguments,
                                             port: port, openFiles: openFiles, environment: environment, name: name)
        return (process, FleetClient(server: process.url, token: Self.token))
    }

    /// Forges a crash of a machine with `gibibytes` of RAM into the harness folder, as a sparse
    /// file; different seeds give different bytes.
    func forge(seed: UInt64, kind: DumpDescription.DumpKind = .triage, gibibytes: UInt64 = 1,
               scenario: (DumpDescription.DumpKind, UInt64) -> DumpDescription = { .displayDriverFault(kind: $0, layoutSeed: $1) }) throws -> String {
        var description = scenario(kind, seed)
        description.memory = DumpDescription.vmMemory(gibibytes: gibibytes)
        let dump = DumpForge.Forge.dump(description)
        let path = "\(folder)/forged-\(seed)-\(UInt32.random(in: 0...UInt32.max)).dmp"
        try MappedFile.writeSparse(path, size: dump.size, chunks: dump.chunks.map { ($0.offset, $0.bytes) })
        return path
    }

    /// Puts a file in the blob store and queues it, as a finished upload would; returns the dump id.
    func storeAndQueue(_ path: String, vm: String = "vm-1", maxAttempts: Int? = nil) throws -> Int64 {
        let (contentHash, size) = try blobs.store(file: path)
        let db = try PostgresConnection(database)
        let session = Catalog.Session(id: UUID().uuidString, announcement: UploadAnnouncement(contentHash: contentHash, size: size, vm: vm), uploadedBy: "test")
        let status = try Catalog(analyzerVersion: Self.analyzerVersion).finish(session, on: db)
        if let maxAttempts { try db.execute("UPDATE jobs SET max_attempts = $1", [String(maxAttempts)]) }
        return status.dumpId!
    }

    func workerConfiguration(scratch: String? = nil) -> WorkerConfiguration {
        var configuration = WorkerConfiguration(database: database, blobs: .directory(blobRoot),
                                                scratch: scratch ?? folder + "/scratch-\(UInt32.random(in: 0...UInt32.max))",
                                                analyzerVersion: Self.analyzerVersion)
        configuration.leaseSeconds = 3
        configuration.pollSeconds = 0.3
        configuration.analysisThreads = 1
        return configuration
    }

    /// Runs in-process workers until `done` holds (checked every 20 ms) or `timeout` passes.
    /// A worker that stops with an error makes this throw it, rather than leave the test to time
    /// out without saying why.
    func runWorkers(_ configurations: [WorkerConfiguration], timeout: Double = 60, until done: () throws -> Bool) throws -> Bool {
        let workers = configurations.map { Worker(configuration: $0, logger: logger) }
        let finished = DispatchGroup()
        let failures = Failures()
        for worker in workers {
            finished.enter()
            Thread.detachNewThread {
                do { try worker.run() } catch { failures.add(error) }
                finished.leave()
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        var reached = false
        while Date() < deadline && failures.first == nil {
            if try done() {
                reached = true
                break
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        workers.forEach { $0.drain() }
        finished.wait()
        if let error = failures.first { throw error }
        return reached
    }

    final class Failures: @unchecked Sendable {
        private let lock = NSLock()
        private var errors: [any Error] = []
        func add(_ error: any Error) { lock.withLock { errors.append(error) } }
        var first: (any Error)? { lock.withLock { errors.first } }
    }

    func count(_ sql: String, _ parameters: [String?] = []) throws -> Int {
        let value = try PostgresConnection(database).execute(sql, parameters).values.first?.first ?? nil
        return Int(value ?? "0") ?? 0
    }
}

/// A `dumpfleet worker` process on the harness's database and blob folder, for the tests that
/// kill or freeze workers; `failpoint` arms DUMPFLEET_FAILPOINT (see Sources/Worker/Failpoint.swift).
func workerProcess(_ harness: FleetHarness, failpoint: String? = nil, lease: Double = 2, name: String) throws -> ServiceProcess {
    try ServiceProcess(["worker", "--database", harness.database, "--blobs", harness.blobRoot, "--scratch", "\(harness.folder)/scratch",
                        "--lease", String(lease), "--poll", "0.3", "--analysis-threads", "1"],
                       environment: ["DUMPFLEET_FAILPOINT": failpoint ?? "", "DUMPFLEET_LOG_LEVEL": "info"],
                       log: "\(harness.folder)/\(name).log")
}
