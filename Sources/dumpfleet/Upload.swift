import ArgumentParser
import FleetAPI
import FleetClient
import Foundation

/// `dumpfleet upload`
struct Upload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Upload dumps to the coordinator (hashed and LZ4-compressed while streaming).",
        discussion: """
        Each file is hashed first; a dump the coordinator already has is recorded against this \
        VM without sending its bytes. Otherwise its LZ4 frame is streamed, and a dropped \
        connection resumes from the server's offset. Running the same command again after an \
        interruption resumes too. Exits 1 if any file failed.

        Example:
          dumpfleet upload MEMORY.DMP --vm vdi-w10-0147 --host kvm-12 \\
              --tag pool=finance --server http://coordinator:8080 \\
              --token "$DUMPFLEET_TOKEN"
        """
    )

    @Argument(help: "Dump files.")
    var files: [String]

    @Option(help: "Name of the VM (or machine) the dumps come from.")
    var vm: String

    @Option(help: "Hypervisor host the VM ran on.")
    var host: String?

    @OptionGroup var tags: TagOptions

    @OptionGroup var server: ServerOptions

    @Flag(help: "Print one JSON result per file instead of text.")
    var json = false

    func validate() throws {
        try server.requireToken()
    }

    func run() async throws {
        let sender = UploadSender(server: server)
        var failed = false
        for file in files {
            do {
                let status = try await sender.send(file: file, vm: vm, host: host, tags: tags.labels)
                if json {
                    print(try JSONOutput.encode(UploadResult(file: file, status: status)))
                } else {
                    print(UploadSender.summary(file: file, status: status))
                }
            } catch {
                failed = true
                if json {
                    print(try JSONOutput.encode(ReportPrinter.Failure(file: file, error: "\(error)")))
                } else {
                    warn("dumpfleet: \(file): \(error)")
                }
            }
        }
        if failed { throw ExitCode(1) }
    }

    struct UploadResult: Encodable {
        var file: String
        var status: UploadStatus
    }
}

/// `--tag key=value`, repeatable: labels recorded with an upload (`upload` and `capture`).
struct TagOptions: ParsableArguments {
    @Option(name: .customLong("tag"), help: "A label as key=value; repeat for more.")
    var tags: [String] = []

    func validate() throws {
        for tag in tags where !tag.contains("=") { throw ValidationError("--tag takes key=value, not \"\(tag)\"") }
    }

    var labels: [String: String] {
        var labels: [String: String] = [:]
        for tag in tags {
            let parts = tag.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            labels[String(parts[0])] = String(parts[1])
        }
        return labels
    }
}

/// Sends dumps the way `dumpfleet upload` does, for it and for `capture`: FleetClient's
/// Uploader (hash, announce, LZ4 stream, resume) with its progress drawn on stderr.
struct UploadSender {
    let client: FleetClient
    let uploader: Uploader
    let display: ProgressDisplay

    init(server: ServerOptions) {
        let display = ProgressDisplay()
        client = FleetClient(server: server.server, token: server.token)
        uploader = Uploader(client: client) { display.update($0) }
        self.display = display
    }

    /// Asks the coordinator whose token this is, so that a missing coordinator or a refused
    /// token shows before a capture, not after it (within 10 seconds).
    func checkCoordinator() async throws {
        do {
            _ = try await client.whoami(timeout: .seconds(10))
        } catch {
            throw CaptureFailure(description: "cannot use the coordinator at \(client.server): \(error)")
        }
    }

    func send(file: String, vm: String, host: String?, tags: [String: String]) async throws -> UploadStatus {
        defer { display.finish() }
        return try await uploader.upload(file: file, vm: vm, host: host, tags: tags)
    }

    /// `FILE: stored as dump 12, job 31`, the line `upload` prints per file.
    static func summary(file: String, status: UploadStatus) -> String {
        let verb = status.state == .known ? "already stored" : "stored"
        return "\(file): \(verb) as dump \(status.dumpId.map(String.init) ?? "?"), job \(status.jobId.map(String.init) ?? "?")"
    }
}
