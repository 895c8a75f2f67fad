import Foundation

/// A few libpq connections shared by the coordinator's request handlers. A connection is lent
/// to one caller at a time; one that failed (the server restarted, an administrator ended the
/// backend) is dropped rather than returned, and the next caller opens a fresh one.
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
        let connection = try reused.flatMap { $0.isHealthy ? $0 : nil } ?? PostgresConnection(connectionString)
        defer { if connection.isHealthy { keep = connection } }
        return try body(connection)
    }
}
