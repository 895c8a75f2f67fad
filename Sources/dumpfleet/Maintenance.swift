import ArgumentParser
import CrashClusters
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

/// `dumpfleet requeue`
struct Requeue: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Queue failed jobs again, once what made them fail is mended.",
        discussion: """
        A job ends failed when its attempts are used up, or at once when the stored copy of \
        its dump is damaged (uploading the dump again replaces the copy and requeues the job \
        by itself). Choose the jobs by id, by dump, by a piece of their last error, or all \
        failed jobs; each gets --attempts more attempts. Jobs that are not failed are left alone.

        Examples:
          dumpfleet requeue 31 32
          dumpfleet requeue --error "No space left on device"
          dumpfleet requeue --all-failed --attempts 2
        """
    )

    @Argument(help: "Ids of failed jobs.")
    var jobs: [Int64] = []

    @Option(name: .customLong("dump"), help: "The failed jobs of this dump; repeat for more.")
    var dumps: [Int64] = []

    @Option(name: .customLong("error"), help: "Failed jobs whose last error contains this text.")
    var errorText: String?

    @Flag(name: .customLong("all-failed"), help: "Every failed job.")
    var allFailed = false

    @Option(help: "Attempts each job gets from now on.")
    var attempts = 5

    @Flag(help: "Print the ids as JSON.")
    var json = false

    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        guard !jobs.isEmpty || !dumps.isEmpty || errorText != nil || allFailed else {
            throw ValidationError("choose jobs: give job ids, --dump, --error or --all-failed")
        }
        guard (1...100).contains(attempts) else { throw ValidationError("--attempts must be 1 to 100") }
        guard errorText.map({ !$0.isEmpty }) ?? true else { throw ValidationError("--error needs some text") }
    }

    func run() throws {
        let connection = try PostgresConnection(database.connection)
        var selections = jobs.map(JobQueue.Selection.job) + dumps.map(JobQueue.Selection.dump)
        if let errorText { selections.append(.failedWith(errorText)) }
        if allFailed { selections = [.allFailed] }
        var queued: Set<Int64> = []
        for selection in selections {
            queued.formUnion(try JobQueue().requeue(selection, attempts: attempts, on: connection))
        }
        let ids = queued.sorted()
        if json { return print(try JSONOutput.encode(["requeued": ids])) }
        print(ids.isEmpty ? "no failed job matched" : "queued \(ids.count) failed job\(ids.count == 1 ? "" : "s") again with \(attempts) attempt\(attempts == 1 ? "" : "s") each: \(ids.map(String.init).joined(separator: ", "))")
    }
}

/// `dumpfleet recluster`
struct Recluster: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Place stored reports in clusters from the reports alone, without analyzing the dumps again.",
        discussion: """
        Without --all, only reports that have no cluster are placed: those stored before the \
        database had clusters (schema version 3 or older). With --all, every report is placed \
        again, as a reprocess would place it: a dump stays in its cluster while it still belongs \
        there, and dumps an operator merged or split stay where the operator put them. \
        Reports go in batches, each in its own transaction, so the command can be stopped and \
        run again. A report this build cannot read is listed; `dumpfleet reprocess` analyzes \
        its dump again.
        """
    )

    @OptionGroup var database: DatabaseOptions

    @Flag(help: "Place every stored report again, not only those without a cluster.")
    var all = false

    @Option(help: "Reports per transaction.")
    var batch = 1000

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard (1...100_000).contains(batch) else { throw ValidationError("--batch must be 1 to 100000") }
    }

    struct Outcome: Encodable {
        var placed: Int
        var unreadable: [Int64]
    }

    func run() throws {
        let connection = try PostgresConnection(database.connection)
        let result = try CrashIndex().backfill(everything: all, batchSize: batch, on: connection) { progress in
            if !json { print("placed \(progress.placed) report\(progress.placed == 1 ? "" : "s")") }
        }
        if json { return print(try JSONOutput.encode(Outcome(placed: result.placed, unreadable: result.unreadable))) }
        if result.placed == 0 && result.unreadable.isEmpty { print(all ? "no stored reports" : "every stored report has a cluster") }
        if !result.unreadable.isEmpty {
            print("\(result.unreadable.count) report\(result.unreadable.count == 1 ? "" : "s") written by an older analyzer (dumps \(result.unreadable.prefix(20).map(String.init).joined(separator: ", "))\(result.unreadable.count > 20 ? ", ..." : "")): run dumpfleet reprocess")
        }
    }
}
