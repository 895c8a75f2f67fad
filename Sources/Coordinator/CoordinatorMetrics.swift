import Foundation
import Prometheus

/// What the coordinator counts, exposed at /metrics in Prometheus' text format. Scraping costs
/// no database query: the queue gauges are a snapshot `QueueGauges` refreshes every few seconds,
/// however many scrapers there are.
final class CoordinatorMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let uploadsKnown: Counter
    let uploadsStored: Counter
    let uploadsRejected: Counter
    let uploadsExpired: Counter
    let uploadBytes: Counter
    let uploadBytesReverified: Counter
    let plainUploadBytes: Counter
    let diskFullRefusals: Counter
    let connectionsRefused: Counter
    let connectionsEvicted: Counter
    let requestErrors: Counter
    let leasesReaped: Counter
    private let jobGauges: [String: Gauge]
    private let queueLag: Gauge
    private let dumps: Gauge
    private let snapshotTime: Gauge

    init() {
        let uploads = MetricNameDescriptor(namespace: "dumpfleet", metricName: "uploads", unitName: "total",
                                           helpText: "Finished uploads by outcome: known dump, stored, rejected, expired")
        uploadsKnown = registry.makeCounter(descriptor: uploads, labels: [("outcome", "known")])
        uploadsStored = registry.makeCounter(descriptor: uploads, labels: [("outcome", "stored")])
        uploadsRejected = registry.makeCounter(descriptor: uploads, labels: [("outcome", "rejected")])
        uploadsExpired = registry.makeCounter(descriptor: uploads, labels: [("outcome", "expired")])
        uploadBytes = registry.makeCounter(descriptor: .init(namespace: "dumpfleet", metricName: "upload_compressed_bytes", unitName: "total",
                                                             helpText: "LZ4-compressed upload bytes received"))
        uploadBytesReverified = registry.makeCounter(descriptor: .init(
            namespace: "dumpfleet", metricName: "upload_reverified_bytes", unitName: "total",
            helpText: "Upload bytes read and checked again to resume verification (after a restart: at most one checkpoint interval per upload)"))
        plainUploadBytes = registry.makeCounter(descriptor: .init(namespace: "dumpfleet", metricName: "upload_plain_bytes", unitName: "total",
                                                                  helpText: "Uncompressed dump bytes received by plain uploads (PUT /v1/plain)"))
        diskFullRefusals = registry.makeCounter(descriptor: .init(namespace: "dumpfleet", metricName: "disk_full_refusals", unitName: "total",
                                                                  helpText: "Upload requests refused because the blob store's disk was down to its reserve"))
        connectionsRefused = registry.makeCounter(descriptor: .init(namespace: "dumpfleet", metricName: "connections_refused", unitName: "total",
                                                                    helpText: "Connections closed on arrival: their address had as many open as it may"))
        connectionsEvicted = registry.makeCounter(descriptor: .init(namespace: "dumpfleet", metricName: "connections_closed_idle", unitName: "total",
                                                                    helpText: "Idle connections closed to make room near the connection cap"))
        requestErrors = registry.makeCounter(descriptor: .init(namespace: "dumpfleet", metricName: "http_errors", unitName: "total",
                                                               helpText: "API requests answered with an error"))
        leasesReaped = registry.makeCounter(descriptor: .init(namespace: "dumpfleet", metricName: "leases_reaped", unitName: "total",
                                                              helpText: "Expired job leases returned to the queue"))
        let jobs = MetricNameDescriptor(namespace: "dumpfleet", metricName: "jobs", unitName: "", helpText: "Jobs by state")
        var gauges: [String: Gauge] = [:]
        for state in ["queued", "running", "done", "failed"] { gauges[state] = registry.makeGauge(descriptor: jobs, labels: [("state", state)]) }
        jobGauges = gauges
        queueLag = registry.makeGauge(descriptor: .init(namespace: "dumpfleet", metricName: "queue_lag", unitName: "seconds",
                                                        helpText: "How long the oldest runnable job has waited"))
        dumps = registry.makeGauge(descriptor: .init(namespace: "dumpfleet", metricName: "dumps", unitName: "", helpText: "Distinct dumps stored"))
        snapshotTime = registry.makeGauge(descriptor: .init(namespace: "dumpfleet", metricName: "queue_snapshot_time", unitName: "seconds",
                                                            helpText: "When the queue gauges were read from the database (Unix time)"))
    }

    func setQueue(jobs: [String: Int64], lagSeconds: Double, dumps: Int64) {
        for (state, count) in jobs { jobGauges[state]?.set(to: Double(count)) }
        queueLag.set(to: lagSeconds)
        self.dumps.set(to: Double(dumps))
        snapshotTime.set(to: Date().timeIntervalSince1970)
    }
}
