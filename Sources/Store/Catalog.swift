import FleetAPI
import Foundation

/// What the coordinator asks of the database: upload sessions, recording a dump and its
/// uploads, and the read side (queue overview, one dump, one job, a report). Every value
/// travels as a bind parameter.
public struct Catalog: Sendable {
    /// The analyzer version new dumps are queued for.
    public var analyzerVersion: Int
    public var queue: JobQueue

    public init(analyzerVersion: Int, queue: JobQueue = JobQueue()) {
        self.analyzerVersion = analyzerVersion
        self.queue = queue
    }

    /// An open upload session, as announced.
    public struct Session: Sendable, Equatable {
        public var id: String
        public var announcement: UploadAnnouncement
        public var uploadedBy: String?

        public init(id: String, announcement: UploadAnnouncement, uploadedBy: String?) {
            self.id = id
            self.announcement = announcement
            self.uploadedBy = uploadedBy
        }
    }

    // MARK: uploads

    /// How much one token may have in flight: open upload sessions, and the bytes they announced.
    public struct UploadQuota: Sendable, Equatable {
        public var sessions: Int
        public var bytes: UInt64

        public init(sessions: Int, bytes: UInt64) {
            self.sessions = sessions
            self.bytes = bytes
        }
    }

    /// An announcement this catalog will not take: it contradicts what is stored (`conflict`),
    /// the token has as much in flight as it may (`quota`), or the disk could not take it
    /// beside what open sessions were promised (`disk`).
    public struct Refusal: Error, CustomStringConvertible {
        public enum Reason: Sendable { case conflict, quota, disk }
        public var reason: Reason
        public var description: String
    }

    /// Answers an announcement. A dump the store holds gets the new upload recorded (and a job
    /// if its analyzer version has none), unless its stored copy was found damaged or is gone
    /// (`blobIsPresent`): then, as for a new dump, the open session for this dump, VM and host
    /// is returned (taking the announcement's tags and file name), or a new one is opened within
    /// the token's `quota` and the disk's `diskBudget` (bytes it can take beyond its reserve;
    /// nil when unknown).
    public func announce(_ announcement: UploadAnnouncement, uploadedBy: String?, quota: UploadQuota, diskBudget: UInt64?,
                         blobIsPresent: (String) -> Bool, on db: PostgresConnection) throws -> UploadStatus {
        try db.transaction {
            let known = try db.execute("SELECT id, size, blob_damaged_at IS NOT NULL FROM dumps WHERE content_hash = $1", [announcement.contentHash])
            if let row = known.values.first, let dumpId = row[0].flatMap({ Int64($0) }) {
                let size = row[1].flatMap { UInt64($0) } ?? 0
                guard size == announcement.size else {
                    throw Refusal(reason: .conflict, description: "dump \(dumpId) has this content hash and \(size) bytes, not \(announcement.size)")
                }
                if row[2] == "f" && blobIsPresent(announcement.contentHash) {
                    try recordUpload(dumpId: dumpId, announcement, uploadedBy: uploadedBy, on: db)
                    let jobId = try queueJob(dumpId: dumpId, on: db)
                    return UploadStatus(state: .known, dumpId: dumpId, jobId: jobId)
                }
            }
            let parameters: [String?] = [announcement.contentHash, String(announcement.size), announcement.vm, announcement.host ?? "",
                                         try Self.json(announcement.tags), announcement.fileName, uploadedBy]
            let open = try db.execute("""
                SELECT id, size, uploaded_by FROM upload_sessions WHERE content_hash = $1 AND vm_name = $2 AND host = $3 AND state = 'open' FOR UPDATE
                """, [announcement.contentHash, announcement.vm, announcement.host ?? ""])
            if open.values.isEmpty {
                try checkQuota(quota, for: announcement, uploadedBy: uploadedBy, on: db)
                if let diskBudget { try checkDisk(diskBudget, for: announcement, on: db) }
            } else if open.values[0][2] != uploadedBy {
                // Another token takes the session over: it counts against that token now.
                try checkQuota(quota, for: announcement, uploadedBy: uploadedBy, on: db)
            }
            // A new session, or the open one with what this announcement says of it (the upload
            // that finishes is the one announced last).
            let rows = try db.execute("""
                INSERT INTO upload_sessions (content_hash, size, vm_name, host, tags, file_name, uploaded_by)
                VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
                ON CONFLICT (content_hash, vm_name, host) WHERE state = 'open' DO UPDATE
                    SET tags = excluded.tags, file_name = excluded.file_name, uploaded_by = excluded.uploaded_by, updated_at = now()
                    WHERE upload_sessions.size = excluded.size
                RETURNING id, size
                """, parameters)
            guard let id = rows.values.first?[0] else {
                let size = open.values.first?[1] ?? "another size"
                throw Refusal(reason: .conflict, description: "an open upload of this dump from \(announcement.vm) announced \(size) bytes, not \(announcement.size)")
            }
            return UploadStatus(state: .open, uploadId: id)
        }
    }

    /// Throws `Refusal(.quota)` when a new session would take the token past `quota`. Announces
    /// of one token take turns here (an advisory lock per token), so two at once cannot both
    /// squeeze under the limit.
    func checkQuota(_ quota: UploadQuota, for announcement: UploadAnnouncement, uploadedBy: String?, on db: PostgresConnection) throws {
        try db.execute("SELECT pg_advisory_xact_lock($1::integer, hashtext($2))", [String(Self.quotaLock), uploadedBy ?? ""])
        let held = try db.execute("""
            SELECT count(*), coalesce(sum(size), 0) FROM upload_sessions WHERE state = 'open' AND uploaded_by IS NOT DISTINCT FROM $1
            """, [uploadedBy]).values[0]
        let sessions = Int(held[0] ?? "0") ?? 0
        let bytes = UInt64(held[1] ?? "0") ?? 0
        let who = uploadedBy.map { "token \"\($0)\"" } ?? "this caller"
        guard sessions < quota.sessions else {
            throw Refusal(reason: .quota, description: "\(who) holds \(sessions) open upload sessions, the most one token may; finish them or let them expire")
        }
        guard announcement.size <= quota.bytes, bytes <= quota.bytes - announcement.size else {
            throw Refusal(reason: .quota, description: "\(who) has announced \(bytes) bytes in open upload sessions; \(announcement.size) more would pass its limit of \(quota.bytes)")
        }
    }

    /// Throws `Refusal(.disk)` unless the disk can take this upload beside what the open
    /// sessions may still send. Both are counted in uncompressed bytes, the most an LZ4 frame
    /// holds (give or take 1%): a session that is mostly zeros needs far less, but no less
    /// can be promised before its bytes arrive. New sessions take turns here.
    func checkDisk(_ budget: UInt64, for announcement: UploadAnnouncement, on db: PostgresConnection) throws {
        try db.execute("SELECT pg_advisory_xact_lock($1::integer, 0)", [String(Self.diskLock)])
        let promised = UInt64(try db.execute("""
            SELECT coalesce(sum(greatest(size - decoded, 0)), 0) FROM upload_sessions WHERE state = 'open'
            """).values[0][0] ?? "0") ?? 0
        guard promised <= budget, announcement.size <= budget - promised else {
            throw Refusal(reason: .disk, description: "the coordinator's disk cannot take \(announcement.size) bytes now: \(budget) are free beyond its reserve, "
                          + "and uploads in progress may still send \(promised); try again later")
        }
    }

    /// The key spaces of the advisory locks (two-key form, apart from the clustering lock):
    /// per token for quotas, one for the disk.
    static let quotaLock: Int32 = 0x0D0F_0001
    static let diskLock: Int32 = 0x0D0F_0002

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The open session with this id, or nil (unknown, finished, rejected or expired). The id
    /// in the session is the canonical one, in lower case, whatever case it was given in.
    public func openSession(id: String, on db: PostgresConnection) throws -> Session? {
        guard UUID(uuidString: id) != nil else { return nil }
        let rows = try db.execute("""
            SELECT id::text, content_hash, size, vm_name, host, tags::text, file_name, uploaded_by FROM upload_sessions
            WHERE id = $1 AND state = 'open'
            """, [id])
        guard let row = rows.values.first, let canonical = row[0], let contentHash = row[1], let size = row[2].flatMap({ UInt64($0) }), let vm = row[3] else {
            return nil
        }
        let tags = try JSONDecoder().decode([String: String].self, from: Data((row[5] ?? "{}").utf8))
        let host = row[4].flatMap { $0.isEmpty ? nil : $0 }
        return Session(id: canonical, announcement: UploadAnnouncement(contentHash: contentHash, size: size, vm: vm, host: host, tags: tags, fileName: row[6]),
                       uploadedBy: row[7])
    }

    /// Notes activity on an open session: how many compressed bytes it holds now, and how many
    /// they decode to.
    public func touch(sessionId: String, received: UInt64, decoded: UInt64, on db: PostgresConnection) throws {
        try db.execute("UPDATE upload_sessions SET received = $2, decoded = $3, updated_at = now() WHERE id = $1 AND state = 'open'",
                       [sessionId, String(received), String(decoded)])
    }

    /// Whether the store's copy of this content was found damaged (a finished upload of it
    /// then replaces the file rather than keeping it).
    public func isBlobDamaged(contentHash: String, on db: PostgresConnection) throws -> Bool {
        try db.execute("SELECT blob_damaged_at IS NOT NULL FROM dumps WHERE content_hash = $1", [contentHash]).values.first?[0] == "t"
    }

    /// Records a session whose bytes verified and are in the blob store (see
    /// `record(_:uploadedBy:replaced:on:)`) and closes it. Returns the dump and job ids.
    public func finish(_ session: Session, replaced: Bool = false, on db: PostgresConnection) throws -> UploadStatus {
        try db.transaction {
            let recorded = try record(session.announcement, uploadedBy: session.uploadedBy, replaced: replaced, on: db)
            try db.execute("UPDATE upload_sessions SET state = 'stored', dump_id = $2, updated_at = now() WHERE id = $1", [session.id, String(recorded.dumpId)])
            return UploadStatus(state: .stored, uploadId: session.id, dumpId: recorded.dumpId, jobId: recorded.jobId)
        }
    }

    /// Records a dump that arrived whole in one request (a plain upload), its bytes already in
    /// the blob store (see `record(_:uploadedBy:replaced:on:)`). The answer is `known` when the
    /// store had the dump already and this upload only adds a VM to it, else `stored`.
    public func storePlainUpload(_ announcement: UploadAnnouncement, uploadedBy: String?, replaced: Bool, on db: PostgresConnection) throws -> UploadStatus {
        try db.transaction {
            let recorded = try record(announcement, uploadedBy: uploadedBy, replaced: replaced, on: db)
            return UploadStatus(state: recorded.isNew || replaced ? .stored : .known, dumpId: recorded.dumpId, jobId: recorded.jobId)
        }
    }

    /// Records bytes that are in the blob store under the announcement's content hash: the dump
    /// (once per content, whoever records it first), this upload, and a job. When this upload
    /// `replaced` the stored copy (found damaged, or missing), the damage mark goes and the
    /// dump's failed jobs are queued again. Runs inside the caller's transaction.
    func record(_ announcement: UploadAnnouncement, uploadedBy: String?, replaced: Bool,
                on db: PostgresConnection) throws -> (dumpId: Int64, jobId: Int64?, isNew: Bool) {
        // `xmax = 0` holds for a row this statement inserted, not for one it updated on conflict.
        let dump = try db.execute("""
            INSERT INTO dumps (content_hash, size) VALUES ($1, $2)
            ON CONFLICT (content_hash) DO UPDATE SET content_hash = excluded.content_hash RETURNING id, xmax = 0
            """, [announcement.contentHash, String(announcement.size)])
        guard let row = dump.values.first, let dumpId = row[0].flatMap({ Int64($0) }) else { throw Failure(description: "the dump row was not created") }
        try recordUpload(dumpId: dumpId, announcement, uploadedBy: uploadedBy, on: db)
        let repaired = try db.execute("""
            UPDATE dumps SET blob_damaged_at = NULL, blob_error = NULL, blob_replaced_at = now()
            WHERE id = $1 AND (blob_damaged_at IS NOT NULL OR $2::boolean)
            """, [String(dumpId), replaced ? "true" : "false"])
        if repaired.affected > 0 {
            try queue.requeue(.dump(dumpId), note: "queued again: a good copy of the dump was uploaded", on: db)
        }
        return (dumpId, try queueJob(dumpId: dumpId, on: db), row[1] == "t")
    }

    /// Expires open sessions with no activity for `idleSeconds`, except those a request is
    /// using right now (`busy`); returns their ids (their files are the caller's to delete).
    public func expireSessions(idleSeconds: Double, busy: [String], on db: PostgresConnection) throws -> [String] {
        try db.execute("""
            UPDATE upload_sessions SET state = 'expired', error = 'no bytes arrived for ' || $1 || ' seconds', updated_at = now()
            WHERE state = 'open' AND updated_at < now() - make_interval(secs => $1::double precision) AND NOT (id::text = ANY($2::text[]))
            RETURNING id::text
            """, [String(idleSeconds), PostgresConnection.arrayLiteral(busy)]).values.compactMap { $0[0] }
    }

    /// Of these session ids, the ones that are open.
    public func openSessions(among ids: [String], on db: PostgresConnection) throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        return Set(try db.execute("SELECT id::text FROM upload_sessions WHERE id::text = ANY($1::text[]) AND state = 'open'",
                                  [PostgresConnection.arrayLiteral(ids)]).values.compactMap { $0[0] })
    }

    /// Closes a session whose bytes were refused (hash mismatch, too large), keeping the reason.
    public func reject(sessionId: String, error: String, on db: PostgresConnection) throws {
        try db.execute("UPDATE upload_sessions SET state = 'rejected', error = $2, updated_at = now() WHERE id = $1 AND state = 'open'",
                       [sessionId, error])
    }

    func recordUpload(dumpId: Int64, _ announcement: UploadAnnouncement, uploadedBy: String?, on db: PostgresConnection) throws {
        try db.execute("""
            INSERT INTO uploads (dump_id, vm_name, host, tags, uploaded_by, file_name) VALUES ($1, $2, $3, $4::jsonb, $5, $6)
            """, [String(dumpId), announcement.vm, announcement.host, try Self.json(announcement.tags), uploadedBy, announcement.fileName])
    }

    /// Queues the dump for this analyzer version unless a job exists; returns the job's id.
    func queueJob(dumpId: Int64, on db: PostgresConnection) throws -> Int64? {
        if let created = try queue.enqueue(dumpId: dumpId, analyzerVersion: analyzerVersion, on: db) { return created }
        let rows = try db.execute("SELECT id FROM jobs WHERE dump_id = $1 AND analyzer_version = $2", [String(dumpId), String(analyzerVersion)])
        return rows.values.first?[0].flatMap { Int64($0) }
    }

    // MARK: reading

    public func status(on db: PostgresConnection) throws -> QueueStatus {
        let counts = try db.execute("""
            SELECT (SELECT count(*) FROM dumps), (SELECT coalesce(sum(upload_count), 0) FROM dumps),
                   (SELECT count(*) FROM upload_sessions WHERE state = 'open'),
                   coalesce((SELECT extract(epoch FROM now() - min(available_at)) FROM jobs
                             WHERE state = 'queued' AND available_at <= now()), 0)
            """)
        let row = counts.values.first ?? []
        var jobs: [String: Int64] = ["queued": 0, "running": 0, "done": 0, "failed": 0]
        for state in try db.execute("SELECT state::text, count(*) FROM jobs GROUP BY state").values {
            if let name = state[0], let count = state[1].flatMap({ Int64($0) }) { jobs[name] = count }
        }
        return QueueStatus(dumps: Int64(row[0] ?? "0") ?? 0, uploads: Int64(row[1] ?? "0") ?? 0, jobs: jobs,
                           oldestQueuedSeconds: Double(row[3] ?? "0") ?? 0, openUploadSessions: Int64(row[2] ?? "0") ?? 0)
    }

    public func job(id: Int64, on db: PostgresConnection) throws -> JobStatus? {
        try jobs(where: "id = $1", id, on: db).first
    }

    /// A dump with the first `uploadLimit` of its uploads (a dump can have very many: every
    /// VM that sent it; `uploads(ofDump:after:limit:)` pages through the rest).
    public func dump(id: Int64, uploadLimit: Int = 100, on db: PostgresConnection) throws -> DumpStatus? {
        let rows = try db.execute("""
            SELECT d.content_hash, d.size, d.bugcheck_code, d.build, s.bucket, s.signature_id, d.blob_error, d.upload_count
            FROM dumps d LEFT JOIN signatures s ON s.dump_id = d.id WHERE d.id = $1
            """, [String(id)])
        guard let row = rows.values.first, let contentHash = row[0] else { return nil }
        return DumpStatus(id: id, contentHash: contentHash, size: UInt64(row[1] ?? "0") ?? 0, bugcheckCode: row[2].flatMap { Int64($0) }.map { UInt64(bitPattern: $0) },
                          build: row[3].flatMap { Int($0) }, uploads: try uploads(ofDump: id, after: 0, limit: uploadLimit, on: db),
                          uploadCount: Int64(row[7] ?? "0") ?? 0, jobs: try jobs(where: "dump_id = $1", id, on: db),
                          bucket: row[4], signatureId: row[5], blobError: row[6])
    }

    /// Uploads of a dump with ids above `after`, oldest first (keyset paging on the
    /// (dump_id, id) index, so the last page costs what the first does).
    public func uploads(ofDump id: Int64, after: Int64, limit: Int, on db: PostgresConnection) throws -> [UploadRecord] {
        try db.execute("""
            SELECT id, vm_name, host, tags::text, uploaded_by, \(SQLTime.iso8601("uploaded_at"))
            FROM uploads WHERE dump_id = $1 AND id > $2 ORDER BY id LIMIT $3
            """, [String(id), String(after), String(limit)]).values.map { upload in
            UploadRecord(id: Int64(upload[0] ?? "0") ?? 0, vm: upload[1] ?? "", host: upload[2],
                         tags: (try? JSONDecoder().decode([String: String].self, from: Data((upload[3] ?? "{}").utf8))) ?? [:],
                         uploadedBy: upload[4], uploadedAt: upload[5] ?? "")
        }
    }

    /// The stored analyze report of a dump, as JSON text.
    public func report(dumpId: Int64, on db: PostgresConnection) throws -> String? {
        try db.execute("SELECT report::text FROM reports WHERE dump_id = $1", [String(dumpId)]).values.first?[0]
    }

    func jobs(where condition: String, _ id: Int64, on db: PostgresConnection) throws -> [JobStatus] {
        try db.execute("""
            SELECT id, dump_id, analyzer_version, state::text, attempt, max_attempts, worker_id, last_error,
                   \(SQLTime.iso8601("created_at")), \(SQLTime.iso8601("finished_at"))
            FROM jobs WHERE \(condition) ORDER BY id
            """, [String(id)]).values.map { row in
            JobStatus(id: Int64(row[0] ?? "0") ?? 0, dumpId: Int64(row[1] ?? "0") ?? 0, analyzerVersion: Int(row[2] ?? "0") ?? 0,
                      state: row[3] ?? "", attempt: Int(row[4] ?? "0") ?? 0, maxAttempts: Int(row[5] ?? "0") ?? 0,
                      workerId: row[6], lastError: row[7], createdAt: row[8] ?? "", finishedAt: row[9])
        }
    }

    static func json(_ tags: [String: String]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(tags), as: UTF8.self)
    }
}
