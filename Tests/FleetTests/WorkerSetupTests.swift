import Foundation
import Store
import Testing
import TestSupport

/// A worker whose own setup is wrong (a token the coordinator refuses, a full scratch disk)
/// must not use up the attempts of the jobs it claims: it gives them back, says why, and
/// claims nothing until its setup works. And failed jobs can be queued again by command.
@Suite struct WorkerSetupTests {
    static let workerToken = "worker-token-0123456789abcdef"

    @Test func aWorkerWhoseTokenIsRefusedAtStartClaimsNothing() throws {
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        _ = try harness.storeAndQueue(try harness.forge(seed: 61))
        let worker = try ServiceProcess(["worker", "--database", harness.database, "--server", coordinator.url, "--token", "not-this-coordinators-token",
                                         "--scratch", harness.folder + "/scratch", "--poll", "0.3"], log: harness.folder + "/worker.log")
        #expect(worker.waitForExit(timeout: 30), "the worker stops at once")
        #expect(worker.process.terminationStatus != 0 && worker.output.contains("refuses this worker's token"), "\(worker.output)")
        #expect(try harness.count("SELECT count(*) FROM jobs WHERE state = 'queued' AND attempt = 0") == 1, "nothing was claimed")
    }

    @Test func aTokenRefusedWhileTheWorkerRunsGivesTheJobBackWithoutUsingAnAttempt() throws {
        let harness = try FleetHarness()
        var (coordinator, _) = try harness.startCoordinatorProcess(tokens: [("tester", FleetHarness.token), ("worker", Self.workerToken)])
        let worker = try ServiceProcess(["worker", "--database", harness.database, "--server", coordinator.url, "--token", Self.workerToken,
                                         "--scratch", harness.folder + "/scratch", "--poll", "0.3", "--lease", "3", "--setup-retry", "0.5s"],
                                        log: harness.folder + "/worker.log")
        #expect(worker.waitFor("worker started"), "\(worker.output)")
        // The coordinator comes back on the same port without the worker's token.
        let port = coordinator.port
        coordinator.stop()
        (coordinator, _) = try harness.startCoordinatorProcess(port: port, name: "without-worker-token")
        defer { coordinator.stop() }
        let dumpId = try harness.storeAndQueue(try harness.forge(seed: 62))
        #expect(worker.waitFor("worker paused", timeout: 30), "\(worker.output)")
        Thread.sleep(forTimeInterval: 2)  // paused: it claims no more, however often it looks
        worker.signal(SIGTERM)
        #expect(worker.waitForExit(timeout: 30))
        #expect(worker.process.terminationStatus == 0, "\(worker.output)")
        #expect(try harness.count("SELECT count(*) FROM job_attempts WHERE outcome = 'given back'") == 1, "\(worker.output)")
        #expect(try harness.count("SELECT count(*) FROM jobs WHERE dump_id = $1 AND state = 'queued' AND max_attempts = 6", [String(dumpId)]) == 1,
                "the job waits with its five attempts intact")
        #expect(worker.output.contains("refuses this worker's token"))
    }

    /// A --blobs that is not the blob store (a wrong path, a mount that is not there) is the
    /// worker's trouble: it claims nothing, rather than failing every job as a missing blob.
    @Test func aWorkerWhoseBlobFolderIsWrongClaimsNothing() throws {
        let harness = try FleetHarness()
        _ = try harness.storeAndQueue(try harness.forge(seed: 66))
        let empty = harness.folder + "/not-mounted"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let worker = try ServiceProcess(["worker", "--database", harness.database, "--blobs", empty, "--scratch", harness.folder + "/scratch",
                                         "--poll", "0.3", "--setup-retry", "0.5s"], log: harness.folder + "/worker.log")
        defer { worker.killAndWait() }
        #expect(worker.waitFor("worker paused", timeout: 30) && worker.output.contains("is not a blob store"), "\(worker.output)")
        Thread.sleep(forTimeInterval: 1)
        #expect(try harness.count("SELECT count(*) FROM jobs WHERE state = 'queued' AND attempt = 0") == 1, "nothing was claimed")
        #expect(try FileManager.default.contentsOfDirectory(atPath: empty).isEmpty, "the worker wrote nothing into it")
    }

    @Test func aFullScratchDiskGivesJobsBackUntilThereIsRoom() throws {
        guard getuid() == 0 else {
            #expect(!Tools.isCI, "CI runs as root, which this check needs to mount a small tmpfs")
            print("note: not root; skipping the full-scratch-disk check (it mounts a 16 MiB tmpfs)")
            return
        }
        let harness = try FleetHarness()
        let scratch = harness.folder + "/small-scratch"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        #expect(try Tools.run("/bin/mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", scratch]).status == 0)
        defer { _ = try? Tools.run("/bin/umount", ["-l", scratch]) }
        // Something else has filled the disk but for 128 KiB: enough for the worker's own
        // check of its scratch folder, not for a dump.
        let ballast = scratch + "/ballast"
        #expect(try Tools.run("/usr/bin/fallocate", ["-l", String((16 << 20) - (128 << 10)), ballast]).status == 0)
        _ = try harness.storeAndQueue(try harness.forge(seed: 63, kind: .bitmapKernel))
        let worker = try ServiceProcess(["worker", "--database", harness.database, "--blobs", harness.blobRoot, "--scratch", scratch,
                                         "--poll", "0.3", "--lease", "3", "--setup-retry", "0.5s"], log: harness.folder + "/worker.log")
        defer { worker.killAndWait() }
        #expect(worker.waitFor("worker paused", timeout: 30), "\(worker.output)")
        // It waits for the room the dump needs, rather than claiming it again and again.
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try harness.count("SELECT count(*) FROM job_attempts WHERE outcome = 'given back'") == 1, "\(worker.output)")
        #expect(worker.output.contains("No space left on device") && worker.output.contains("needs up to"), "\(worker.output)")
        #expect(try harness.count("SELECT count(*) FROM jobs WHERE state = 'failed'") == 0)
        #expect(try harness.count("SELECT count(*) FROM job_attempts WHERE outcome IN ('retry', 'failed')") == 0, "no attempt counted")

        try FileManager.default.removeItem(atPath: ballast)
        let deadline = Date().addingTimeInterval(30)
        while try harness.count("SELECT count(*) FROM jobs WHERE state = 'done'") == 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try harness.count("SELECT count(*) FROM jobs WHERE state = 'done'") == 1, "\(worker.output)")
        #expect(worker.output.contains("worker resumed"))
    }

    @Test func failedJobsAreQueuedAgainByCommand() throws {
        let harness = try FleetHarness()
        let first = try harness.storeAndQueue(try harness.forge(seed: 64))
        let second = try harness.storeAndQueue(try harness.forge(seed: 65), vm: "vm-2")
        let db = try PostgresConnection(harness.database)
        try db.execute("UPDATE jobs SET state = 'failed', attempt = 5, finished_at = now(), last_error = 'No space left on device' WHERE dump_id = $1",
                       [String(first)])
        try db.execute("UPDATE jobs SET state = 'failed', attempt = 5, finished_at = now(), last_error = 'HTTP 401' WHERE dump_id = $1", [String(second)])
        let requeue = try ServiceProcess.run(["requeue", "--error", "No space left", "--database", harness.database], log: harness.folder + "/requeue.log")
        #expect(requeue.status == 0 && requeue.output.contains("queued 1 failed job again"), "\(requeue.output)")
        #expect(try harness.count("SELECT count(*) FROM jobs WHERE dump_id = $1 AND state = 'queued' AND max_attempts = 10", [String(first)]) == 1)
        #expect(try harness.count("SELECT count(*) FROM jobs WHERE dump_id = $1 AND state = 'failed'", [String(second)]) == 1)
        let all = try ServiceProcess.run(["requeue", "--all-failed", "--json", "--database", harness.database], log: harness.folder + "/all.log")
        #expect(all.output.contains("\"requeued\""), "\(all.output)")
        #expect(try harness.count("SELECT count(*) FROM jobs WHERE state = 'failed'") == 0)
        let none = try ServiceProcess.run(["requeue", "--all-failed", "--database", harness.database], log: harness.folder + "/none.log")
        #expect(none.output.contains("no failed job matched"))
        let bare = try ServiceProcess.run(["requeue", "--database", harness.database], log: harness.folder + "/bare.log")
        #expect(bare.status != 0 && bare.output.contains("choose jobs"), "\(bare.output)")
    }
}
