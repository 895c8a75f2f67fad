import Prometheus

/// What the coordinator counts, exposed at /metrics in Prometheus' text format. The queue
/// gauges are read from the database when scraped.
final class CoordinatorMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let uploadsKnown: Counter
    let uploadsStored: Counter
    let uploadsRejected: Counter
    let uploadBytes: Counter
    let requestErrors: Counter
    let leasesReaped: Counter

    init() {
        let uploads = MetricNameDescriptor(namespace: "dumpfleet", metricName: "uploads", unitName: "total",
                                           helpText: "Finished uploads by outcome: known dump, stored, rejected")
        uploadsKnown = registry.makeCounter(descriptor: uploads, labels: [("outcome", "known")])
        uploadsStored = registry.makeCounter(descriptor: uploads, labels: [("outcome", "stored")])
        uploadsRejected = registry.makeCounter(descriptor: uploads, labels: [("outcome", "rejected")])
        uploadBytes = registry.makeCounter(descriptor: .init(namespace: "dumpfleet", metricName: "upload_compressed_bytes", unitName: "total",
                                                             helpText: "LZ4-compressed upload bytes received"))
        requestErrors = registry.makeCounter(descriptor: .init(namespace: "dumpfleet", metricName: "http_errors", unitName: "total",
                                                               helpText: "API requests answered with an error"))
        leasesReaped = registry.makeCounter(descriptor: .init(namespace: "dumpfleet", metricName: "leases_reaped", unitName: "total",
                                                              helpText: "Expired job leases returned to the queue"))
    }

    func setQueue(jobs: [String: Int64], lagSeconds: Double, dumps: Int64) {
        let jobGauge = MetricNameDescriptor(namespace: "dumpfleet", metricName: "jobs", unitName: "", helpText: "Jobs by state")
        for (state, count) in jobs {
            registry.makeGauge(descriptor: jobGauge, labels: [("state", state)]).set(to: Double(count))
        }
        registry.makeGauge(descriptor: .init(namespace: "dumpfleet", metricName: "queue_lag", unitName: "seconds",
                                             helpText: "How long the oldest runnable job has waited")).set(to: lagSeconds)
        registry.makeGauge(descriptor: .init(namespace: "dumpfleet", metricName: "dumps", unitName: "", helpText: "Distinct dumps stored"))
            .set(to: Double(dumps))
    }
}
