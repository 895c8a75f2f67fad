import BlobStore
import Foundation
import Logging
import ServiceLifecycle
import Store

/// Work the coordinator does every few seconds for as long as it runs. A chore that fails is
/// logged and tried again at its next turn.
struct Chore: Service {
    let name: String
    let interval: Double
    let logger: Logger
    let body: @Sendable () async throws -> Void

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await body()
            } catch {
                logger.warning("\(name) failed; trying again in \(interval) s", metadata: ["error": "\(error)"])
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) }
        }
    }
}

/// The coordinator's chores: leases of workers that stopped heartbeating go back to the queue
/// (workers do this too, so the queue heals with either alone); upload sessions idle too long
/// expire and their files go, and so do plain uploads' files a killed coordinator left; the queue
/// gauges of /metrics are read.
struct Housekeeping: Sendable {
    let work: BlockingWork
    let catalog: Catalog
    let blobs: BlobStore
    let active: ActiveUploads
    let metrics: CoordinatorMetrics
    let sessionIdleSeconds: Double
    let logger: Logger

    func reapLeases() async throws {
        let reaped = try await work.database { [catalog] db in try catalog.queue.reapExpiredLeases(on: db) }
        if reaped > 0 {
            metrics.leasesReaped.increment(by: Int64(reaped))
            logger.notice("returned jobs with expired leases to the queue", metadata: ["jobs": "\(reaped)"])
        }
    }

    /// Expires open sessions that nothing touched for `sessionIdleSeconds` (a PATCH in progress
    /// touches its session at every checkpoint, and sessions a request holds are skipped), and
    /// deletes the files of sessions that are no longer open: expired ones, and any a crash
    /// left behind.
    func expireUploads() async throws {
        let busy = active.busy
        let expired = try await work.database { [catalog, sessionIdleSeconds] db in
            try catalog.expireSessions(idleSeconds: sessionIdleSeconds, busy: busy, on: db)
        }
        if !expired.isEmpty {
            metrics.uploadsExpired.increment(by: Int64(expired.count))
            logger.notice("expired idle upload sessions", metadata: ["sessions": "\(expired.count)", "idleSeconds": "\(sessionIdleSeconds)"])
        }
        let withFiles = IncomingUpload.sessions(in: blobs).keys.filter { !busy.contains($0) }
        let open = try await work.database { [catalog] db in try catalog.openSessions(among: Array(withFiles), on: db) }
        for id in withFiles where !open.contains(id) && !active.busy.contains(id) {
            try blobs.incoming(session: id).remove()
        }
        let abandoned = blobs.removeAbandonedWrites(idleFor: Self.abandonedWriteSeconds)
        if abandoned > 0 { logger.notice("deleted plain uploads' files a stopped coordinator left", metadata: ["files": "\(abandoned)"]) }
    }

    /// A plain upload in progress writes its file at least every `plainBatchBytes` (1 MiB), and
    /// past its first minute it must average 1 KiB a second (`isTooSlow`): at most 17 minutes
    /// between writes. A file no one wrote to for an hour belongs to no request.
    static let abandonedWriteSeconds: Double = 3600

    func readQueueGauges() async throws {
        let status = try await work.database { [catalog] db in try catalog.status(on: db) }
        metrics.setQueue(jobs: status.jobs, lagSeconds: status.oldestQueuedSeconds, dumps: status.dumps)
    }
}
