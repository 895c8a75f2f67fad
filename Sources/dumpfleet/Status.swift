import ArgumentParser
import FleetAPI
import FleetClient

/// `dumpfleet status`
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the queue: dumps, uploads, jobs by state, queue lag.")

    @OptionGroup var server: ServerOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let status = try await FleetClient(server: server.server, token: server.token).status()
        if json { return print(try JSONOutput.encode(status)) }
        print("dumps \(status.dumps), uploads \(status.uploads), open upload sessions \(status.openUploadSessions)")
        let order = ["queued", "running", "done", "failed"]
        print("jobs: " + order.map { "\($0) \(status.jobs[$0] ?? 0)" }.joined(separator: ", "))
        print("oldest runnable job waited \(String(format: "%.1f", status.oldestQueuedSeconds)) s")
    }
}

/// `dumpfleet show`
struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show one dump: where it came from, its jobs, its bucket; --report prints the analysis.",
        discussion: "The dump id is what `dumpfleet upload` printed."
    )

    @Argument(help: "Dump id.")
    var id: Int64

    @OptionGroup var server: ServerOptions

    @Flag(help: "Print the stored analyze report (JSON) instead of the summary.")
    var report = false

    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() async throws {
        let client = FleetClient(server: server.server, token: server.token)
        if report { return print(try await client.report(dumpId: id)) }
        let dump = try await client.dump(id)
        if json { return print(try JSONOutput.encode(dump)) }
        print(Self.text(dump))
    }

    static func text(_ dump: DumpStatus) -> String {
        var lines = ["dump \(dump.id)  contentHash \(dump.contentHash)  \(ProgressDisplay.bytes(dump.size))"]
        if let code = dump.bugcheckCode { lines.append("bug check 0x\(String(code, radix: 16, uppercase: true)), build \(dump.build.map(String.init) ?? "?")") }
        lines.append("bucket \(dump.bucket ?? "(not analyzed yet)")" + (dump.signatureId.map { "  signature \($0)" } ?? ""))
        for upload in dump.uploads {
            let tags = upload.tags.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            lines.append("  uploaded \(upload.uploadedAt) from \(upload.vm)" + (upload.host.map { " on \($0)" } ?? "")
                         + (upload.uploadedBy.map { " by \($0)" } ?? "") + (tags.isEmpty ? "" : " [\(tags)]"))
        }
        if dump.uploadCount > Int64(dump.uploads.count) {
            lines.append("  ... and \(dump.uploadCount - Int64(dump.uploads.count)) more uploads (GET /v1/dumps/\(dump.id)/uploads pages through them)")
        }
        if let damage = dump.blobError {
            lines.append("  the stored copy is damaged or missing (\(damage)): upload the dump again to replace it")
        }
        for job in dump.jobs {
            lines.append("  job \(job.id) (analyzer v\(job.analyzerVersion)): \(job.state), attempt \(job.attempt) of \(job.maxAttempts)"
                         + (job.lastError.map { ", last error: \($0)" } ?? ""))
        }
        return lines.joined(separator: "\n")
    }
}

/// `dumpfleet wait`
struct Wait: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait until dumps are analyzed (or failed for good), then print their buckets.",
        discussion: "Exits 0 when every dump was analyzed, 1 when one failed, 2 on timeout."
    )

    @Argument(help: "Dump ids.")
    var ids: [Int64]

    @OptionGroup var server: ServerOptions

    @Option(help: "Give up after this many seconds.")
    var timeout = 600.0

    func run() async throws {
        let client = FleetClient(server: server.server, token: server.token)
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        var failed = false
        for id in ids {
            while true {
                let dump = try await client.dump(id)
                if dump.isSettled {
                    let failure = dump.jobs.first { $0.state == "failed" }
                    failed = failed || failure != nil
                    print("dump \(id): " + (failure.map { "failed: \($0.lastError ?? "?")" } ?? (dump.bucket ?? "done")))
                    break
                }
                guard ContinuousClock.now < deadline else {
                    warn("dumpfleet: dump \(id) is not analyzed after \(timeout) s")
                    throw ExitCode(2)
                }
                try await Task.sleep(for: .milliseconds(500))
            }
        }
        if failed { throw ExitCode(1) }
    }
}
