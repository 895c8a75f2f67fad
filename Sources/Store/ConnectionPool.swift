import Foundation

/// A few libpq connections shared by the coordinator's request handlers. A connection is lent
/// to one caller at a time; one that failed is dropped rather than returned, and the next caller
/// opens a fresh one.
///
/// A connection that sat idle while the server restarted (or an administrator ended its
/// backend) looks healthy until it is used, and then fails its first statement. So when a body
/// fails on a reused connection that broke before any of the body's statements succeeded,
/// nothing of it happened, and it runs once more on a new connection: a restarted server costs
/// no caller an error.
public final class ConnectionPool: @unchecked Sendable {
    public let connectionString: String
    public let capacity: Int
    private let lock = NSCondition()
    private var idle: [PostgresConnection] = []
    private var lent = 0

    public init(connectionString: String, capacity: Int = 8) {
        self.connectionString = connectionString
        self.capacity = max(1, capacity)
    }

    /// Runs `body` with a connection, waiting while all of them are lent. Blocking: call from a
    /// thread you own, never from the cooperative async pool.
    public func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        lock.lock()
        while idle.isEmpty && lent >= capacity { lock.wait() }
        let reused = idle.popLast()
        lent += 1
        lock.unlock()
        var keep: PostgresConnection?
        defer {
            lock.lock()
            lent -= 1
            if let keep { idle.append(keep) }
            lock.signal()
            lock.unlock()
        }
        if let reused, reused.isHealthy {
            let before = reused.completedStatements
            do {
                let value = try body(reused)
                keep = reused
                return value
            } catch let failure as PostgresConnection.Failure where failure.isConnectionFailure && !reused.isHealthy && reused.completedStatements == before {
                // The idle connection was dead: go on to a new one below.
            } catch {
                if reused.isHealthy { keep = reused }
                throw error
            }
        }
        let connection = try PostgresConnection(connectionString)
        defer { if connection.isHealthy { keep = connection } }
        return try body(connection)
    }
}
