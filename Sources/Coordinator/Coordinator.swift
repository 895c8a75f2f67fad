import BlobStore
import FleetAPI
import Hummingbird
import Logging
import ServiceLifecycle
import UnixSignals
import Store

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
        let pool = ConnectionPool(connectionString: configuration.database, capacity: configuration.databaseConnections)
        let work = BlockingWork(pool: pool)
        let applied = try await work.database { db in try Migrations.apply(db) }
        if !applied.isEmpty { logger.notice("database migrated", metadata: ["versions": "\(applied)"]) }
        let blobs = try BlobStore(root: configuration.blobRoot)
        let catalog = Catalog(analyzerVersion: configuration.analyzerVersion)
        let metrics = CoordinatorMetrics()

        let router = Router(context: CoordinatorContext.self)
        router.add(middleware: ErrorCounting(metrics: metrics, logger: logger))
        let queries = QueryRoutes(work: work, catalog: catalog, blobs: blobs, metrics: metrics)
        queries.addPublic(to: router)
        let api = router.group("v1").add(middleware: BearerAuthentication(tokens: configuration.tokens))
        UploadRoutes(work: work, catalog: catalog, blobs: blobs, maxUploadBytes: configuration.maxUploadBytes, metrics: metrics, logger: logger)
            .add(to: api)
        queries.add(to: api)
        ClusterRoutes(work: work).add(to: api)
        let ui = router.group("ui").add(middleware: UIAuthentication(tokens: configuration.tokens))
        UILogin(tokens: configuration.tokens).add(to: ui)
        UIRoutes(work: work, catalog: catalog).add(to: ui)
        router.get("/") { _, _ in Response(status: .seeOther, headers: [.location: "/ui/clusters"]) }

        let logger = self.logger
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "dumpfleet"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.notice("coordinator listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
                await onRunning(port)
            },
            logger: logger
        )
        let reaper = LeaseReaper(work: work, queue: catalog.queue, interval: configuration.reapIntervalSeconds, metrics: metrics, logger: logger)
        return ServiceGroup(configuration: .init(services: [.init(service: app), .init(service: reaper)],
                                                 gracefulShutdownSignals: signals, logger: logger))
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

/// Counts and logs requests answered with an error (the body says what went wrong).
struct ErrorCounting: RouterMiddleware {
    typealias Context = CoordinatorContext
    let metrics: CoordinatorMetrics
    let logger: Logger

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
        } catch {
            metrics.requestErrors.increment()
            logger.warning("request failed", metadata: ["method": "\(request.method)", "path": "\(request.uri.path)", "error": "\(error)"])
            throw APIFailure(.internalServerError, "\(error)")
        }
    }
}
