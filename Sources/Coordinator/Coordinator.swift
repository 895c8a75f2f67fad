import BlobStore
import FleetAPI
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle
import Store
import Synchronization
import UnixSignals

/// `dumpfleet coordinator`: the HTTP API in front of the queue and the blob store. It migrates
/// the database on start, serves uploads, status and blobs, reaps expired leases, and on
/// SIGTERM or SIGINT stops taking connections and lets requests in flight finish.
public struct Coordinator: Sendable {
    public let configuration: CoordinatorConfiguration
    public let logger: Logger

    public init(configuration: CoordinatorConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Serves until one of `signals` arrives (or, with none, until `handle.stop()`).
    /// `onRunning` gets the port bound (useful with port 0).
    public func run(signals: [UnixSignal] = [.sigterm, .sigint], onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let group = try await makeServiceGroup(signals: signals, onRunning: onRunning)
        try await group.run()
    }

    /// Starts in the background (tests, the demo); returns once the port is bound.
    public func start() async throws -> RunningCoordinator {
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let group = try await makeServiceGroup(signals: []) { port in continuation.yield(port) }
        let task = Task { try await group.run() }
        for await port in ports {
            return RunningCoordinator(port: port, group: group, task: task)
        }
        try await task.value
        throw ConfigurationError(description: "the coordinator stopped before it was listening")
    }

    func makeServiceGroup(signals: [UnixSignal], onRunning: @escaping @Sendable (Int) async -> Void) async throws -> ServiceGroup {
        guard !configuration.tokens.isEmpty else {
            throw ConfigurationError(description: "no access tokens: give --tokens-file or DUMPFLEET_TOKENS, so uploads are not open to anyone")
        }
        for token in configuration.tokens { try token.validate() }
        let pool = ConnectionPool(connectionString: configuration.database, capacity: configuration.databaseConnections)
        let work = BlockingWork(pool: pool, computeThreads: configuration.computeThreads > 0 ? configuration.computeThreads : System.coreCount)
        let applied = try await work.database { db in try Migrations.apply(db) }
        if !applied.isEmpty { logger.notice("database migrated", metadata: ["versions": "\(applied)"]) }
        let blobs = try BlobStore(root: configuration.blobRoot)
        let catalog = Catalog(analyzerVersion: configuration.analyzerVersion)
        let metrics = CoordinatorMetrics()
        let active = ActiveUploads()
        let openFiles = ConnectionLimits.raiseOpenFilesLimit()
        let connections = OpenConnections(
            total: configuration.maxConnections > 0 ? configuration.maxConnections
                : ConnectionLimits.total(openFiles: openFiles, uploadsInProgress: configuration.maxUploadsInProgress,
                                         databaseConnections: configuration.databaseConnections),
            perAddress: configuration.maxConnectionsPerAddress)
        let uploadLimits = UploadLimits(
            maxUploadBytes: configuration.maxUploadBytes,
            quota: Catalog.UploadQuota(sessions: configuration.maxSessionsPerToken, bytes: configuration.maxSessionBytesPerToken),
            uploadsInProgress: configuration.maxUploadsInProgress, minFreeBytes: configuration.minFreeBytes,
            idleTimeoutSeconds: configuration.idleTimeoutSeconds)

        let router = Router(context: CoordinatorContext.self)
        router.add(middleware: ErrorCounting(metrics: metrics, logger: logger))
        let queries = QueryRoutes(work: work, catalog: catalog, blobs: blobs, metrics: metrics, logger: logger)
        queries.addPublic(to: router)
        let api = router.group("v1").add(middleware: BearerAuthentication(tokens: configuration.tokens))
        UploadRoutes(work: work, catalog: catalog, blobs: blobs, limits: uploadLimits, metrics: metrics, active: active, logger: logger)
            .add(to: api)
        queries.add(to: api)
        ClusterRoutes(work: work).add(to: api)
        let ui = router.group("ui").add(middleware: UIAuthentication(tokens: configuration.tokens))
        UILogin(tokens: configuration.tokens).add(to: ui)
        UIRoutes(work: work, catalog: catalog).add(to: ui)
        router.get("/") { _, _ in Response(status: .seeOther, headers: [.location: "/ui/clusters"]) }

        let logger = self.logger
        let http = HTTP1Channel.Configuration(
            additionalChannelHandlers: [ConnectionTracker(connections: connections, refused: { metrics.connectionsRefused.increment() },
                                                          evicted: { metrics.connectionsEvicted.increment() })],
            idleTimeout: .milliseconds(Int64(configuration.idleTimeoutSeconds * 1000)))
        let app = Application(
            router: router,
            server: .http1(configuration: http),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "dumpfleet",
                                 availableConnectionsDelegate: MaximumAvailableConnections(connections.total, logger: logger)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.notice("coordinator listening", metadata: [
                    "address": "\(channel.localAddress.map { "\($0)" } ?? "?")", "connections": "\(connections.total)", "openFiles": "\(openFiles)",
                    "perAddress": "\(connections.perAddress)", "idleTimeout": "\(configuration.idleTimeoutSeconds)s",
                    "uploadsInProgress": "\(configuration.maxUploadsInProgress)"])
                await onRunning(port)
            },
            logger: logger
        )
        let chores = Housekeeping(work: work, catalog: catalog, blobs: blobs, active: active, metrics: metrics,
                                  sessionIdleSeconds: configuration.sessionIdleSeconds, logger: logger)
        let services: [any Service] = [
            ThreadPoolsService(work: work),
            app,
            Chore(name: "lease reaper", interval: configuration.reapIntervalSeconds, logger: logger, body: chores.reapLeases),
            Chore(name: "upload expiry", interval: min(60, max(0.5, configuration.sessionIdleSeconds / 4)),
                  logger: logger, body: chores.expireUploads),
            Chore(name: "queue gauges", interval: configuration.metricsRefreshSeconds, logger: logger, body: chores.readQueueGauges),
        ]
        return ServiceGroup(configuration: .init(services: services.map { .init(service: $0) }, gracefulShutdownSignals: signals, logger: logger))
    }
}

/// A coordinator started with `Coordinator.start()`.
public struct RunningCoordinator: Sendable {
    public let port: Int
    let group: ServiceGroup
    let task: Task<Void, any Error>

    public var url: String { "http://127.0.0.1:\(port)" }

    /// Graceful shutdown: stop accepting, finish requests in flight, return.
    public func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

/// Counts and logs requests answered with an error. What the handlers did not turn into an
/// answer of their own is not shown to the client, who could read a server path or worse in it:
/// a database that cannot be reached is answered 503 "database unavailable", anything else 500
/// with a reference number, and the log line with that number has the details (never a
/// connection string or a password: `PostgresConnection` keeps neither).
struct ErrorCounting: RouterMiddleware {
    typealias Context = CoordinatorContext
    let metrics: CoordinatorMetrics
    let logger: Logger
    let references = ReferenceNumbers()

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let failure as APIFailure {
            metrics.requestErrors.increment()
            logger.info("request refused", metadata: ["method": "\(request.method)", "path": "\(request.uri.path)",
                                                      "status": "\(failure.status.code)", "error": "\(failure.body.error)"])
            throw failure
        } catch let failure as any HTTPResponseError {
            metrics.requestErrors.increment()
            throw failure
        } catch let failure as PostgresConnection.Failure where failure.isConnectionFailure {
            metrics.requestErrors.increment()
            logger.warning("database unavailable", metadata: ["method": "\(request.method)", "path": "\(request.uri.path)", "error": "\(failure)"])
            throw APIFailure(.serviceUnavailable, "database unavailable", retryAfter: 5)
        } catch {
            metrics.requestErrors.increment()
            let reference = references.next()
            logger.error("request failed", metadata: ["method": "\(request.method)", "path": "\(request.uri.path)", "reference": "\(reference)", "error": "\(error)"])
            throw APIFailure(.internalServerError, "internal error (reference \(reference) in the coordinator's log)")
        }
    }
}

/// Numbers that tie an error answer to its log line.
final class ReferenceNumbers: Sendable {
    private let counter = Atomic<Int>(0)
    func next() -> Int { counter.add(1, ordering: .relaxed).newValue }
}
