/// The job queue in PostgreSQL. Claims take batches with `FOR UPDATE SKIP LOCKED`, so workers
/// never wait on each other; a claim is a lease (job, attempt, worker) with an expiry on the
/// database clock, and every later write is fenced on that triple, so a worker that was paused
/// past its lease cannot overwrite the attempt that replaced it.
public struct JobQueue: Sendable {
    /// The channel workers LISTEN on; enqueues and retries NOTIFY it.
    public static let channel = "dumpfleet_jobs"

    public struct Lease: Sendable, Equatable, Hashable {
        public var jobId: Int64
        public var dumpId: Int64
        public var attempt: Int
        public var workerId: String
        public var analyzerVersion: Int
        /// How long the job waited between becoming runnable and this claim (queue lag).
        public var queuedSeconds: Double = 0
    }

    /// The write was refused: the lease is no longer this worker's (it expired and the job was
    /// reclaimed, or it finished). The worker must abandon the job.
    public struct LeaseLost: Error, CustomStringConvertible, Equatable {
        public var lease: Lease
        public var description: String { "lease lost: job \(lease.jobId) attempt \(lease.attempt) no longer belongs to \(lease.workerId)" }
    }

    public var retry = RetryPolicy()

    public init(retry: RetryPolicy = RetryPolicy()) { self.retry = retry }

    /// Queues analysis of `dumpId` by analyzer `version`; a job that exists already is left
    /// alone (dedup). Returns the job id when a new job was created.
    @discardableResult
    public func enqueue(dumpId: Int64, analyzerVersion: Int, priority: Int = 0, maxAttempts: Int = 5, on db: PostgresConnection) throws -> Int64? {
        let rows = try db.execute("""
            INSERT INTO jobs (dump_id, analyzer_version, priority, max_attempts) VALUES ($1, $2, $3, $4)
            ON CONFLICT (dump_id, analyzer_version) DO NOTHING RETURNING id
            """, [String(dumpId), String(analyzerVersion), String(priority), String(maxAttempts)])
        try db.execute("SELECT pg_notify($1, '')", [Self.channel])
        return rows.values.first?.first.flatMap { $0.flatMap { Int64($0) } }
    }

    /// Claims up to `limit` runnable jobs, highest priority first, and logs each attempt. With
    /// `analyzerVersion`, only jobs queued for that version (a worker claims what it can run).
    public func claim(workerId: String, limit: Int, leaseSeconds: Double, analyzerVersion: Int? = nil, on db: PostgresConnection) throws -> [Lease] {
        // Two statement texts rather than "$4 IS NULL OR ...": each gets a plan of its own
        // that walks the claimable index, prepared once.
        let versionFilter = analyzerVersion == nil ? "" : "AND analyzer_version = $4::integer"
        var parameters: [String?] = [workerId, String(limit), String(leaseSeconds)]
        if let analyzerVersion { parameters.append(String(analyzerVersion)) }
        let rows = try db.execute("""
            WITH picked AS (
                SELECT id FROM jobs
                WHERE state = 'queued' AND available_at <= now() \(versionFilter)
                ORDER BY priority DESC, available_at, id
                LIMIT $2
                FOR UPDATE SKIP LOCKED),
            claimed AS (
                UPDATE jobs j SET state = 'running', attempt = j.attempt + 1, worker_id = $1,
                                  lease_expires_at = now() + make_interval(secs => $3::double precision)
                FROM picked WHERE j.id = picked.id
                RETURNING j.id, j.dump_id, j.attempt, j.analyzer_version, extract(epoch FROM now() - j.available_at) AS waited),
            logged AS (
                INSERT INTO job_attempts (job_id, attempt, worker_id) SELECT id, attempt, $1 FROM claimed)
            SELECT id, dump_id, attempt, analyzer_version, waited FROM claimed ORDER BY id
            """, parameters)
        return rows.values.map { row in
            Lease(jobId: Int64(row[0]!)!, dumpId: Int64(row[1]!)!, attempt: Int(row[2]!)!, workerId: workerId, analyzerVersion: Int(row[3]!)!,
                  queuedSeconds: Double(row[4] ?? "0") ?? 0)
        }
    }

    /// Extends a lease; throws `LeaseLost` when it is no longer this worker's.
    public func heartbeat(_ lease: Lease, leaseSeconds: Double, on db: PostgresConnection) throws {
        let rows = try db.execute("""
            UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4::double precision)
            WHERE id = $1 AND attempt = $2 AND worker_id = $3 AND state = 'running'
            """, [String(lease.jobId), String(lease.attempt), lease.workerId, String(leaseSeconds)])
        if rows.affected != 1 { throw LeaseLost(lease: lease) }
    }

    /// Stores the result and finishes the job, atomically and only under a live lease, in one
    /// statement (one round trip): the fenced UPDATE of the job feeds every other write, so a
    /// lost lease writes nothing, and the result writes are upserts, so a retried completion
    /// leaves one report and one signature. `facts` fill in what the dump is (type, machine,
    /// build, bug check), known only once read. Inside a caller's transaction, the caller's
    /// other writes (clustering) commit or vanish with it.
    public func complete(_ lease: Lease, report: String, signature: StoredSignature, facts: DumpFacts? = nil, on db: PostgresConnection) throws {
        let rows = try db.execute("""
            WITH fenced AS (
                UPDATE jobs SET state = 'done', finished_at = now(), lease_expires_at = NULL, last_error = NULL
                WHERE id = $1 AND attempt = $2 AND worker_id = $3 AND state = 'running'
                RETURNING id, dump_id),
            report AS (
                INSERT INTO reports (dump_id, job_id, attempt, analyzer_version, report)
                SELECT dump_id, id, $2, $4, $5::jsonb FROM fenced
                ON CONFLICT (dump_id) DO UPDATE SET job_id = excluded.job_id, attempt = excluded.attempt,
                    analyzer_version = excluded.analyzer_version, report = excluded.report, created_at = now()),
            signature AS (
                INSERT INTO signatures (dump_id, signature_id, bucket, bugcheck_class, features)
                SELECT dump_id, $6, $7, $8, $9::jsonb FROM fenced
                ON CONFLICT (dump_id) DO UPDATE SET signature_id = excluded.signature_id, bucket = excluded.bucket,
                    bugcheck_class = excluded.bugcheck_class, features = excluded.features, created_at = now()),
            facts AS (
                UPDATE dumps d SET dump_type = coalesce($10::integer, d.dump_type), machine = coalesce($11, d.machine),
                                   build = coalesce($12::integer, d.build), bugcheck_code = coalesce($13::bigint, d.bugcheck_code)
                FROM fenced WHERE d.id = fenced.dump_id),
            logged AS (
                UPDATE job_attempts a SET finished_at = now(), outcome = 'done', error = NULL
                FROM fenced WHERE a.job_id = fenced.id AND a.attempt = $2)
            SELECT count(*) FROM fenced
            """, [String(lease.jobId), String(lease.attempt), lease.workerId, String(lease.analyzerVersion), report,
                  signature.id, signature.bucket, signature.bugCheckClass, signature.featuresJSON,
                  facts?.dumpType.map { String($0) }, facts?.machine, facts?.build.map { String($0) },
                  facts?.bugCheckCode.map { String(Int64(bitPattern: $0)) }])
        guard rows.values.first?.first == "1" else { throw LeaseLost(lease: lease) }
    }

    /// Records a failed attempt: the job is queued again after a backoff, or ends `failed` with
    /// its error after the last attempt (dead letter). Fenced like every write.
    public func fail(_ lease: Lease, error: String, random: Double = Double.random(in: 0..<1), on db: PostgresConnection) throws {
        try db.transaction { try recordFailure(lease, error: error, random: random, on: db) }
    }

    /// `fail`'s work, inside the caller's transaction.
    func recordFailure(_ lease: Lease, error: String, random: Double, on db: PostgresConnection) throws {
        let rows = try db.execute("SELECT max_attempts FROM jobs WHERE id = $1 AND attempt = $2 AND worker_id = $3 AND state = 'running' FOR UPDATE",
                                  [String(lease.jobId), String(lease.attempt), lease.workerId])
        guard let maxAttempts = rows.values.first?.first.flatMap({ $0.flatMap { Int($0) } }) else { throw LeaseLost(lease: lease) }
        switch retry.decide(attempt: lease.attempt, maxAttempts: maxAttempts, random: random) {
        case .deadLetter:
            try db.execute("UPDATE jobs SET state = 'failed', finished_at = now(), lease_expires_at = NULL, last_error = $2 WHERE id = $1",
                           [String(lease.jobId), error])
            try logAttempt(lease, outcome: "failed", error: error, on: db)
        case .retry(let seconds):
            try db.execute("""
                UPDATE jobs SET state = 'queued', worker_id = NULL, lease_expires_at = NULL, last_error = $2,
                                available_at = now() + make_interval(secs => $3::double precision)
                WHERE id = $1
                """, [String(lease.jobId), error, String(seconds)])
            try logAttempt(lease, outcome: "retry", error: error, on: db)
        }
    }

    /// Give-backs a job may have before the next one counts as a failed attempt after all:
    /// when one job keeps making workers give it back, the job may be why (a dump larger than
    /// any worker's scratch disk, a blob file that cannot be read), and workers must not pass
    /// it round for ever.
    public static let giveBackLimit = 3

    /// What `giveBack` did.
    public enum GiveBack: Sendable, Equatable {
        /// Back in the queue, the attempt not counted.
        case givenBack
        /// Given back `giveBackLimit` times before: counted as a failed attempt instead.
        case counted
    }

    /// Returns a claimed job to the queue without counting the attempt against it: the worker
    /// could not work on it for reasons of its own (a token the coordinator refuses, a full
    /// scratch disk), not the dump's. The attempt is logged as given back and the job's
    /// attempt budget grows by one, so a misconfigured worker cannot use the budget up, up to
    /// `giveBackLimit` times per job. Fenced.
    @discardableResult
    public func giveBack(_ lease: Lease, reason: String, random: Double = Double.random(in: 0..<1), on db: PostgresConnection) throws -> GiveBack {
        try db.transaction {
            let before = try db.execute("SELECT count(*) FROM job_attempts WHERE job_id = $1 AND outcome = 'given back'", [String(lease.jobId)])
            let givenBack = Int(before.values.first?[0] ?? "0") ?? 0
            if givenBack >= Self.giveBackLimit {
                try recordFailure(lease, error: "given back by workers \(givenBack) times, so this time it counts: \(reason)", random: random, on: db)
                return .counted
            }
            try requeueUncounted(lease, lastError: "given back by worker \(lease.workerId): \(reason)", logged: reason, on: db)
            return .givenBack
        }
    }

    /// Puts a claimed job back in the queue at once without counting the attempt (its budget
    /// grows by one), logging the attempt as given back; inside the caller's transaction. Fenced.
    func requeueUncounted(_ lease: Lease, lastError: String?, logged: String, on db: PostgresConnection) throws {
        let rows = try db.execute("""
            UPDATE jobs SET state = 'queued', worker_id = NULL, lease_expires_at = NULL, max_attempts = max_attempts + 1,
                            available_at = now(), last_error = coalesce($4, last_error)
            WHERE id = $1 AND attempt = $2 AND worker_id = $3 AND state = 'running'
            """, [String(lease.jobId), String(lease.attempt), lease.workerId, lastError])
        guard rows.affected == 1 else { throw LeaseLost(lease: lease) }
        try logAttempt(lease, outcome: "given back", error: logged, on: db)
        try db.execute("SELECT pg_notify($1, '')", [Self.channel])
    }

    /// Ends a job whose dump's stored copy is damaged: no retry can help until the dump is
    /// uploaded again. The dump is marked, so that the next announcement of its content takes
    /// the bytes instead of answering "known"; that upload replaces the copy and queues the job
    /// again (`Catalog.finish`). Unless the copy was replaced while this attempt was reading
    /// the old one: then the job simply runs again (the attempt does not count) and the new
    /// copy is not marked. Fenced; returns whether the job failed.
    @discardableResult
    public func failForDamagedBlob(_ lease: Lease, error: String, on db: PostgresConnection) throws -> Bool {
        try db.transaction {
            let replaced = try db.execute("""
                SELECT d.blob_replaced_at > a.claimed_at FROM dumps d JOIN job_attempts a ON a.job_id = $1 AND a.attempt = $2 WHERE d.id = $3
                """, [String(lease.jobId), String(lease.attempt), String(lease.dumpId)]).values.first?[0] == "t"
            if replaced {
                try requeueUncounted(lease, lastError: nil, logged: "read the stored copy that was replaced meanwhile (\(error))", on: db)
                return false
            }
            let message = "the stored copy of the dump is damaged (\(error)); upload the dump again to replace it"
            let rows = try db.execute("""
                UPDATE jobs SET state = 'failed', finished_at = now(), lease_expires_at = NULL, last_error = $4
                WHERE id = $1 AND attempt = $2 AND worker_id = $3 AND state = 'running'
                """, [String(lease.jobId), String(lease.attempt), lease.workerId, message])
            guard rows.affected == 1 else { throw LeaseLost(lease: lease) }
            try db.execute("UPDATE dumps SET blob_damaged_at = now(), blob_error = $2 WHERE id = $1", [String(lease.dumpId), error])
            try logAttempt(lease, outcome: "failed", error: message, on: db)
            return true
        }
    }

    /// Which failed jobs `requeue` takes.
    public enum Selection: Sendable, Equatable {
        case job(Int64)
        case dump(Int64)
        /// Those whose last error contains this text.
        case failedWith(String)
        case allFailed
    }

    /// Queues failed jobs again with `attempts` more attempts; returns their ids. For jobs that
    /// failed for a cause since fixed (a bug an upgrade fixed, a dump uploaded again).
    @discardableResult
    public func requeue(_ selection: Selection, attempts: Int = 5, note: String? = nil, on db: PostgresConnection) throws -> [Int64] {
        let (condition, value): (String, String?) = switch selection {
        case .job(let id): ("id = $2::bigint", String(id))
        case .dump(let id): ("dump_id = $2::bigint", String(id))
        case .failedWith(let text): ("strpos(coalesce(last_error, ''), $2) > 0", text)
        case .allFailed: ("$2::text IS NULL", nil)
        }
        let rows = try db.execute("""
            UPDATE jobs SET state = 'queued', max_attempts = attempt + $1::integer, available_at = now(), finished_at = NULL,
                            last_error = coalesce($3, last_error)
            WHERE state = 'failed' AND \(condition) RETURNING id
            """, [String(attempts), value, note])
        if !rows.values.isEmpty { try db.execute("SELECT pg_notify($1, '')", [Self.channel]) }
        return rows.values.compactMap { $0[0].flatMap { Int64($0) } }.sorted()
    }

    /// Returns jobs whose lease expired (their worker died or stalled) to the queue, or to
    /// `failed` when that was the last attempt. Returns how many.
    @discardableResult
    public func reapExpiredLeases(on db: PostgresConnection) throws -> Int {
        try db.transaction {
            let rows = try db.execute("""
                WITH expired AS (
                    SELECT id, attempt, worker_id, max_attempts FROM jobs
                    WHERE state = 'running' AND lease_expires_at < now() FOR UPDATE SKIP LOCKED),
                updated AS (
                    UPDATE jobs j SET state = CASE WHEN e.attempt >= e.max_attempts THEN 'failed'::job_state ELSE 'queued'::job_state END,
                                      last_error = 'lease expired (worker ' || e.worker_id || ')', worker_id = NULL,
                                      lease_expires_at = NULL, available_at = now(),
                                      finished_at = CASE WHEN e.attempt >= e.max_attempts THEN now() END
                    FROM expired e WHERE j.id = e.id RETURNING j.id),
                logged AS (
                    UPDATE job_attempts a SET finished_at = now(), outcome = 'expired', error = 'lease expired'
                    FROM expired e WHERE a.job_id = e.id AND a.attempt = e.attempt AND a.outcome IS NULL)
                SELECT count(*) FROM updated
                """)
            let count = Int((rows.values.first?.first ?? nil) ?? "0") ?? 0
            if count > 0 { try db.execute("SELECT pg_notify($1, '')", [Self.channel]) }
            return count
        }
    }

    /// Queues every dump that has no job for `analyzerVersion` (after an analyzer upgrade).
    @discardableResult
    public func reprocess(analyzerVersion: Int, priority: Int = -1, on db: PostgresConnection) throws -> Int {
        let rows = try db.execute("""
            INSERT INTO jobs (dump_id, analyzer_version, priority)
            SELECT d.id, $1, $2 FROM dumps d
            WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.dump_id = d.id AND j.analyzer_version = $1)
            """, [String(analyzerVersion), String(priority)])
        try db.execute("SELECT pg_notify($1, '')", [Self.channel])
        return rows.affected
    }

    func logAttempt(_ lease: Lease, outcome: String, error: String?, on db: PostgresConnection) throws {
        try db.execute("UPDATE job_attempts SET finished_at = now(), outcome = $3, error = $4 WHERE job_id = $1 AND attempt = $2",
                       [String(lease.jobId), String(lease.attempt), outcome, error])
    }
}

/// What the signatures table keeps of a crash signature.
public struct StoredSignature: Sendable, Equatable {
    public var id: String
    public var bucket: String
    public var bugCheckClass: String
    /// The signature's features (frames, modules, evidence tokens) as JSON.
    public var featuresJSON: String

    public init(id: String, bucket: String, bugCheckClass: String, featuresJSON: String) {
        self.id = id
        self.bucket = bucket
        self.bugCheckClass = bugCheckClass
        self.featuresJSON = featuresJSON
    }
}

/// What analysis learned about a dump itself, stored on its row.
public struct DumpFacts: Sendable, Equatable {
    public var dumpType: Int?
    public var machine: String?
    public var build: Int?
    public var bugCheckCode: UInt64?

    public init(dumpType: Int?, machine: String?, build: Int?, bugCheckCode: UInt64?) {
        self.dumpType = dumpType
        self.machine = machine
        self.build = build
        self.bugCheckCode = bugCheckCode
    }
}
