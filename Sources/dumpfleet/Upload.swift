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

    @Option(name: .customLong("tag"), help: "A label as key=value; repeat for more.")
    var tags: [String] = []

    @OptionGroup var server: ServerOptions

    @Flag(help: "Print one JSON result per file instead of text.")
    var json = false

    func validate() throws {
        guard !server.token.isEmpty else { throw ValidationError("--token (or $DUMPFLEET_TOKEN) is required") }
        for tag in tags where !tag.contains("=") { throw ValidationError("--tag takes key=value, not \"\(tag)\"") }
    }

    func run() async throws {
        var labels: [String: String] = [:]
        for tag in tags {
            let parts = tag.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            labels[String(parts[0])] = String(parts[1])
        }
        let display = ProgressDisplay()
        let uploader = Uploader(client: FleetClient(server: server.server, token: server.token)) { display.update($0) }
        var failed = false
        for file in files {
            do {
                let status = try await uploader.upload(file: file, vm: vm, host: host, tags: labels)
                display.finish()
                if json {
                    print(try JSONOutput.encode(UploadResult(file: file, status: status)))
                } else {
                    let verb = status.state == .known ? "already stored" : "stored"
                    print("\(file): \(verb) as dump \(status.dumpId.map(String.init) ?? "?"), job \(status.jobId.map(String.init) ?? "?")")
                }
            } catch {
                display.finish()
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
