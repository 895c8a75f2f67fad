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

    @OptionGroup(title: "Limits (deploy/OPERATIONS.md)") var limits: CoordinatorLimits

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        guard (1...4096).contains(maxUploadGiB) else { throw ValidationError("--max-upload-gib must be 1 to 4096") }
    }

    func run() async throws {
        FleetLogging.bootstrap()
        do {
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
            limits.apply(to: &configuration)
            try await Coordinator(configuration: configuration, logger: Logger(label: "dumpfleet.coordinator")).run()
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
    }
}

/// The coordinator's limits: connections, uploads in flight, per-token quotas, disk reserve.
struct CoordinatorLimits: ParsableArguments {
    @Option(name: .customLong("idle-timeout"), help: "Close a connection silent this long, mid-request or between requests (e.g. 30s).")
    var idleTimeout = Seconds(30)

    @Option(name: .customLong("max-connections"), help: "Connections served at once; 0: as many as the open-files limit allows (at most 4096).")
    var maxConnections = 0

    @Option(name: .customLong("max-connections-per-address"), help: "Connections from one address at once; more are closed (0: no limit; raise it behind a proxy).")
    var maxConnectionsPerAddress = 64

    @Option(name: .customLong("max-uploads-in-progress"), help: "Uploads streaming in at once; more are told to retry (503).")
    var maxUploadsInProgress = 64

    @Option(name: .customLong("max-sessions-per-token"), help: "Open upload sessions one token may hold.")
    var maxSessionsPerToken = 256

    @Option(name: .customLong("max-session-gib-per-token"), help: "GiB one token's open upload sessions may announce in all.")
    var maxSessionGiBPerToken: Double = 2048

    @Option(name: .customLong("session-expiry"), help: "Delete an upload session nothing arrived for in this long (e.g. 24h).")
    var sessionExpiry = Seconds(86400)

    @Option(name: .customLong("min-free-gib"), help: "Free space to keep on the blob store's disk; uploads that would use it are refused (507).")
    var minFreeGiB: Double = 0.5

    @Option(name: .customLong("metrics-refresh"), help: "How often /metrics reads the queue counts from the database.")
    var metricsRefresh = Seconds(15)

    func validate() throws {
        guard idleTimeout.value >= 0.1 && idleTimeout.value <= 3600 else { throw ValidationError("--idle-timeout must be 0.1 s to 1 h") }
        guard maxConnections >= 0, maxConnectionsPerAddress >= 0 else { throw ValidationError("connection limits cannot be negative") }
        guard (1...10_000).contains(maxUploadsInProgress) else { throw ValidationError("--max-uploads-in-progress must be 1 to 10000") }
        guard maxSessionsPerToken >= 1 else { throw ValidationError("--max-sessions-per-token must be at least 1") }
        guard maxSessionGiBPerToken > 0 && maxSessionGiBPerToken <= 1_048_576 else { throw ValidationError("--max-session-gib-per-token must be above 0 and at most 1048576 (1 PiB)") }
        guard sessionExpiry.value >= 1 && sessionExpiry.value <= 365 * 86400 else { throw ValidationError("--session-expiry must be 1 s to 365 d") }
        guard minFreeGiB >= 0 && minFreeGiB <= 1_048_576 else { throw ValidationError("--min-free-gib must be 0 to 1048576 (1 PiB)") }
        guard metricsRefresh.value >= 0.1 && metricsRefresh.value <= 86400 else { throw ValidationError("--metrics-refresh must be 0.1 s to 1 d") }
    }

    func apply(to configuration: inout CoordinatorConfiguration) {
        configuration.idleTimeoutSeconds = idleTimeout.value
        configuration.maxConnections = maxConnections
        configuration.maxConnectionsPerAddress = maxConnectionsPerAddress
        configuration.maxUploadsInProgress = maxUploadsInProgress
        configuration.maxSessionsPerToken = maxSessionsPerToken
        configuration.maxSessionBytesPerToken = UInt64(maxSessionGiBPerToken * Double(1 << 30))
        configuration.sessionIdleSeconds = sessionExpiry.value
        configuration.minFreeBytes = UInt64(minFreeGiB * Double(1 << 30))
        configuration.metricsRefreshSeconds = metricsRefresh.value
    }
}
