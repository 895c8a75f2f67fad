import ArgumentParser
import Coordinator
import DumpAnalysis
import Foundation
import Logging
import Worker

/// `dumpfleet worker`
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Claim queued dumps, analyze them and store reports and signatures.",
        discussion: """
        Connects to PostgreSQL for the queue; reads dumps from the blob folder when it can see \
        it (--blobs, e.g. a shared mount), otherwise downloads them from the coordinator \
        (--server, --token). Each dump is decompressed into --scratch as a sparse file and \
        deleted after analysis. SIGTERM or SIGINT drains: no new claims, jobs in hand finish.

        Example:
          dumpfleet worker --database postgresql://dumpfleet@db/dumpfleet \\
              --server http://coordinator:8080 --token "$TOKEN" --concurrency 2
        """
    )

    @OptionGroup var database: DatabaseOptions
    @OptionGroup var server: ServerOptions

    @Option(help: "Read blobs from this folder instead of downloading them (default: $DUMPFLEET_BLOBS when set).")
    var blobs: String = ProcessInfo.processInfo.environment["DUMPFLEET_BLOBS"] ?? ""

    @Option(help: "Scratch folder for decompressed dumps (default: $DUMPFLEET_SCRATCH, else a folder in /tmp).")
    var scratch: String = ProcessInfo.processInfo.environment["DUMPFLEET_SCRATCH"] ?? NSTemporaryDirectory() + "dumpfleet-scratch"

    @Option(help: "Dumps analyzed at once.")
    var concurrency = 1

    @Option(name: .customLong("analysis-threads"), help: "Threads per analysis for walking CPU stacks.")
    var analysisThreads = 2

    @OptionGroup var symbols: SymbolOptions

    @Option(help: "Lease length in seconds; heartbeats renew it every third.")
    var lease = 30.0

    @Option(help: "Seconds between queue polls when no notification arrives.")
    var poll = 5.0

    @Flag(name: .customLong("no-listen"), help: "Do not LISTEN for job notifications; poll only.")
    var noListen = false

    @Option(name: .customLong("metrics-port"), help: "Serve Prometheus metrics on this port (off by default).")
    var metricsPort: Int?

    @Option(name: .customLong("metrics-host"), help: "Address the metrics port listens on (0.0.0.0 for a scraper on another host).")
    var metricsHost = "127.0.0.1"

    @Option(name: .customLong("setup-retry"), help: "While the worker's own setup fails (token refused, scratch full), check it again this often.")
    var setupRetry = Seconds(30)

    func validate() throws {
        guard (1...256).contains(concurrency) else { throw ValidationError("--concurrency must be 1 to 256") }
        guard (1...64).contains(analysisThreads) else { throw ValidationError("--analysis-threads must be 1 to 64") }
        guard lease >= 1 && lease <= 3600 else { throw ValidationError("--lease must be 1 to 3600 seconds") }
        guard poll > 0 && poll <= 600 else { throw ValidationError("--poll must be above 0 and at most 600 seconds") }
        guard setupRetry.value >= 0.1 && setupRetry.value <= 3600 else { throw ValidationError("--setup-retry must be 0.1 s to 1 h") }
        guard !blobs.isEmpty || !server.token.isEmpty else {
            throw ValidationError("give --blobs (a folder the coordinator writes) or --token for downloading from --server")
        }
    }

    func run() async throws {
        FleetLogging.bootstrap()
        let source: WorkerConfiguration.BlobSource = blobs.isEmpty ? .coordinator(url: server.server, token: server.token) : .directory(blobs)
        var configuration = WorkerConfiguration(database: database.connection, blobs: source, scratch: scratch, analyzerVersion: CrashAnalyzer.version)
        configuration.concurrency = concurrency
        configuration.analysisThreads = analysisThreads
        configuration.symbols = try symbols.source()
        configuration.leaseSeconds = lease
        configuration.pollSeconds = poll
        configuration.listen = !noListen
        configuration.setupRetrySeconds = setupRetry.value
        let logger = Logger(label: "dumpfleet.worker")
        let worker = Worker(configuration: configuration, logger: logger)
        let signals = SignalWatch(signals: [SIGTERM, SIGINT]) {
            logger.notice("signal received: draining (jobs in hand finish, no new claims)")
            worker.drain()
        }
        defer { signals.cancel() }
        let metrics = metricsPort.map { port in
            Task { [metricsHost] in try await MetricsEndpoint.serve(worker.metrics.registry, host: metricsHost, port: port, logger: logger) }
        }
        defer { metrics?.cancel() }
        try await ThreadRunner.run { try worker.run() }
    }
}

/// Turns signals into a callback on a Dispatch queue (the default actions are switched off).
final class SignalWatch: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]

    init(signals: [Int32], handler: @escaping @Sendable () -> Void) {
        sources = signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            return source
        }
    }

    func cancel() { sources.forEach { $0.cancel() } }
}

/// Runs blocking work on a thread of its own and awaits it, keeping it off the async pool.
enum ThreadRunner {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }
}
