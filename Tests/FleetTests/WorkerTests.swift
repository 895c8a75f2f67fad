import AsyncHTTPClient
import Coordinator
import DumpFile
import DumpForge
import Foundation
import NIOCore
import Store
import TestSupport
import Testing
import Worker

/// Workers against a real PostgreSQL: exactly-once under concurrency, crashes and freezes at
/// the worst moments, lost connections, a restarted server, polling without notifications,
/// and dumps that cannot be read.
@Suite struct WorkerTests {
    @Test func everyJobIsDoneExactlyOnceByManyWorkers() throws {
        let harness = try FleetHarness()
        let jobs = 24
        for seed in 0..<UInt64(jobs) { _ = try harness.storeAndQueue(try harness.forge(seed: 100 + seed)) }
        var configurations = (0..<3).map { _ in harness.workerConfiguration() }
        for index in configurations.indices { configurations[index].concurrency = 2 }
        let finished = try harness.runWorkers(configurations) {
            try harness.count("SELECT count(*) FROM jobs WHERE state = 'done'") == jobs
        }
        #expect(finished)
        #expect(try harness.count("SELECT count(*) FROM job_attempts") == jobs, "one attempt per job: nothing ran twice")
        #expect(try harness.count("SELECT count(*) FROM job_attempts WHERE outcome = 'done'") == jobs)
        #expect(try harness.count("SELECT count(*) FROM reports") == jobs)
        #expect(try harness.count("SELECT count(*) FROM signatures WHERE bucket = '0x1E_c0000005_nvlddmkm+0x1091'") == jobs)
        #expect(try harness.count("SELECT count(*) FROM dumps WHERE build = 19041 AND bugcheck_code = 30") == jobs)
    }

    @Test(arguments: ["after-claim", "during-analysis", "before-commit"])
    func aWorkerKilledMidJobLeavesOneResultAfterTheRetry(failpoint: String) throws {
        let harness = try FleetHarness()
        let dumpId = try harness.storeAndQueue(try harness.forge(seed: 7))
        let doomed = try workerProcess(harness, failpoint: failpoint, name: "doomed")
        #expect(doomed.waitFor("failpoint \(failpoint) reached"), "\(doomed.output)")
        doomed.killAndWait()
        #expect(try harness.count("SELECT count(*) FROM reports") == 0, "nothing of the killed attempt is visible")
        let scratch = harness.folder + "/scratch"
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch).count == 1, "the killed worker left its folder")
        let rescuer = try workerProcess(harness, name: "rescuer")
        let deadline = Date().addingTimeInterval(30)
        while try harness.count("SELECT count(*) FROM jobs WHERE state = 'done'") == 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        rescuer.signal(SIGTERM)
        rescuer.process.waitUntilExit()
        #expect(rescuer.process.terminationStatus == 0, "SIGTERM drains and exits cleanly: \(rescuer.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch).isEmpty, "the rescuer removed the dead worker's scratch, then its own")
        #expect(try harness.count("SELECT count(*) FROM reports WHERE dump_id = $1 AND attempt = 2", [String(dumpId)]) == 1)
        #expect(try harness.count("SELECT count(*) FROM signatures") == 1)
        #expect(try harness.count("SELECT count(*) FROM job_attempts WHERE attempt = 1 AND outcome = 'expired'") == 1)
        #expect(try harness.count("SELECT count(*) FROM job_attempts WHERE attempt = 2 AND outcome = 'done'") == 1)
    }

    @Test func aFrozenWorkerPastItsLeaseIsFencedOut() throws {
        let harness = try FleetHarness()
        _ = try harness.storeAndQueue(try harness.forge(seed: 8))
        // The frozen worker pauses 3 s inside the analysis; SIGSTOP holds it far longer.
        let frozen = try workerProcess(harness, failpoint: "during-analysis:3", lease: 2, name: "frozen")
        #expect(frozen.waitFor("failpoint during-analysis reached"), "\(frozen.output)")
        frozen.signal(SIGSTOP)
        let other = try workerProcess(harness, lease: 2, name: "other")
        let deadline = Date().addingTimeInterval(30)
        while try harness.count("SELECT count(*) FROM jobs WHERE state = 'done'") == 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try harness.count("SELECT count(*) FROM reports WHERE attempt = 2") == 1)
        frozen.signal(SIGCONT)
        #expect(frozen.waitFor("lease lost"), "the old worker learns it lost the job: \(frozen.output)")
        frozen.signal(SIGTERM)
        other.signal(SIGTERM)
        frozen.process.waitUntilExit()
        other.process.waitUntilExit()
        #expect(try harness.count("SELECT count(*) FROM reports") == 1 && harness.count("SELECT count(*) FROM reports WHERE attempt = 2") == 1,
                "the frozen attempt wrote nothing")
        #expect(try harness.count("SELECT count(*) FROM job_attempts WHERE attempt = 1 AND outcome = 'expired'") == 1)
    }

    @Test func workersRecoverFromKilledConnectionsAndAServerRestart() throws {
        // A server of its own: this test restarts it.
        let server = EmbeddedPostgres()
        try server.start()
        defer { server.stop() }
        try Migrations.apply(PostgresConnection(server.connectionString))
        let harness = try FleetHarness(database: server.connectionString)
        // Two worker processes whose every job pauses 0.3 s in the middle of its analysis (a
        // failpoint), so that work is in flight for certain when every connection is killed
        // (three times) and then the server restarts: each disruption waits for a job that is
        // claimed and not finished, not for the clock.
        let paths = try (0..<UInt64(30)).map { try harness.forge(seed: 200 + $0) }
        for path in paths { _ = try harness.storeAndQueue(path) }
        let workers = try (0..<2).map { try workerProcess(harness, failpoint: "during-analysis:0.3", lease: 5, name: "worker-\($0)") }
        defer { workers.forEach { $0.killAndWait() } }
        var disruptions = 0
        var inFlight: [Int] = []
        let deadline = Date().addingTimeInterval(120)
        var finished = false
        while Date() < deadline && !finished {
            let running = (try? harness.count("SELECT count(*) FROM jobs WHERE state = 'running'")) ?? 0
            if disruptions < 4 && running > 0 {
                inFlight.append(running)
                if disruptions < 3 {
                    let admin = try PostgresConnection(server.connectionString)
                    try admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname IS NOT NULL")
                } else {
                    try server.restart()
                }
                disruptions += 1
                Thread.sleep(forTimeInterval: 0.5)  // let the workers notice and reconnect before the next one
            }
            finished = disruptions == 4 && (try? harness.count("SELECT count(*) FROM jobs WHERE state = 'done'")) == paths.count
            Thread.sleep(forTimeInterval: 0.05)
        }
        #expect(finished, "all jobs done after \(disruptions) disruptions")
        #expect(inFlight.count == 4, "every disruption found jobs in flight: \(inFlight)")
        #expect(try harness.count("SELECT count(*) FROM reports") == paths.count)
        #expect(try harness.count("SELECT count(*) FROM (SELECT job_id FROM job_attempts WHERE outcome = 'done' GROUP BY job_id HAVING count(*) = 1) once") == paths.count)
    }

    /// A worker that does not LISTEN finds a job by polling; one that does is woken by the
    /// notification long before its next poll (an hour away). Behaviour, not a timing: each
    /// worker has only the harness's timeout.
    @Test func pollingFindsJobsAndANotificationWakesAnIdleWorker() throws {
        for listen in [false, true] {
            let harness = try FleetHarness()
            var configuration = harness.workerConfiguration()
            configuration.listen = listen
            configuration.pollSeconds = listen ? 3600 : 0.3
            let path = try harness.forge(seed: 9)
            var enqueued = false
            let finished = try harness.runWorkers([configuration]) {
                // Queued once the worker has claimed and found nothing (and LISTENs, when it
                // does), so that only a later poll, or the notification, brings it the job.
                if !enqueued, try harness.count("""
                    SELECT count(*) FILTER (WHERE query LIKE '%WITH picked AS%') * (CASE WHEN $1 THEN count(*) FILTER (WHERE query LIKE 'LISTEN%') ELSE 1 END)
                    FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle'
                    """, [listen ? "true" : "false"]) > 0 {
                    _ = try harness.storeAndQueue(path)
                    enqueued = true
                }
                return try harness.count("SELECT count(*) FROM jobs WHERE state = 'done'") == 1
            }
            #expect(finished, listen ? "the notification woke the worker" : "polling found the job")
        }
    }

    @Test func anUnreadableDumpEndsFailedWithItsErrorAfterBackedOffAttempts() throws {
        let harness = try FleetHarness()
        let garbage = harness.folder + "/garbage.dmp"
        var random = SeededRandom(seed: 42)
        _ = FileManager.default.createFile(atPath: garbage, contents: Data((0..<65536).map { _ in UInt8(truncatingIfNeeded: random.next()) }))
        _ = try harness.storeAndQueue(garbage, maxAttempts: 3)
        var configuration = harness.workerConfiguration()
        configuration.retry = RetryPolicy(baseSeconds: 0.3, capSeconds: 5, jitter: 0)
        let finished = try harness.runWorkers([configuration]) {
            try harness.count("SELECT count(*) FROM jobs WHERE state = 'failed'") == 1
        }
        #expect(finished)
        let db = try PostgresConnection(harness.database)
        let error = try db.execute("SELECT last_error FROM jobs").values[0][0] ?? ""
        #expect(error.contains("PAGE") || error.contains("signature") || error.contains("dump"), "\(error)")
        let outcomes = try db.execute("SELECT outcome FROM job_attempts ORDER BY attempt").values.map { $0[0] ?? "" }
        #expect(outcomes == ["retry", "retry", "failed"])
        // Backoff: 0.3 s after the first failure, 0.6 s after the second.
        let gaps = try db.execute("""
            SELECT extract(epoch FROM claimed_at - lag(finished_at) OVER (ORDER BY attempt)) FROM job_attempts ORDER BY attempt
            """).values.compactMap { $0[0].flatMap(Double.init) }
        #expect(gaps.count == 2 && gaps[0] >= 0.28 && gaps[1] >= 0.58, "\(gaps)")
        #expect(try harness.count("SELECT count(*) FROM reports") == 0)
    }

    @Test func aTruncatedDumpGivesAPartialReport() throws {
        let harness = try FleetHarness()
        let path = try harness.forge(seed: 10, kind: .bitmapKernel)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! NSNumber
        truncate(path, off_t(size.int64Value * 2 / 3))
        _ = try harness.storeAndQueue(path)
        let finished = try harness.runWorkers([harness.workerConfiguration()]) {
            try harness.count("SELECT count(*) FROM jobs WHERE state = 'done'") == 1
        }
        #expect(finished)
        let report = try PostgresConnection(harness.database).execute("SELECT report->>'completeness', report->'notes' FROM reports").values[0]
        #expect(report[0]?.contains("truncated") == true || report[1]?.contains("past the end") == true, "\(report)")
    }

    /// A hung VM captured by its KVM host (a QEMU ELF core) goes through the queue like any
    /// dump: the worker finds the kernel without the guest's help and stores a live capture's
    /// report.
    @Test func aHypervisorCaptureIsAnalyzedLikeADump() throws {
        let harness = try FleetHarness()
        var description = DumpDescription.spinLockHang(kind: .full, layoutSeed: 12)
        description.memory = DumpDescription.vmMemory(gibibytes: 1)
        let capture = DumpForge.Forge.elfCore(description)
        let path = "\(harness.folder)/vdi-hung.elf"
        try MappedFile.writeSparse(path, size: capture.size, chunks: capture.chunks.map { ($0.offset, $0.bytes) })
        _ = try harness.storeAndQueue(path, vm: "vdi-hung")
        // Another VM with the same hang, captured as a flattened kdump file (pages stored as
        // they are: the forge has no compressor, and the container allows it).
        description.layoutSeed = 13
        let kdump = DumpForge.Forge.kdump(description, KdumpOptions(flattened: true))
        try MappedFile.writeSparse("\(harness.folder)/vdi-hung-2.kdump", size: kdump.size, chunks: kdump.chunks.map { ($0.offset, $0.bytes) })
        _ = try harness.storeAndQueue("\(harness.folder)/vdi-hung-2.kdump", vm: "vdi-hung-2")
        let finished = try harness.runWorkers([harness.workerConfiguration()]) {
            try harness.count("SELECT count(*) FROM jobs WHERE state = 'done'") == 2
        }
        #expect(finished)
        let rows = try PostgresConnection(harness.database).execute("SELECT report->>'dumpType', report->>'failureBucketId' FROM reports ORDER BY dump_id").values
        #expect(rows.count == 2 && rows[0][0]?.hasPrefix("QEMU ELF core") == true && rows[1][0]?.hasPrefix("QEMU kdump-compressed file (flattened)") == true, "\(rows)")
        #expect(rows.allSatisfy { $0[1]?.hasPrefix("LIVE_vfstor+") == true } && rows[0][1] == rows[1][1], "one hang, one bucket: \(rows)")
    }

    @Test func aWorkerServesItsMetrics() async throws {
        let harness = try FleetHarness()
        _ = try harness.storeAndQueue(try harness.forge(seed: 11))
        let worker = Worker(configuration: harness.workerConfiguration(), logger: harness.logger)
        let port = Tools.freePort()
        let server = Task { try await MetricsEndpoint.serve(worker.metrics.registry, host: "127.0.0.1", port: port, logger: harness.logger) }
        defer { server.cancel() }
        let running = Task.detached { try worker.run() }
        var text = ""
        for _ in 0..<100 where !text.contains(#"dumpfleet_worker_jobs_total{outcome="done"} 1"#) {
            try await Task.sleep(for: .milliseconds(100))
            let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/metrics"), timeout: .seconds(5))
            if let response { text = String(buffer: try await response.body.collect(upTo: 1 << 20)) }
        }
        worker.drain()
        try await running.value
        #expect(text.contains(#"dumpfleet_worker_jobs_total{outcome="done"} 1"#), "\(text)")
        for name in ["dumpfleet_worker_fetched_bytes_total", "dumpfleet_worker_analysis_seconds_bucket", "dumpfleet_worker_queue_lag_seconds",
                     "dumpfleet_worker_heartbeat_lateness_seconds"] {
            #expect(text.contains(name), "\(name)")
        }
    }
}
