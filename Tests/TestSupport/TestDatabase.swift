import Foundation
import Store

/// A real PostgreSQL server for the whole test run (never a mock): one private server started on
/// first use, one fresh database per test. Set DUMPFLEET_TEST_PG to a libpq connection string
/// to use a server of your own instead.
public enum TestDatabase {
    nonisolated(unsafe) static var server: EmbeddedPostgres?
    static let lock = NSLock()
    nonisolated(unsafe) static var counter = 0

    public static func serverConnectionString() throws -> String {
        if let given = ProcessInfo.processInfo.environment["DUMPFLEET_TEST_PG"] { return given }
        lock.lock()
        defer { lock.unlock() }
        if let server { return server.connectionString }
        let started = EmbeddedPostgres()
        try started.start()
        server = started
        atexit { TestDatabase.server?.stop() }
        return started.connectionString
    }

    /// A new, empty, migrated database; its connection string.
    public static func fresh(migrated: Bool = true) throws -> String {
        let base = try serverConnectionString()
        lock.lock()
        counter += 1
        let name = "dumpfleet_test_\(getpid())_\(counter)"
        lock.unlock()
        let admin = try PostgresConnection(base)
        try admin.execute("CREATE DATABASE \(name)")  // a name we made, not a value: no bind possible for identifiers
        let connection = base.replacingOccurrences(of: "dbname=postgres", with: "dbname=\(name)")
        if migrated { try Migrations.apply(PostgresConnection(connection)) }
        return connection
    }
}
