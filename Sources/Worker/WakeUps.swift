import Foundation
import Logging
import Store

/// Wakes the claim loop when a job may be waiting: on a NOTIFY from the queue's channel, and
/// otherwise every poll interval. LISTENs on a connection of its own; notifications sent while
/// that connection is down are lost, so after reconnecting it LISTENs again and wakes the loop
/// once to poll.
final class WakeUps: @unchecked Sendable {
    let database: String
    let logger: Logger
    private let lock = NSCondition()
    private var pending = false
    private var stopped = false

    init(database: String, logger: Logger) {
        self.database = database
        self.logger = logger
    }

    func startListening() {
        let thread = Thread { [self] in listen() }
        thread.name = "dumpfleet-listen"
        thread.start()
    }

    /// Waits until woken or `seconds` pass.
    func wait(seconds: Double) {
        lock.lock()
        let deadline = Date().addingTimeInterval(seconds)
        while !pending && !stopped && Date() < deadline { _ = lock.wait(until: deadline) }
        pending = false
        lock.unlock()
    }

    func wake() {
        lock.lock()
        pending = true
        lock.broadcast()
        lock.unlock()
    }

    func stop() {
        lock.lock()
        stopped = true
        lock.broadcast()
        lock.unlock()
    }

    private var isStopped: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped
    }

    private func listen() {
        var delay = 0.1
        while !isStopped {
            do {
                let connection = try PostgresConnection(database)
                try connection.execute("LISTEN \(JobQueue.channel)")
                delay = 0.1
                wake()  // anything queued while we were not listening
                while !isStopped {
                    if try !connection.waitForNotification(milliseconds: 500).isEmpty { wake() }
                    if !connection.isHealthy { break }
                }
            } catch {
                logger.warning("job notifications unavailable, polling meanwhile: \(error)")
            }
            Thread.sleep(forTimeInterval: delay)
            delay = min(delay * 2, 5)
        }
    }
}
