/// Numbered, forward-only schema migrations (the files in sql/, embedded in the binary).
public struct Migration: Sendable, Equatable {
    public var version: Int
    public var name: String
    public var sql: String
}

public enum Migrations {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Every migration this build knows, in order.
    public static var all: [Migration] { embedded.sorted { $0.version < $1.version } }

    /// Applies the migrations the database lacks, each in its own transaction, under an
    /// advisory lock so that a coordinator and `dumpfleet migrate` starting together take turns.
    /// Returns the versions applied. Refuses a database already migrated past this build.
    @discardableResult
    public static func apply(_ connection: PostgresConnection, migrations: [Migration] = all) throws -> [Int] {
        try connection.execute("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())
            """)
        return try connection.transaction {
            try connection.execute("SELECT pg_advisory_xact_lock(7460211)")
            let rows = try connection.execute("SELECT version FROM schema_migrations ORDER BY version")
            let applied = Set(rows.values.compactMap { $0[0].flatMap { Int($0) } })
            if let newest = applied.max(), let known = migrations.map(\.version).max(), newest > known {
                throw Failure(description: "the database schema is at version \(newest), newer than this dumpfleet knows (\(known)): upgrade dumpfleet")
            }
            var done: [Int] = []
            for migration in migrations where !applied.contains(migration.version) {
                do {
                    try connection.executeScript(migration.sql)
                } catch {
                    throw Failure(description: "migration \(migration.version) (\(migration.name)) failed: \(error)")
                }
                try connection.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [String(migration.version), migration.name])
                done.append(migration.version)
            }
            return done
        }
    }

    /// The highest version applied, or 0 for an empty database.
    public static func currentVersion(_ connection: PostgresConnection) throws -> Int {
        let exists = try connection.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        guard exists.values.first?.first == "t" else { return 0 }
        return Int(try connection.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").values[0][0] ?? "0") ?? 0
    }
}
