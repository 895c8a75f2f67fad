import Foundation
import Logging
import Store

/// Renews the leases of the jobs a worker holds, on a thread of its own with a connection of
/// its own, every third of the lease: analysis keeps the other threads busy, and a heartbeat
/// that waited behind it would let the lease run out (platform-notes: ~2 s late on the async
/// executor under load, ~2 ms on a dedicated thread). A lease the database refuses to renew was
/// taken over; the keeper marks it lost so its job is abandoned. Each round also returns other
/// workers' expired leases to the queue, so the queue heals without a coordinator.
final class LeaseKeeper: @unchecked Sendable {
    let pool: ConnectionPool
    let queue: JobQueue
    let leaseSeconds: Double
    let metrics: WorkerMetrics
    let logger: Logger
    private let lock = NSCondition()
    private var held: Set<JobQueue.Lease> = []
    private var lost: Set<JobQueue.Lease> = []
    private var stopped = false
    /// The worst lateness seen, in seconds (for benchmarks and logs).
    private(set) var worstLateness = 0.0

    init(database: String, queue: JobQueue, leaseSeconds: Double, metrics: WorkerMetrics, logger: Logger) {
        pool = ConnectionPool(connectionString: database, capacity: 1)
        self.queue = queue
        self.leaseSeconds = leaseSeconds
        self.metrics = metrics
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "dumpfleet-heartbeat"
        thread.qualityOfService = .userInteractive
        thread.start()
    }

    func stop() {
        lock.lock()
        stopped = true
        lock.broadcast()
        lock.unlock()
    }

    func hold(_ lease: JobQueue.Lease) {
        lock.lock()
        held.insert(lease)
        lock.unlock()
    }

    func release(_ lease: JobQueue.Lease) {
        lock.lock()
        held.remove(lease)
        lost.remove(lease)
        lock.unlock()
    }

    func isLost(_ lease: JobQueue.Lease) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return lost.contains(lease)
    }

    private func loop() {
        let interval = leaseSeconds / 3
        var due = Date().addingTimeInterval(interval)
        while true {
            lock.lock()
            while !stopped && Date() < due { _ = lock.wait(until: due) }
            let current = held.subtracting(lost)
            let done = stopped
            lock.unlock()
            if done { return }
            let lateness = Date().timeIntervalSince(due)
            metrics.heartbeatLatenessSeconds.record(lateness)
            worstLateness = max(worstLateness, lateness)
            due = Date().addingTimeInterval(interval)
            renew(current)
        }
    }

    private func renew(_ leases: Set<JobQueue.Lease>) {
        do {
            try pool.withConnection { db in
                for lease in leases {
                    do {
                        try queue.heartbeat(lease, leaseSeconds: leaseSeconds, on: db)
                    } catch let error as JobQueue.LeaseLost {
                        logger.warning("\(error); abandoning the job", metadata: ["job": "\(lease.jobId)"])
                        lock.lock()
                        lost.insert(lease)
                        lock.unlock()
                    }
                }
                _ = try queue.reapExpiredLeases(on: db)
            }
        } catch {
            logger.warning("heartbeat failed, retrying next round: \(error)")
        }
    }
}
