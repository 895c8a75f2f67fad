/// The bodies of the coordinator's read API: queue overview, one dump, one job.

/// `GET /v1/status`
public struct QueueStatus: Codable, Sendable, Equatable {
    public var dumps: Int64
    public var uploads: Int64
    /// Jobs by state: queued, running, done, failed.
    public var jobs: [String: Int64]
    /// Seconds the oldest runnable job has waited (queue lag), 0 when none waits.
    public var oldestQueuedSeconds: Double
    public var openUploadSessions: Int64

    public init(dumps: Int64, uploads: Int64, jobs: [String: Int64], oldestQueuedSeconds: Double, openUploadSessions: Int64) {
        self.dumps = dumps
        self.uploads = uploads
        self.jobs = jobs
        self.oldestQueuedSeconds = oldestQueuedSeconds
        self.openUploadSessions = openUploadSessions
    }
}

/// `GET /v1/jobs/{id}`, also inside `DumpStatus`.
public struct JobStatus: Codable, Sendable, Equatable {
    public var id: Int64
    public var dumpId: Int64
    public var analyzerVersion: Int
    public var state: String
    public var attempt: Int
    public var maxAttempts: Int
    public var workerId: String?
    public var lastError: String?
    public var createdAt: String
    public var finishedAt: String?

    public init(id: Int64, dumpId: Int64, analyzerVersion: Int, state: String, attempt: Int, maxAttempts: Int,
                workerId: String?, lastError: String?, createdAt: String, finishedAt: String?) {
        self.id = id
        self.dumpId = dumpId
        self.analyzerVersion = analyzerVersion
        self.state = state
        self.attempt = attempt
        self.maxAttempts = maxAttempts
        self.workerId = workerId
        self.lastError = lastError
        self.createdAt = createdAt
        self.finishedAt = finishedAt
    }

    /// Whether the job will not change any more without a reprocess.
    public var isFinished: Bool { state == "done" || state == "failed" }
}

/// One upload of a dump (which VM, from where, when).
public struct UploadRecord: Codable, Sendable, Equatable {
    /// Increases with time; the cursor of `GET /v1/dumps/{id}/uploads?after=`.
    public var id: Int64
    public var vm: String
    public var host: String?
    public var tags: [String: String]
    public var uploadedBy: String?
    public var uploadedAt: String

    public init(id: Int64, vm: String, host: String?, tags: [String: String], uploadedBy: String?, uploadedAt: String) {
        self.id = id
        self.vm = vm
        self.host = host
        self.tags = tags
        self.uploadedBy = uploadedBy
        self.uploadedAt = uploadedAt
    }
}

/// `GET /v1/dumps/{id}`: the dump, where it came from, its jobs and, once analyzed, its bucket.
public struct DumpStatus: Codable, Sendable, Equatable {
    public var id: Int64
    public var contentHash: String
    public var size: UInt64
    public var bugcheckCode: UInt64?
    public var build: Int?
    /// The first uploads (100); `uploadCount` says how many there are in all.
    public var uploads: [UploadRecord]
    public var uploadCount: Int64
    public var jobs: [JobStatus]
    public var bucket: String?
    public var signatureId: String?
    /// Set when a worker found the stored copy damaged or missing: the next upload of the
    /// dump replaces it.
    public var blobError: String?

    public init(id: Int64, contentHash: String, size: UInt64, bugcheckCode: UInt64?, build: Int?, uploads: [UploadRecord], uploadCount: Int64,
                jobs: [JobStatus], bucket: String?, signatureId: String?, blobError: String? = nil) {
        self.id = id
        self.contentHash = contentHash
        self.size = size
        self.bugcheckCode = bugcheckCode
        self.build = build
        self.uploads = uploads
        self.uploadCount = uploadCount
        self.jobs = jobs
        self.bucket = bucket
        self.signatureId = signatureId
        self.blobError = blobError
    }

    /// Whether every job of the dump is finished (done or failed).
    public var isSettled: Bool { !jobs.isEmpty && jobs.allSatisfy(\.isFinished) }
}

/// `GET /v1/dumps/{id}/uploads?after=ID&limit=N`: one page of a dump's uploads; `next` is the
/// `after` of the next page, absent on the last.
public struct UploadPage: Codable, Sendable, Equatable {
    public var uploads: [UploadRecord]
    public var next: Int64?

    public init(uploads: [UploadRecord], next: Int64?) {
        self.uploads = uploads
        self.next = next
    }
}

/// `GET /v1/whoami`: the name of the caller's token.
public struct Caller: Codable, Sendable, Equatable {
    public var token: String

    public init(token: String) { self.token = token }
}

/// `GET /healthz`
public struct Health: Codable, Sendable, Equatable {
    public var status: String
    public var database: String
    public var schemaVersion: Int?

    public init(status: String, database: String, schemaVersion: Int?) {
        self.status = status
        self.database = database
        self.schemaVersion = schemaVersion
    }
}
