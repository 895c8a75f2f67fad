import ArgumentParser
import DumpAnalysis
import Store

/// `dumpfleet migrate`
struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Bring the database schema up to this build's version (the coordinator does this on start too).",
        discussion: "Migrations are numbered and forward-only; a database newer than this build is refused."
    )

    @OptionGroup var database: DatabaseOptions

    func run() throws {
        let connection = try PostgresConnection(database.connection)
        let applied = try Migrations.apply(connection)
        let version = try Migrations.currentVersion(connection)
        print(applied.isEmpty ? "schema is at version \(version); nothing to do" : "applied \(applied.map(String.init).joined(separator: ", ")); schema is at version \(version)")
    }
}

/// `dumpfleet reprocess`
struct Reprocess: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Queue every dump that has no job for this build's analyzer version (after an upgrade).",
        discussion: "Reprocess jobs run at a lower priority than new uploads. Reports and signatures are replaced as the jobs finish."
    )

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Priority of the new jobs (new uploads have 0; higher runs first).")
    var priority = -1

    func run() throws {
        let connection = try PostgresConnection(database.connection)
        let queued = try JobQueue().reprocess(analyzerVersion: CrashAnalyzer.version, priority: priority, on: connection)
        print("queued \(queued) dump\(queued == 1 ? "" : "s") for analyzer version \(CrashAnalyzer.version)")
    }
}
