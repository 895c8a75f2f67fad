import Foundation
import Store
import TestSupport
import Testing

/// The queue against a real PostgreSQL: claims, leases, fencing, retries, dead letters.
@Suite struct JobQueueTests {
    static func dumps(_ count: Int, on db: PostgresConnection) throws -> [Int64] {
        try (0..<count).map { index in
            let hash = String(repeating: "0", count: 48) + String(format: "%016x", index)
            return Int64(try db.execute("INSERT INTO dumps (content_hash, size) VALUES ($1, 4096) RETURNING id", [hash]).values[0][0]!)!
        }
    }

    static let signature = StoredSignature(id: "0123456789abcdef", bucket: "0x1E_c0000005_x+0x1", bugCheckClass: "0x1E_c0000005", featuresJSON: "{}")

    @Test func enqueueDeduplicatesAndClaimsByPriority() throws {
        let db = try PostgresConnection(TestDatabase.fresh())
        let queue = JobQueue()
        let ids = try Self.dumps(3, on: db)
        #expect(try queue.enqueue(dumpId: ids[0], analyzerVersion: 1, on: db) != nil)
        #expect(try queue.enqueue(dumpId: ids[0], analyzerVersion: 1, on: db) == nil, "the same dump and version is one job")
        try queue.enqueue(dumpId: ids[1], analyzerVersion: 1, priority: 10, on: db)
        try queue.enqueue(dumpId: ids[2], analyzerVersion: 1, on: db)
        let leases = try queue.claim(workerId: "w1", limit: 2, leaseSeconds: 30, on: db)
        #expect(leases.map(\.dumpId) == [ids[0], ids[1]].sorted())
        #expect(leases.allSatisfy { $0.attempt == 1 })
        #expect(try queue.claim(workerId: "w2", limit: 5, leaseSeconds: 30, on: db).map(\.dumpId) == [ids[2]])
        #expect(try queue.claim(workerId: "w2", limit: 5, leaseSeconds: 30, on: db).isEmpty)
        for lease in leases { try queue.complete(lease, report: "{\"ok\": true}", signature: Self.signature, on: db) }
        #expect(try db.execute("SELECT count(*) FROM reports").values[0][0] == "2")
    }

    @Test func aLateWorkerCannotOverwriteTheAttemptThatReplacedIt() throws {
        let db = try PostgresConnection(TestDatabase.fresh())
        let queue = JobQueue()
        let id = try Self.dumps(1, on: db)[0]
        try queue.enqueue(dumpId: id, analyzerVersion: 1, on: db)
        let stale = try #require(try queue.claim(workerId: "paused", limit: 1, leaseSeconds: 0.05, on: db).first)
        // Until the database's clock has passed the lease (no fixed sleep: a loaded machine may
        // take longer to get here than the lease lasts, or less).
        var reaped = 0
        for _ in 0..<200 where reaped == 0 {
            reaped = try queue.reapExpiredLeases(on: db)
            if reaped == 0 { Thread.sleep(forTimeInterval: 0.01) }
        }
        #expect(reaped == 1)
        let fresh = try #require(try queue.claim(workerId: "live", limit: 1, leaseSeconds: 30, on: db).first)
        #expect(fresh.attempt == 2)
        #expect(throws: JobQueue.LeaseLost.self) { try queue.heartbeat(stale, leaseSeconds: 30, on: db) }
        #expect(throws: JobQueue.LeaseLost.self) { try queue.complete(stale, report: "{}", signature: Self.signature, on: db) }
        #expect(throws: JobQueue.LeaseLost.self) { try queue.fail(stale, error: "late", on: db) }
        #expect(try db.execute("SELECT count(*) FROM reports").values[0][0] == "0", "the stale worker wrote nothing")
        try queue.complete(fresh, report: "{}", signature: Self.signature, on: db)
        let outcomes = try db.execute("SELECT attempt, outcome FROM job_attempts ORDER BY attempt").values
        #expect(outcomes == [["1", "expired"], ["2", "done"]])
    }

    @Test func failuresBackOffThenEndInTheDeadLetterState() throws {
        let db = try PostgresConnection(TestDatabase.fresh())
        let queue = JobQueue(retry: RetryPolicy(baseSeconds: 0.01, capSeconds: 0.05, jitter: 0))
        let id = try Self.dumps(1, on: db)[0]
        try queue.enqueue(dumpId: id, analyzerVersion: 1, maxAttempts: 3, on: db)
        for attempt in 1...3 {
            var lease: JobQueue.Lease?
            for _ in 0..<100 where lease == nil {
                lease = try queue.claim(workerId: "w", limit: 1, leaseSeconds: 30, on: db).first
                if lease == nil { Thread.sleep(forTimeInterval: 0.01) }
            }
            let claimed = try #require(lease)
            #expect(claimed.attempt == attempt)
            try queue.fail(claimed, error: "corrupt dump: attempt \(attempt)", on: db)
        }
        let job = try db.execute("SELECT state::text, attempt, last_error FROM jobs").values[0]
        #expect(job == ["failed", "3", "corrupt dump: attempt 3"])
        #expect(try db.execute("SELECT outcome FROM job_attempts ORDER BY attempt").values.map { $0[0]! } == ["retry", "retry", "failed"])
    }

    @Test func retryDelaysGrowAndAreCapped() {
        let policy = RetryPolicy(baseSeconds: 5, capSeconds: 60, jitter: 0.25)
        #expect(policy.delay(afterAttempt: 1, random: 0.5) == 5)
        #expect(policy.delay(afterAttempt: 3, random: 0.5) == 20)
        #expect(policy.delay(afterAttempt: 10, random: 0.5) == 60)
        #expect(policy.delay(afterAttempt: 2, random: 0) == 7.5)
        #expect(policy.decide(attempt: 5, maxAttempts: 5, random: 0) == .deadLetter)
    }

    @Test func concurrentWorkersDoEveryJobExactlyOnce() throws {
        let setup = try TestDatabase.fresh()
        let db = try PostgresConnection(setup)
        let queue = JobQueue()
        for id in try Self.dumps(200, on: db) { try queue.enqueue(dumpId: id, analyzerVersion: 1, on: db) }
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            guard let connection = try? PostgresConnection(setup) else { return }
            while let leases = try? queue.claim(workerId: "worker-\(worker)", limit: 5, leaseSeconds: 30, on: connection), !leases.isEmpty {
                for lease in leases { try? queue.complete(lease, report: "{}", signature: Self.signature, on: connection) }
            }
        }
        #expect(try db.execute("SELECT count(*) FROM jobs WHERE state = 'done'").values[0][0] == "200")
        #expect(try db.execute("SELECT count(*) FROM job_attempts").values[0][0] == "200", "one attempt per job: nobody claimed a job twice")
    }

    @Test func notificationsWakeListeners() throws {
        let setup = try TestDatabase.fresh()
        let listener = try PostgresConnection(setup)
        try listener.execute("LISTEN \(JobQueue.channel)")
        let db = try PostgresConnection(setup)
        try JobQueue().enqueue(dumpId: try Self.dumps(1, on: db)[0], analyzerVersion: 1, on: db)
        let received = try listener.waitForNotification(milliseconds: 5000)
        #expect(received.contains { $0.channel == JobQueue.channel })
    }

    @Test func reprocessQueuesEveryDumpForTheNewAnalyzerVersionOnce() throws {
        let db = try PostgresConnection(TestDatabase.fresh())
        let queue = JobQueue()
        for id in try Self.dumps(3, on: db) { try queue.enqueue(dumpId: id, analyzerVersion: 1, on: db) }
        for lease in try queue.claim(workerId: "v1", limit: 3, leaseSeconds: 30, analyzerVersion: 1, on: db) {
            try queue.complete(lease, report: "{}", signature: Self.signature, on: db)
        }
        #expect(try queue.reprocess(analyzerVersion: 2, on: db) == 3)
        #expect(try queue.reprocess(analyzerVersion: 2, on: db) == 0, "a second reprocess finds nothing to add")
        #expect(try queue.claim(workerId: "old", limit: 10, leaseSeconds: 30, analyzerVersion: 1, on: db).isEmpty, "an old worker leaves them alone")
        let fresh = Int64(try db.execute("INSERT INTO dumps (content_hash, size) VALUES ($1, 1) RETURNING id", [String(repeating: "f", count: 64)]).values[0][0]!)!
        try queue.enqueue(dumpId: fresh, analyzerVersion: 2, on: db)
        let leases = try queue.claim(workerId: "new", limit: 10, leaseSeconds: 30, analyzerVersion: 2, on: db)
        #expect(leases.count == 4 && leases.allSatisfy { $0.analyzerVersion == 2 })
        let priorities = try db.execute("SELECT priority FROM jobs WHERE analyzer_version = 2 ORDER BY id").values.map { $0[0] }
        #expect(priorities == ["-1", "-1", "-1", "0"], "reprocessing runs below new uploads")
    }

    /// A job workers keep giving back counts against itself after `giveBackLimit` times, so no
    /// job passes between workers for ever; before that, giving back leaves its attempts whole.
    @Test func givingBackIsFreeOnlyAFewTimes() throws {
        let db = try PostgresConnection(TestDatabase.fresh())
        let queue = JobQueue(retry: RetryPolicy(baseSeconds: 0, capSeconds: 0, jitter: 0))
        let id = try Self.dumps(1, on: db)[0]
        try queue.enqueue(dumpId: id, analyzerVersion: 1, maxAttempts: 2, on: db)
        for round in 1...JobQueue.giveBackLimit {
            let lease = try #require(try queue.claim(workerId: "w\(round)", limit: 1, leaseSeconds: 30, on: db).first)
            #expect(try queue.giveBack(lease, reason: "No space left on device", on: db) == .givenBack)
        }
        #expect(try db.execute("SELECT attempt, max_attempts, state::text FROM jobs").values[0] == ["3", "5", "queued"], "three claims, none counted")
        let fourth = try #require(try queue.claim(workerId: "w4", limit: 1, leaseSeconds: 30, on: db).first)
        #expect(try queue.giveBack(fourth, reason: "No space left on device", on: db) == .counted)
        #expect(try db.execute("SELECT outcome FROM job_attempts WHERE attempt = 4").values[0][0] == "retry")
        let fifth = try #require(try queue.claim(workerId: "w5", limit: 1, leaseSeconds: 30, on: db).first)
        #expect(try queue.giveBack(fifth, reason: "No space left on device", on: db) == .counted)
        let job = try db.execute("SELECT state::text, last_error FROM jobs").values[0]
        #expect(job[0] == "failed" && job[1]?.contains("given back by workers 3 times") == true, "\(job)")
    }
}
