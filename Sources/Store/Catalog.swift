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

    /// Answers an announcement: a dump the store has already gets the new upload recorded (and
    /// a job if its analyzer version has none); otherwise the open session for this dump, VM and
    /// host is returned, or a new one opened.
    public func announce(_ announcement: UploadAnnouncement, uploadedBy: String?, on db: PostgresConnection) throws -> UploadStatus {
        try db.transaction {
            let known = try db.execute("SELECT id FROM dumps WHERE content_hash = $1", [announcement.contentHash])
            if let dumpId = known.values.first?[0].flatMap({ Int64($0) }) {
                try recordUpload(dumpId: dumpId, announcement, uploadedBy: uploadedBy, on: db)
                let jobId = try queueJob(dumpId: dumpId, on: db)
                return UploadStatus(state: .known, dumpId: dumpId, jobId: jobId)
            }
            let rows = try db.execute("""
                INSERT INTO upload_sessions (content_hash, size, vm_name, host, tags, file_name, uploaded_by)
                VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
                ON CONFLICT (content_hash, vm_name, host) WHERE state = 'open' DO UPDATE SET updated_at = now()
                RETURNING id, size
                """, [announcement.contentHash, String(announcement.size), announcement.vm, announcement.host ?? "",
                      try Self.json(announcement.tags), announcement.fileName, uploadedBy])
            guard let id = rows.values.first?[0], let size = rows.values.first?[1].flatMap({ UInt64($0) }) else {
                throw Catalog.Failure(description: "the upload session was not created")
            }
            guard size == announcement.size else {
                throw Catalog.Failure(description: "an open upload of this dump from \(announcement.vm) announced \(size) bytes, not \(announcement.size)")
            }
            return UploadStatus(state: .open, uploadId: id)
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The open session with this id, or nil (unknown, finished or rejected).
    public func openSession(id: String, on db: PostgresConnection) throws -> Session? {
        guard UUID(uuidString: id) != nil else { return nil }
        let rows = try db.execute("""
            SELECT content_hash, size, vm_name, host, tags::text, file_name, uploaded_by FROM upload_sessions
            WHERE id = $1 AND state = 'open'
            """, [id])
        guard let row = rows.values.first, let contentHash = row[0], let size = row[1].flatMap({ UInt64($0) }), let vm = row[2] else { return nil }
        let tags = try JSONDecoder().decode([String: String].self, from: Data((row[4] ?? "{}").utf8))
        let host = row[3].flatMap { $0.isEmpty ? nil : $0 }
        return Session(id: id, announcement: UploadAnnouncement(contentHash: contentHash, size: size, vm: vm, host: host, tags: tags, fileName: row[5]),
                       uploadedBy: row[6])
    }

    /// Records a session whose bytes verified and are in the blob store: the dump (once per
    /// content, whoever finishes first), this upload, and a job. Returns the dump and job ids.
    public func finish(_ session: Session, on db: PostgresConnection) throws -> UploadStatus {
        try db.transaction {
            let dump = try db.execute("""
                INSERT INTO dumps (content_hash, size) VALUES ($1, $2)
                ON CONFLICT (content_hash) DO UPDATE SET content_hash = excluded.content_hash RETURNING id
                """, [session.announcement.contentHash, String(session.announcement.size)])
            guard let dumpId = dump.values.first?[0].flatMap({ Int64($0) }) else { throw Failure(description: "the dump row was not created") }
            try recordUpload(dumpId: dumpId, session.announcement, uploadedBy: session.uploadedBy, on: db)
            try db.execute("UPDATE upload_sessions SET state = 'stored', dump_id = $2, updated_at = now() WHERE id = $1", [session.id, String(dumpId)])
            let jobId = try queueJob(dumpId: dumpId, on: db)
            return UploadStatus(state: .stored, uploadId: session.id, dumpId: dumpId, jobId: jobId)
        }
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
            SELECT (SELECT count(*) FROM dumps), (SELECT count(*) FROM uploads),
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

    public func dump(id: Int64, on db: PostgresConnection) throws -> DumpStatus? {
        let rows = try db.execute("""
            SELECT d.content_hash, d.size, d.bugcheck_code, d.build, s.bucket, s.signature_id
            FROM dumps d LEFT JOIN signatures s ON s.dump_id = d.id WHERE d.id = $1
            """, [String(id)])
        guard let row = rows.values.first, let contentHash = row[0] else { return nil }
        let uploads = try db.execute("""
            SELECT vm_name, host, tags::text, uploaded_by, \(SQLTime.iso8601("uploaded_at"))
            FROM uploads WHERE dump_id = $1 ORDER BY id
            """, [String(id)]).values.map { upload in
            UploadRecord(vm: upload[0] ?? "", host: upload[1], tags: (try? JSONDecoder().decode([String: String].self, from: Data((upload[2] ?? "{}").utf8))) ?? [:],
                         uploadedBy: upload[3], uploadedAt: upload[4] ?? "")
        }
        return DumpStatus(id: id, contentHash: contentHash, size: UInt64(row[1] ?? "0") ?? 0, bugcheckCode: row[2].flatMap { Int64($0) }.map { UInt64(bitPattern: $0) },
                          build: row[3].flatMap { Int($0) }, uploads: uploads, jobs: try jobs(where: "dump_id = $1", id, on: db),
                          bucket: row[4], signatureId: row[5])
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
