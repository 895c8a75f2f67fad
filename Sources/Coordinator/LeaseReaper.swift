import Logging
import ServiceLifecycle
import Store

/// Returns jobs whose worker stopped renewing its lease to the queue, every few seconds, for as
/// long as the coordinator runs. Workers reap too, so the queue heals with either alone.
struct LeaseReaper: Service {
    let work: BlockingWork
    let queue: JobQueue
    let interval: Double
    let metrics: CoordinatorMetrics
    let logger: Logger

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let reaped = try await work.database { [queue] db in try queue.reapExpiredLeases(on: db) }
                if reaped > 0 {
                    metrics.leasesReaped.increment(by: Int64(reaped))
                    logger.notice("returned jobs with expired leases to the queue", metadata: ["jobs": "\(reaped)"])
                }
            } catch {
                logger.warning("lease reaper: \(error)")
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) }
        }
    }
}
