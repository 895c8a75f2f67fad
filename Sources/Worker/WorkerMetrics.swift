import Prometheus

/// What a worker counts, for `dumpfleet worker --metrics-port`.
public final class WorkerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    let jobsDone: Counter
    let jobsFailed: Counter
    let jobsAbandoned: Counter
    let jobsGivenBack: Counter
    let paused: Gauge
    let bytesFetched: Counter
    let analysisSeconds: ValueHistogram
    let queueLagSeconds: Gauge
    let heartbeatLatenessSeconds: ValueHistogram

    public init() {
        let jobs = MetricNameDescriptor(namespace: "dumpfleet_worker", metricName: "jobs", unitName: "total",
                                        helpText: "Jobs finished by this worker, by outcome")
        jobsDone = registry.makeCounter(descriptor: jobs, labels: [("outcome", "done")])
        jobsFailed = registry.makeCounter(descriptor: jobs, labels: [("outcome", "failed")])
        jobsAbandoned = registry.makeCounter(descriptor: jobs, labels: [("outcome", "abandoned")])
        jobsGivenBack = registry.makeCounter(descriptor: jobs, labels: [("outcome", "given back")])
        paused = registry.makeGauge(descriptor: .init(namespace: "dumpfleet_worker", metricName: "paused", unitName: "",
                                                      helpText: "1 while the worker claims nothing because its own setup fails (the log says why)"))
        bytesFetched = registry.makeCounter(descriptor: .init(namespace: "dumpfleet_worker", metricName: "fetched_bytes", unitName: "total",
                                                              helpText: "Dump bytes fetched and decompressed into scratch"))
        analysisSeconds = registry.makeValueHistogram(descriptor: .init(namespace: "dumpfleet_worker", metricName: "analysis", unitName: "seconds",
                                                                        helpText: "Time from opening a dump to its report"),
                                                      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60])
        queueLagSeconds = registry.makeGauge(descriptor: .init(namespace: "dumpfleet_worker", metricName: "queue_lag", unitName: "seconds",
                                                               helpText: "How long the last claimed job had waited"))
        heartbeatLatenessSeconds = registry.makeValueHistogram(descriptor: .init(namespace: "dumpfleet_worker", metricName: "heartbeat_lateness", unitName: "seconds",
                                                                                 helpText: "How late lease heartbeats ran against their schedule"),
                                                               buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5])
    }
}
