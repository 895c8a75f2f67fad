import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle
import UnixSignals

/// A bare `GET /metrics` server, for processes that are not the coordinator (workers).
public enum MetricsEndpoint {
    /// Serves `registry` until the task is cancelled.
    public static func serve(_ registry: PrometheusCollectorRegistry, host: String, port: Int, logger: Logger) async throws {
        let router = Router()
        router.get("metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "dumpfleet-worker"), logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: app)], gracefulShutdownSignals: [], logger: logger))
        try await withTaskCancellationHandler {
            try await group.run()
        } onCancel: {
            Task { await group.triggerGracefulShutdown() }
        }
    }
}
