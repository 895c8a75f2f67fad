import Foundation
import Store
import TestSupport
import Testing

@Suite struct MigrationTests {
    @Test func migrationsApplyOnceInOrder() throws {
        let connection = try PostgresConnection(TestDatabase.fresh(migrated: false))
        #expect(try Migrations.currentVersion(connection) == 0)
        #expect(try Migrations.apply(connection) == Migrations.all.map(\.version))
        #expect(try Migrations.apply(connection).isEmpty, "a second run applies nothing")
        #expect(try Migrations.currentVersion(connection) == Migrations.all.last?.version)
        let tables = try connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename").values.map { $0[0]! }
        #expect(tables == ["cluster_exemplars", "cluster_members", "clusters", "dump_attributes", "dumps", "job_attempts", "jobs", "reports", "schema_migrations", "signatures", "upload_sessions", "uploads"])
    }

    @Test func newerDatabaseIsRefused() throws {
        let connection = try PostgresConnection(TestDatabase.fresh())
        try connection.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')")
        #expect(throws: Migrations.Failure.self) { try Migrations.apply(connection) }
    }

    @Test func embeddedMigrationsAreTheFilesInSql() throws {
        let sql = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("sql")
        let files = try FileManager.default.contentsOfDirectory(atPath: sql.path).filter { $0.hasSuffix(".sql") }.sorted()
        #expect(files.count == Migrations.all.count, "run scripts/embed-sql after changing sql/")
        for (file, migration) in zip(files, Migrations.all) {
            let text = try String(contentsOf: sql.appendingPathComponent(file), encoding: .utf8)
            #expect(text.trimmingCharacters(in: .whitespacesAndNewlines) == migration.sql.trimmingCharacters(in: .whitespacesAndNewlines), "\(file) differs: run scripts/embed-sql")
            #expect(file.hasPrefix(String(format: "%03d_", migration.version)))
        }
    }

    @Test func valuesTravelAsParameters() throws {
        let connection = try PostgresConnection(TestDatabase.fresh())
        let hostile = "x'); DROP TABLE jobs; --"
        let rows = try connection.execute("SELECT $1::text AS value, $2::text IS NULL AS missing", [hostile, nil])
        #expect(rows[0, "value"] == hostile)
        #expect(rows[0, "missing"] == "t")
        let error = #expect(throws: PostgresConnection.Failure.self) { try connection.execute("SELECT * FROM no_such_table") }
        #expect(error?.sqlState == "42P01")
    }

    @Test func arrayLiteralsCarryAnyText() throws {
        let connection = try PostgresConnection(TestDatabase.fresh())
        let values = ["plain", "", "a,b", "{braces}", "quote\"d", "back\\slash\\", "NULL", " spaced ", "ünïcödé \u{1F}"]
        let rows = try connection.execute("SELECT unnest($1::text[])", [PostgresConnection.arrayLiteral(values)])
        #expect(rows.values.map { $0[0] } == values)
        #expect(try connection.execute("SELECT $1::bigint[]", [PostgresConnection.arrayLiteral([-1, 0, Int64.max] as [Int64])]).values[0][0]
                == "{-1,0,9223372036854775807}")
    }
}
