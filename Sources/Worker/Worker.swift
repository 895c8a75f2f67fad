import Foundation
import Logging
import Store

/// `dumpfleet worker`: claims jobs in batches as slots free up, runs each on a thread of its
/// own, and keeps their leases alive from a separate heartbeat thread. `drain()` (SIGTERM)
/// stops claiming and lets the jobs in hand finish; `run()` returns when they have.
public final class Worker: @unchecked Sendable {
    public let configuration: WorkerConfiguration
    public let metrics = WorkerMetrics()
    let logger: Logger
    let queue: JobQueue
    let pool: ConnectionPool
    let keeper: LeaseKeeper
    let wakeUps: WakeUps
    private let lock = NSCondition()
    private var running = 0
    private var draining = false
    /// Why the worker claims nothing right now, when its own setup failed.
    private var paused: Pause?

    struct Pause {
        var reason: String
        /// Scratch space to wait for (after a full disk), besides the setup working.
        var needsFreeBytes: UInt64?
    }

    /// The worker cannot start: the coordinator refuses its token.
    public struct SetupFailure: Error, CustomStringConvertible {
        public var description: String
    }

    public init(configuration: WorkerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        queue = JobQueue(retry: configuration.retry)
        pool = ConnectionPool(connectionString: configuration.database, capacity: configuration.concurrency + 1)
        keeper = LeaseKeeper(database: configuration.database, queue: queue, leaseSeconds: configuration.leaseSeconds, metrics: metrics, logger: logger)
        wakeUps = WakeUps(database: configuration.database, logger: logger)
    }

    /// Stops claiming; jobs in hand finish. Safe from any thread (and a signal handler's queue).
    public func drain() {
        lock.lock()
        draining = true
        lock.broadcast()
        lock.unlock()
        wakeUps.wake()
    }

    /// The worst heartbeat lateness so far, in seconds.
    public var worstHeartbeatLateness: Double { keeper.worstLateness }

    /// Works until drained. Blocking: call it on a thread of your own. Throws `SetupFailure`
    /// at once, having claimed nothing, when the coordinator refuses the token; other trouble
    /// with its setup pauses the worker until it is mended.
    public func run() throws {
        let scratch = try ScratchFolder(root: configuration.scratch, workerId: configuration.workerId)
        let setup = WorkerSetup(configuration: configuration, scratch: scratch.path)
        if let problem = setup.problem() {
            if problem.refusesToken { throw SetupFailure(description: problem.description) }
            pause(problem.description)
        }
        let runner = JobRunner(configuration: configuration, scratch: scratch.path, pool: pool, queue: queue, keeper: keeper, metrics: metrics,
                               logger: logger, pause: { [weak self] failure in self?.pause(failure.description, needsFreeBytes: failure.needsFreeBytes) })
        keeper.start()
        if configuration.listen { wakeUps.startListening() }
        logger.notice("worker started", metadata: ["worker": "\(configuration.workerId)", "concurrency": "\(configuration.concurrency)",
                                                   "lease": "\(configuration.leaseSeconds)s", "listen": "\(configuration.listen)"])
        var failures = 0
        while let free = freeSlots() {
            if let pause = currentPause {
                if let problem = setup.problem(needsFreeBytes: pause.needsFreeBytes) {
                    self.pause(problem.description, needsFreeBytes: pause.needsFreeBytes)
                    sleepWhilePaused()
                    continue
                }
                resume()
            }
            do {
                let leases = try pool.withConnection { db in
                    try queue.claim(workerId: configuration.workerId, limit: free, leaseSeconds: configuration.leaseSeconds,
                                    analyzerVersion: configuration.analyzerVersion, on: db)
                }
                failures = 0
                if leases.isEmpty {
                    wakeUps.wait(seconds: configuration.pollSeconds)
                    continue
                }
                for lease in leases { start(lease, runner: runner) }
            } catch {
                failures += 1
                let delay = min(0.1 * pow(2, Double(failures)), 5)
                logger.warning("cannot claim jobs, retrying in \(String(format: "%.1f", delay)) s: \(error)")
                Thread.sleep(forTimeInterval: delay)
            }
        }
        lock.lock()
        while running > 0 { lock.wait() }
        lock.unlock()
        keeper.stop()
        wakeUps.stop()
        withExtendedLifetime(scratch) {}
        logger.notice("worker drained", metadata: ["worker": "\(configuration.workerId)"])
    }

    /// Stops claiming, and says why (once per reason).
    func pause(_ reason: String, needsFreeBytes: UInt64? = nil) {
        lock.lock()
        let changed = paused?.reason != reason
        paused = Pause(reason: reason, needsFreeBytes: needsFreeBytes ?? paused?.needsFreeBytes)
        lock.unlock()
        metrics.paused.set(to: 1.0)
        if changed {
            logger.error("worker paused: it claims no jobs until its setup works again (checked every \(configuration.setupRetrySeconds) s)",
                         metadata: ["reason": "\(reason)"])
        }
    }

    private func resume() {
        lock.lock()
        paused = nil
        lock.unlock()
        metrics.paused.set(to: 0.0)
        logger.notice("worker resumed: its setup works again")
    }

    private var currentPause: Pause? {
        lock.lock()
        defer { lock.unlock() }
        return paused
    }

    /// Waits out one setup-retry interval, or until drained.
    private func sleepWhilePaused() {
        lock.lock()
        let deadline = Date().addingTimeInterval(configuration.setupRetrySeconds)
        while !draining && Date() < deadline { _ = lock.wait(until: deadline) }
        lock.unlock()
    }

    /// Waits for a free slot; nil once draining.
    private func freeSlots() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        while !draining && running >= configuration.concurrency { lock.wait() }
        return draining ? nil : configuration.concurrency - running
    }

    private func start(_ lease: JobQueue.Lease, runner: JobRunner) {
        lock.lock()
        running += 1
        lock.unlock()
        let thread = Thread { [self] in
            runner.run(lease)
            lock.lock()
            running -= 1
            lock.broadcast()
            lock.unlock()
            wakeUps.wake()  // a slot is free: look for more work now
        }
        thread.name = "dumpfleet-job-\(lease.jobId)"
        thread.stackSize = 8 << 20
        thread.start()
    }
}
