import NIOPosix
import Store

/// Runs the coordinator's blocking work on threads of its own, so that the server's event loops
/// and the cooperative async pool never wait on the database or the disk. There are two pools,
/// and that is the point: database calls get as many threads as there are connections, while
/// the heavy work (writing upload bytes, decoding and hashing them) gets as many as there are
/// cores. A burst of uploads then queues behind other uploads only; a health check or a status
/// query still finds a database thread free.
struct BlockingWork: Sendable {
    let pool: ConnectionPool
    private let databaseThreads: NIOThreadPool
    private let computeThreads: NIOThreadPool

    init(pool: ConnectionPool, computeThreads: Int) {
        self.pool = pool
        databaseThreads = NIOThreadPool(numberOfThreads: pool.capacity)
        self.computeThreads = NIOThreadPool(numberOfThreads: max(1, computeThreads))
        databaseThreads.start()
        self.computeThreads.start()
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
    }
}
