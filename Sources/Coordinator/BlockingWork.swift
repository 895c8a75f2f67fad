import NIOPosix
import ServiceLifecycle
import Store

/// Runs the coordinator's blocking work on threads of its own, so that the server's event loops
/// and the cooperative async pool never wait on the database or the disk. There are three
/// pools, and that is the point: database calls get as many threads as there are connections,
/// the heavy work (writing upload bytes, decoding and hashing them) as many as there are
/// cores, and the health check a thread and a connection of its own. A burst of uploads then
/// queues behind other uploads only, slow queries behind other queries, and the health check
/// behind nothing.
struct BlockingWork: Sendable {
    let pool: ConnectionPool
    private let databaseThreads: NIOThreadPool
    private let computeThreads: NIOThreadPool
    private let healthPool: ConnectionPool
    private let healthThread: NIOThreadPool

    init(pool: ConnectionPool, computeThreads: Int) {
        self.pool = pool
        databaseThreads = NIOThreadPool(numberOfThreads: pool.capacity)
        self.computeThreads = NIOThreadPool(numberOfThreads: max(1, computeThreads))
        healthPool = ConnectionPool(connectionString: pool.connectionString, capacity: 1)
        healthThread = NIOThreadPool(numberOfThreads: 1)
        databaseThreads.start()
        self.computeThreads.start()
        healthThread.start()
    }

    /// Runs `body` on the health check's own connection, giving up after `timeout` seconds
    /// (the call itself may go on on its thread until libpq gives up; the answer does not wait).
    func health<T: Sendable>(timeout: Double, _ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let answered = Flag()
            Task { [healthThread, healthPool] in
                let result = await Result(catching: { try await healthThread.runIfActive { try healthPool.withConnection(body) } })
                if answered.change(to: true) { continuation.resume(with: result) }
            }
            Task {
                try? await Task.sleep(for: .milliseconds(Int(timeout * 1000)))
                if answered.change(to: true) { continuation.resume(throwing: TimedOut(seconds: timeout)) }
            }
        }
    }

    struct TimedOut: Error, CustomStringConvertible {
        var seconds: Double
        var description: String { "no answer within \(seconds) s" }
    }

    /// Runs `body` with a pooled database connection.
    func database<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await databaseThreads.runIfActive { [pool] in try pool.withConnection(body) }
    }

    /// Runs CPU- or disk-heavy work (an upload's bytes: written, decoded, hashed).
    func compute<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await computeThreads.runIfActive(body)
    }

    func shutdown() async {
        try? await databaseThreads.shutdownGracefully()
        try? await computeThreads.shutdownGracefully()
        try? await healthThread.shutdownGracefully()
    }
}

/// Stops the thread pools once everything else has stopped: a service group stops its services
/// in reverse order, so this goes first in the list.
struct ThreadPoolsService: Service {
    let work: BlockingWork

    func run() async throws {
        try? await gracefulShutdown()
        await work.shutdown()
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
