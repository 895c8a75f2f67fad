import CrashClusters
import CrashSimilarity
import DumpAnalysis
import DumpForge
import DumpMemory
import Foundation
import Store

/// Measures clustering and similarity search on a labelled estate: every crash is forged,
/// analyzed and indexed into a real database as a worker would, then the clusters are scored
/// against the planted causes (BCubed) and every crash is used as a `similar` query (RR@1, MAP),
/// next to the baseline of grouping by exact FAILURE_BUCKET_ID. Shared by the tests (which
/// assert floors) and FleetBench (which prints the numbers).
public struct EstateQuality {
    public struct Result: Sendable {
        public var crashes: Int
        public var clusters: Int
        public var fleet: ClusterQuality.BCubed
        public var buckets: ClusterQuality.BCubed
        public var bucketCount: Int
        /// Mean reciprocal rank of the first same-cause answer, and mean average precision, of
        /// `similar` (top 10) and of the bucket baseline.
        public var similarRR: Double
        public var similarMAP: Double
        public var bucketRR: Double
        public var bucketMAP: Double
        /// Dump ids, causes and reports, in upload order.
        public var dumps: [(id: Int64, cause: String, report: CrashReport)]
        /// The clusters that hold more than one cause, each as "cluster N: cause ×count, ...".
        public var mixedClusters: [String]
    }

    public let estate: Estate
    public let seed: UInt64
    public var top = 10

    public init(estate: Estate, seed: UInt64) {
        self.estate = estate
        self.seed = seed
    }

    public func measure(database: String) throws -> Result {
        let db = try PostgresConnection(database)
        let index = CrashIndex()
        var dumps: [(id: Int64, cause: String, report: CrashReport)] = []
        for (number, crash) in estate.crashes(seed: seed).enumerated() {
            let forged = Forge.dump(crash.description)
            let (path, source) = try Fixtures.mapped(forged, name: "estate-\(number).dmp")
            let report = CrashAnalyzer(parallelism: 1).analyze(try KernelDump(source: source))
            Fixtures.discard(path)
            let id = try Self.store(report, vm: crash.vm, host: crash.host, number: number, seed: seed, on: db)
            try db.transaction { _ = try index.index(dumpId: id, report: report, on: db) }
            dumps.append((id, crash.cause, report))
        }
        let membership = Dictionary(uniqueKeysWithValues: try db.execute("SELECT dump_id, cluster_id FROM cluster_members").values.map {
            (Int64($0[0]!)!, Int64($0[1]!)!)
        })
        let labels = dumps.map(\.cause)
        let fleet = ClusterQuality.bcubed(clusters: dumps.map { membership[$0.id] ?? -$0.id }, labels: labels)
        let buckets = ClusterQuality.bcubed(clusters: dumps.map(\.report.failureBucketId), labels: labels)

        let mixed = Dictionary(grouping: dumps, by: { membership[$0.id] ?? -$0.id }).sorted { $0.key < $1.key }.compactMap { cluster, members -> String? in
            let causes = Dictionary(grouping: members.map(\.cause), by: { $0 }).mapValues(\.count)
            guard causes.count > 1 else { return nil }
            return "cluster \(cluster): " + causes.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
        }
        let causeOf = Dictionary(uniqueKeysWithValues: dumps.map { ($0.id, $0.cause) })
        let causeCount = Dictionary(grouping: labels, by: { $0 }).mapValues(\.count)
        var rr = 0.0, ap = 0.0, bucketRR = 0.0, bucketAP = 0.0, queries = 0
        for dump in dumps where causeCount[dump.cause]! > 1 {
            queries += 1
            let relevantTotal = causeCount[dump.cause]! - 1
            let hits = try index.similar(to: dump.report.signature, excluding: dump.id, top: top, on: db)
            let relevant = hits.map { causeOf[$0.dumpId] == dump.cause }
            rr += ClusterQuality.reciprocalRank(relevant)
            ap += ClusterQuality.averagePrecision(relevant, relevantTotal: min(relevantTotal, top))
            // Baseline: the other dumps with the same bucket, in upload order.
            let sameBucket = dumps.filter { $0.id != dump.id && $0.report.failureBucketId == dump.report.failureBucketId }.prefix(top)
            let baseline = sameBucket.map { $0.cause == dump.cause }
            bucketRR += ClusterQuality.reciprocalRank(baseline)
            bucketAP += ClusterQuality.averagePrecision(baseline, relevantTotal: min(relevantTotal, top))
        }
        let count = Double(max(queries, 1))
        return Result(crashes: dumps.count, clusters: Set(membership.values).count, fleet: fleet, buckets: buckets,
                      bucketCount: Set(dumps.map(\.report.failureBucketId)).count,
                      similarRR: rr / count, similarMAP: ap / count, bucketRR: bucketRR / count, bucketMAP: bucketAP / count,
                      dumps: dumps, mixedClusters: mixed)
    }

    /// Records an analyzed crash as the queue would have: dump, upload, a finished job, report
    /// and signature.
    static func store(_ report: CrashReport, vm: String, host: String, number: Int, seed: UInt64, on db: PostgresConnection) throws -> Int64 {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let hash = String(format: "%032llx%032llx", seed, UInt64(number))
        let id = Int64(try db.execute("INSERT INTO dumps (content_hash, size) VALUES ($1, 4096) RETURNING id", [hash]).values[0][0]!)!
        try db.execute("INSERT INTO uploads (dump_id, vm_name, host) VALUES ($1, $2, $3)", [String(id), vm, host])
        let job = try db.execute("""
            INSERT INTO jobs (dump_id, analyzer_version, state, attempt, finished_at) VALUES ($1, $2, 'done', 1, now()) RETURNING id
            """, [String(id), String(CrashAnalyzer.version)]).values[0][0]!
        try db.execute("INSERT INTO reports (dump_id, job_id, attempt, analyzer_version, report) VALUES ($1, $2, 1, $3, $4::jsonb)",
                       [String(id), job, String(CrashAnalyzer.version), String(decoding: try encoder.encode(report), as: UTF8.self)])
        try db.execute("""
            INSERT INTO signatures (dump_id, signature_id, bucket, bugcheck_class, features) VALUES ($1, $2, $3, $4, $5::jsonb)
            """, [String(id), report.signature.id, report.signature.bucket, report.signature.bugCheckClass,
                  String(decoding: try encoder.encode(report.signature), as: UTF8.self)])
        return id
    }
}
