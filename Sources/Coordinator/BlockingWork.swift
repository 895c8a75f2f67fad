import Dispatch
import Store

/// Runs blocking work (libpq calls, hashing a whole upload) on threads Dispatch owns, so the
/// server's event loops and the cooperative async pool never wait on the database or the disk.
struct BlockingWork: Sendable {
    let pool: ConnectionPool
    private let queue = DispatchQueue(label: "dumpfleet.coordinator.blocking", attributes: .concurrent)

    init(pool: ConnectionPool) { self.pool = pool }

    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Runs `body` with a pooled database connection.
    func database<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await run { [pool] in try pool.withConnection(body) }
    }
}
