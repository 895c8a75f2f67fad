import BlobStore
import CrashClusters
import DumpAnalysis
import DumpFile
import DumpFormat
import DumpMemory
import FleetClient
import Foundation
import Logging
import Store

/// One job, start to end: fetch the blob, decompress it into a sparse scratch file, map it,
/// analyze it, store report and signature under the lease and place the crash in a cluster (one
/// transaction), delete the scratch file. What becomes of a failed attempt depends on whose
/// fault it was (`JobFailure`): a dump that cannot be read at all uses up the attempt (retried
/// with backoff, then dead-lettered); a damaged stored copy fails the job until the dump is
/// uploaded again; the worker's own trouble gives the job back and pauses the worker. A
/// damaged dump gives a partial report, which is a result like any other.
struct JobRunner: Sendable {
    let configuration: WorkerConfiguration
    /// This worker's own scratch folder.
    let scratch: String
    let pool: ConnectionPool
    let queue: JobQueue
    let keeper: LeaseKeeper
    let index = CrashIndex()
    let metrics: WorkerMetrics
    let logger: Logger
    /// Called when the worker's setup failed a job: the worker stops claiming.
    let pause: @Sendable (JobFailure) -> Void

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    func run(_ lease: JobQueue.Lease) {
        keeper.hold(lease)
        defer { keeper.release(lease) }
        metrics.queueLagSeconds.set(lease.queuedSeconds)
        Failpoint.reach("after-claim", "job \(lease.jobId)")
        let scratch = "\(self.scratch)/job-\(lease.jobId)-\(lease.attempt)"
        defer {
            try? FileManager.default.removeItem(atPath: scratch + ".dmp")
            try? FileManager.default.removeItem(atPath: scratch + ".lz4")
        }
        let outcome: Result<(CrashReport, DumpFacts), JobFailure> = Result {
            let (contentHash, size) = try dumpRow(lease)
            try fetch(contentHash, size: size, into: scratch)
            Failpoint.reach("during-analysis", "job \(lease.jobId)")
            return try analyze(scratch + ".dmp")
        }.mapError { $0 as? JobFailure ?? JobFailure(fault: .worker, description: "\($0)") }
        if keeper.isLost(lease) {
            metrics.jobsAbandoned.increment()
            logger.warning("lease lost during analysis; job abandoned", metadata: ["job": "\(lease.jobId)", "attempt": "\(lease.attempt)"])
            return
        }
        switch outcome {
        case .success(let (report, facts)):
            store(report, facts: facts, lease: lease)
        case .failure(let failure):
            record(failure, lease: lease)
        }
    }

    /// The dump's content hash and size.
    func dumpRow(_ lease: JobQueue.Lease) throws -> (String, UInt64) {
        let rows = try pool.withConnection { db in try db.execute("SELECT content_hash, size FROM dumps WHERE id = $1", [String(lease.dumpId)]) }
        guard let row = rows.values.first, let contentHash = row[0] else {
            throw JobFailure(fault: .dump, description: "dump \(lease.dumpId) is not in the database")
        }
        return (contentHash, row[1].flatMap { UInt64($0) } ?? 0)
    }

    /// Decompresses the dump into `scratch.dmp`, from the shared blob folder or, through
    /// `scratch.lz4`, from the coordinator; says whose fault it is when that fails.
    func fetch(_ contentHash: String, size expected: UInt64, into scratch: String) throws {
        let size: UInt64
        switch configuration.blobs {
        case .directory(let root):
            let blob = try BlobStore.path(of: contentHash, in: root)
            guard FileManager.default.fileExists(atPath: blob) else {
                // Not the stored copy's fault for certain: the folder may be the wrong one, a
                // mount may be missing, or a shared mount may not show a new file yet. The
                // coordinator, which sees its own disk, takes a new upload of a dump whose
                // file is gone; here the job goes back (and counts after a few give-backs).
                if let problem = WorkerSetup.blobFolderProblem(root) { throw JobFailure(fault: .worker, description: problem) }
                throw JobFailure(fault: .worker, description: "the blob folder has no file for this dump (not visible on this host yet, or gone)")
            }
            size = try extracting(expected) { try BlobStore.extract(blobAt: blob, contentHash: contentHash, to: scratch + ".dmp") }
        case .coordinator(let url, let token):
            let client = FleetClient(server: url, token: token)
            do {
                _ = try AsyncBridge.wait { try await client.download(blob: contentHash, to: scratch + ".lz4") }
            } catch let failure as FleetClient.Failure where failure.status == 404 || failure.status == 410 {
                // The coordinator answers 404 only when its file is not there (ENOENT), and 410
                // for a copy already found damaged.
                throw JobFailure(fault: .storedCopy, description: failure.status == 410 ? failure.message : "the coordinator has no file for this dump")
            } catch let failure as FleetClient.Failure where failure.status == 401 || failure.status == 403 {
                throw JobFailure(fault: .worker, description: "the coordinator refuses this worker's token (HTTP \(failure.status))")
            } catch let failure as FleetClient.WriteFailure where failure.isDiskFull {
                throw JobFailure(fault: .worker, description: "the scratch disk is full: \(failure)", needsFreeBytes: expected)
            } catch {
                throw JobFailure(fault: .worker, description: "cannot download the dump from the coordinator: \(error)")
            }
            size = try extracting(expected) { try BlobStore.extract(blobAt: scratch + ".lz4", contentHash: contentHash, to: scratch + ".dmp") }
        }
        metrics.bytesFetched.increment(by: Int64(clamping: size))
    }

    /// Runs an extraction of a dump of `expected` bytes: bytes that are not what the blob's
    /// name says are the stored copy's fault; anything else (the scratch disk full, say) is
    /// the worker's.
    func extracting(_ expected: UInt64, _ body: () throws -> UInt64) throws -> UInt64 {
        do {
            return try body()
        } catch let failure as BlobStore.OutputFailure where failure.isDiskFull {
            throw JobFailure(fault: .worker, description: "the scratch disk is full: \(failure)", needsFreeBytes: expected)
        } catch let damage as BlobStore.Damage {
            throw JobFailure(fault: .storedCopy, description: damage.description)
        } catch let damage as LZ4Error {
            throw JobFailure(fault: .storedCopy, description: damage.description)
        } catch {
            throw JobFailure(fault: .worker, description: "cannot decompress the dump into the scratch folder: \(error)")
        }
    }

    func analyze(_ path: String) throws -> (CrashReport, DumpFacts) {
        let started = Date()
        let source: ByteSource
        do { source = try MappedFile.open(path) } catch { throw JobFailure(fault: .worker, description: "\(error)") }
        let dump: KernelDump
        do { dump = try KernelDump(source: source) } catch { throw JobFailure(fault: .dump, description: "\(error)") }
        let report = CrashAnalyzer(parallelism: configuration.analysisThreads, symbols: configuration.symbols).analyze(dump)
        metrics.analysisSeconds.record(Date().timeIntervalSince(started))
        let header = dump.header
        let facts = DumpFacts(dumpType: Int(header.dumpType.rawValue), machine: "\(header.machine)", build: Int(header.buildNumber),
                              bugCheckCode: UInt64(header.bugCheckCode))
        return (report, facts)
    }
    /// Stores the result under the lease. A dropped connection is retried (the write is
    /// idempotent and fenced); a lost lease means another attempt owns the job now.
    func store(_ report: CrashReport, facts: DumpFacts, lease: JobQueue.Lease) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let signature: StoredSignature
        let reportJSON: String
        do {
            reportJSON = String(decoding: try encoder.encode(report), as: UTF8.self)
            signature = StoredSignature(id: report.signature.id, bucket: report.signature.bucket, bugCheckClass: report.signature.bugCheckClass,
                                        featuresJSON: String(decoding: try encoder.encode(report.signature), as: UTF8.self))
        } catch {
            return record(JobFailure(fault: .dump, description: "cannot encode the report: \(error)"), lease: lease)
        }
        for attempt in 1...5 {
            do {
                try pool.withConnection { db in
                    try db.transaction {
                        try queue.complete(lease, report: reportJSON, signature: signature, facts: facts, on: db)
                        try index.index(dumpId: lease.dumpId, report: report, on: db)
                        Failpoint.reach("before-commit", "job \(lease.jobId)")
                    }
                }
                metrics.jobsDone.increment()
                logger.info("job done", metadata: ["job": "\(lease.jobId)", "dump": "\(lease.dumpId)", "bucket": "\(report.failureBucketId)"])
                return
            } catch let lost as JobQueue.LeaseLost {
                metrics.jobsAbandoned.increment()
                logger.warning("\(lost); result dropped", metadata: ["job": "\(lease.jobId)"])
                return
            } catch {
                logger.warning("cannot store the result (try \(attempt) of 5): \(error)", metadata: ["job": "\(lease.jobId)"])
                Thread.sleep(forTimeInterval: 0.2 * Double(attempt * attempt))
            }
        }
        logger.error("giving the job up; its lease will expire and another attempt will run", metadata: ["job": "\(lease.jobId)"])
    }

    func record(_ failure: JobFailure, lease: JobQueue.Lease) {
        let message = failure.description
        do {
            switch failure.fault {
            case .dump:
                metrics.jobsFailed.increment()
                logger.warning("job attempt failed", metadata: ["job": "\(lease.jobId)", "attempt": "\(lease.attempt)", "error": "\(message)"])
                try pool.withConnection { db in try queue.fail(lease, error: message, on: db) }
            case .storedCopy:
                let failed = try pool.withConnection { db in try queue.failForDamagedBlob(lease, error: message, on: db) }
                metrics.jobsFailed.increment()
                if failed {
                    logger.error("the stored copy of a dump is damaged; its job fails until the dump is uploaded again",
                                 metadata: ["job": "\(lease.jobId)", "dump": "\(lease.dumpId)", "error": "\(message)"])
                } else {
                    logger.notice("the stored copy was replaced while it was read; the job runs again", metadata: ["job": "\(lease.jobId)"])
                }
            case .worker:
                let outcome = try pool.withConnection { db in try queue.giveBack(lease, reason: message, on: db) }
                if outcome == .counted {
                    metrics.jobsFailed.increment()
                    logger.warning("job given back too often: this failure counts against it", metadata: ["job": "\(lease.jobId)", "error": "\(message)"])
                } else {
                    metrics.jobsGivenBack.increment()
                    logger.error("job given back: this worker cannot work on it", metadata: ["job": "\(lease.jobId)", "error": "\(message)"])
                }
                pause(failure)
            }
        } catch {
            logger.warning("cannot record the failure (the lease will expire instead): \(error)", metadata: ["job": "\(lease.jobId)"])
            if failure.fault == .worker { pause(failure) }
        }
    }
}

/// Runs async work (the HTTP client's) from a worker thread and waits for it. Only for threads
/// the worker owns: never call it from the cooperative pool.
enum AsyncBridge {
    static func wait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
            done.signal()
        }
        done.wait()
        return try box.result!.get()
    }

    final class ResultBox<T>: @unchecked Sendable {
        var result: Result<T, any Error>?
    }
}
