import ArgumentParser
import Coordinator
import DumpAnalysis
import Foundation
import Logging

/// `dumpfleet coordinator`
struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Serve the upload, status and blob API (migrates the database first).",
        discussion: """
        Uploaders and workers talk to it over HTTP; it keeps dumps in the blob folder and the \
        queue in PostgreSQL. /healthz and /metrics need no token; everything under /v1 does. \
        SIGTERM or SIGINT stops it gracefully. The API is described in deploy/API.md.

        Example:
          dumpfleet coordinator --database postgresql://dumpfleet@db/dumpfleet \\
              --blobs /srv/dumpfleet/blobs --tokens-file /etc/dumpfleet/tokens \\
              --port 8080
        """
    )

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on.")
    var port = 8080

    @Option(help: "Blob store folder (default: $DUMPFLEET_BLOBS, else /var/lib/dumpfleet/blobs).")
    var blobs: String = ProcessInfo.processInfo.environment["DUMPFLEET_BLOBS"] ?? "/var/lib/dumpfleet/blobs"

    @Option(name: .customLong("tokens-file"), help: "File of accepted bearer tokens, one `NAME TOKEN` per line (default: $DUMPFLEET_TOKENS_FILE).")
    var tokensFile: String = ProcessInfo.processInfo.environment["DUMPFLEET_TOKENS_FILE"] ?? ""

    @Option(name: .customLong("max-upload-gib"), help: "Largest dump accepted, uncompressed, in GiB.")
    var maxUploadGiB: UInt64 = 64

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard (1...4096).contains(maxUploadGiB) else { throw ValidationError("--max-upload-gib must be 1 to 4096") }
    }

    func run() async throws {
        FleetLogging.bootstrap()
        var tokens: [AccessToken] = []
        if !tokensFile.isEmpty { tokens = try AccessToken.parse(file: String(contentsOfFile: tokensFile, encoding: .utf8)) }
        if let token = ProcessInfo.processInfo.environment["DUMPFLEET_TOKEN"], !token.isEmpty {
            tokens.append(AccessToken(name: "env", secret: token))
        }
        var configuration = CoordinatorConfiguration(database: database.connection, blobRoot: blobs, tokens: tokens,
                                                     analyzerVersion: CrashAnalyzer.version)
        configuration.host = host
        configuration.port = port
        configuration.maxUploadBytes = maxUploadGiB << 30
        do {
            try await Coordinator(configuration: configuration, logger: Logger(label: "dumpfleet.coordinator")).run()
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
    }
}
