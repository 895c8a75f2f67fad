import CrashSimilarity
import DumpAnalysis
import FleetAPI
import Foundation
import Store

/// Similarity search and clustering inside PostgreSQL. Candidates come from the GIN index on
/// the signatures' MinHash band keys; `SimilarityModel` scores only those. A newly analyzed dump
/// joins the cluster of its best-scoring candidate when that score reaches `threshold`, and
/// starts a cluster otherwise, so cluster ids never change as data grows (indexing is in
/// CrashIndex+Indexing.swift, the placing rules in ClusterPlacement.swift).
public struct CrashIndex: Sendable {
    public var model = SimilarityModel()
    public var bands = MinHashBands()
    /// The score at which a crash joins a cluster.
    public var threshold = 0.7
    /// Candidates scored per query at most.
    public var candidateLimit = 400
    /// A member that joins with a lower score becomes one of its cluster's exemplars...
    public var exemplarBelow = 0.9
    /// ...while the cluster has fewer than this many.
    public var exemplarsPerCluster = 8

    public init() {}

    /// The transaction-level advisory lock that serializes every change to cluster membership:
    /// placing crashes (`index`), and the operators' merge and split.
    static let clusteringLock: Int64 = 7460212

    /// The `top` stored crashes most like `signature`, best first, with why they matched.
    public func similar(to signature: CrashSignature, excluding dumpId: Int64? = nil, top: Int, on db: PostgresConnection) throws -> [SimilarCrash] {
        let fingerprint = Fingerprint(signature)
        let rows = try db.execute("""
            SELECT c.dump_id, c.fingerprint, m.cluster_id FROM signature_candidates($1::bigint[], $2, $3) c
            LEFT JOIN cluster_members m ON m.dump_id = c.dump_id
            """, [PostgresConnection.arrayLiteral(bands.keys(fingerprint)), String(dumpId ?? 0), String(candidateLimit)])
        let hits = rows.values.compactMap { row -> SimilarCrash? in
            guard let id = row[0].flatMap({ Int64($0) }), let other = row[1].flatMap(Fingerprint.init(text:)) else { return nil }
            let score = model.score(fingerprint, other)
            return SimilarCrash(dumpId: id, score: (score.value * 1000).rounded() / 1000, reasons: score.reasons, bucket: other.bucket,
                                clusterId: row[2].flatMap { Int64($0) })
        }
        return Array(hits.sorted { $0.score > $1.score || ($0.score == $1.score && $0.dumpId < $1.dumpId) }.prefix(top))
    }

    /// Clusters other than `cluster` that hold crashes like `dumpId`'s, best first: its
    /// `similar` crashes grouped by their cluster, each cluster with its best score and that
    /// crash's bucket.
    public func similarClusters(toDump dumpId: Int64, besides cluster: Int64, top: Int,
                                on db: PostgresConnection) throws -> [(cluster: Int64, score: Double, bucket: String)] {
        guard let signature = try signature(dumpId: dumpId, on: db) else { return [] }
        var best: [Int64: (score: Double, bucket: String)] = [:]
        for hit in try similar(to: signature, excluding: dumpId, top: 50, on: db) {
            guard let other = hit.clusterId, other != cluster, best[other] == nil else { continue }
            best[other] = (hit.score, hit.bucket)
        }
        return Array(best.map { (cluster: $0.key, score: $0.value.score, bucket: $0.value.bucket) }
            .sorted { ($0.score, $1.cluster) > ($1.score, $0.cluster) }.prefix(top))
    }

    /// The stored signature of a dump.
    public func signature(dumpId: Int64, on db: PostgresConnection) throws -> CrashSignature? {
        guard let text = try db.execute("SELECT features::text FROM signatures WHERE dump_id = $1", [String(dumpId)]).values.first?[0] else { return nil }
        return try JSONDecoder().decode(CrashSignature.self, from: Data(text.utf8))
    }
}
