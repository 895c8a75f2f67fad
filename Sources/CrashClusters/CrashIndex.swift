import CrashSimilarity
import DumpAnalysis
import FleetAPI
import Foundation
import Store

/// Similarity search and clustering inside PostgreSQL. Candidates come from the GIN index on
/// the signatures' MinHash band keys; `SimilarityModel` scores only those. A newly analyzed dump
/// joins the cluster of its best-scoring candidate when that score reaches `threshold`, and
/// starts a cluster otherwise, so cluster ids never change as data grows.
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

    // MARK: indexing

    /// Stores what similarity needs of an analyzed dump (band keys, the modules, drivers and
    /// processes it had) and places it in a cluster; returns the cluster id. Run it in the
    /// transaction that stores the report: clustering is serialized by an advisory lock, so two
    /// workers finishing alike crashes at once do not start two clusters.
    @discardableResult
    public func index(dumpId: Int64, report: CrashReport, on db: PostgresConnection) throws -> Int64 {
        try index(dumpId: dumpId, signature: report.signature, attributes: Self.attributes(of: report), on: db)
    }

    /// `index(dumpId:report:)` from the parts it uses; `attributes` are (kind, value) pairs.
    @discardableResult
    public func index(dumpId: Int64, signature: CrashSignature, attributes: [(kind: String, value: String)], on db: PostgresConnection) throws -> Int64 {
        let fingerprint = Fingerprint(signature)
        let keys = bands.keys(fingerprint)
        let id = String(dumpId), keyArray = PostgresConnection.arrayLiteral(keys)
        try db.execute("UPDATE signatures SET bands = $2::bigint[], fingerprint = $3 WHERE dump_id = $1", [id, keyArray, fingerprint.text])
        try db.execute("DELETE FROM dump_attributes WHERE dump_id = $1", [id])
        if !attributes.isEmpty {
            try db.execute("""
                INSERT INTO dump_attributes (dump_id, kind, value) SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS t(k, v)
                """, [id, PostgresConnection.arrayLiteral(attributes.map(\.kind)), PostgresConnection.arrayLiteral(attributes.map(\.value))])
        }
        try db.execute("SELECT pg_advisory_xact_lock(7460212)")
        // A dump that is an exemplar already carries its new fingerprint into it.
        try db.execute("UPDATE cluster_exemplars SET fingerprint = $2, bands = $3::bigint[] WHERE dump_id = $1", [id, fingerprint.text, keyArray])
        let current = try db.execute("""
            SELECT m.cluster_id, m.pinned,
                   NOT EXISTS (SELECT 1 FROM cluster_members o WHERE o.cluster_id = m.cluster_id AND o.dump_id <> m.dump_id)
                   OR EXISTS (SELECT 1 FROM cluster_exemplars e WHERE e.dump_id = m.dump_id AND e.cluster_id = m.cluster_id)
            FROM cluster_members m WHERE m.dump_id = $1
            """, [id]).values.first
        let currentCluster = current?[0].flatMap { Int64($0) }
        if current?[1] == "t", let currentCluster { return currentCluster }
        var best: [Int64: Double] = [:]
        for exemplar in try db.execute("""
            SELECT cluster_id, fingerprint FROM cluster_exemplars WHERE bands && $1::bigint[] AND dump_id <> $2 LIMIT $3
            """, [keyArray, id, String(candidateLimit)]).values {
            guard let cluster = exemplar[0].flatMap({ Int64($0) }), let other = exemplar[1].flatMap(Fingerprint.init(text:)) else { continue }
            best[cluster] = max(best[cluster] ?? 0, model.score(fingerprint, other).value)
        }
        // Alone in its cluster, or one of its exemplars: the dump is what the cluster is compared by.
        let anchors = current?[2] == "t"
        let cluster: Int64
        let score: Double
        var founded = false
        if let currentCluster, let kept = best[currentCluster] ?? (anchors ? 1 : nil), kept >= threshold {
            (cluster, score) = (currentCluster, kept)  // stays where it was: ids are stable under reprocessing
        } else if let top = best.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }), top.value >= threshold {
            (cluster, score) = (top.key, top.value)
        } else {
            cluster = Int64(try db.execute("INSERT INTO clusters (representative_dump_id, title) VALUES ($1, $2) RETURNING id",
                                           [id, signature.bucket]).values[0][0]!)!
            score = 1
            founded = true
        }
        try db.execute("""
            INSERT INTO cluster_members (dump_id, cluster_id, score) VALUES ($1, $2, $3)
            ON CONFLICT (dump_id) DO UPDATE SET cluster_id = excluded.cluster_id, score = excluded.score, assigned_at = now()
            """, [id, String(cluster), String(score)])
        // The founder, and members unlike the exemplars so far, become exemplars (at most 8).
        try db.execute("""
            INSERT INTO cluster_exemplars (dump_id, cluster_id, fingerprint, bands)
            SELECT $1, $2, $3, $4::bigint[] WHERE $5::real < $6::real AND (SELECT count(*) FROM cluster_exemplars WHERE cluster_id = $2) < $7
            ON CONFLICT (dump_id) DO UPDATE SET cluster_id = excluded.cluster_id
            """, [id, String(cluster), fingerprint.text, keyArray, String(founded ? 0 : score), String(exemplarBelow), String(exemplarsPerCluster)])
        try db.execute("UPDATE cluster_exemplars SET cluster_id = $2 WHERE dump_id = $1", [id, String(cluster)])
        return cluster
    }

    /// What a dump had loaded and running: modules, driver versions (`name@timestamp`) and
    /// processes, lower-cased and without repeats.
    public static func attributes(of report: CrashReport) -> [(kind: String, value: String)] {
        var found: [(kind: String, value: String)] = []
        var seen: Set<String> = []
        func add(_ kind: String, _ value: String) {
            guard !value.isEmpty, seen.insert(kind + "\u{0}" + value).inserted else { return }
            found.append((kind, value))
        }
        for module in report.modules {
            add("module", module.name.lowercased())
            add("driver", "\(module.name.lowercased())@\(String(module.timeDateStamp, radix: 16))")
        }
        for process in report.processes { if let name = process.name { add("process", name.lowercased()) } }
        return found
    }

    // MARK: searching

    /// The `top` stored crashes most like `signature`, best first, with why they matched.
    public func similar(to signature: CrashSignature, excluding dumpId: Int64? = nil, top: Int, on db: PostgresConnection) throws -> [SimilarCrash] {
        let fingerprint = Fingerprint(signature)
        let rows = try db.execute("""
            SELECT s.dump_id, s.fingerprint, m.cluster_id FROM signatures s LEFT JOIN cluster_members m ON m.dump_id = s.dump_id
            WHERE s.bands && $1::bigint[] AND s.dump_id <> $2 LIMIT $3
            """, [PostgresConnection.arrayLiteral(bands.keys(fingerprint)), String(dumpId ?? 0), String(candidateLimit)])
        let hits = rows.values.compactMap { row -> SimilarCrash? in
            guard let id = row[0].flatMap({ Int64($0) }), let other = row[1].flatMap(Fingerprint.init(text:)) else { return nil }
            let score = model.score(fingerprint, other)
            return SimilarCrash(dumpId: id, score: (score.value * 1000).rounded() / 1000, reasons: score.reasons, bucket: other.bucket,
                                clusterId: row[2].flatMap { Int64($0) })
        }
        return Array(hits.sorted { $0.score > $1.score || ($0.score == $1.score && $0.dumpId < $1.dumpId) }.prefix(top))
    }

    /// The stored signature of a dump.
    public func signature(dumpId: Int64, on db: PostgresConnection) throws -> CrashSignature? {
        guard let text = try db.execute("SELECT features::text FROM signatures WHERE dump_id = $1", [String(dumpId)]).values.first?[0] else { return nil }
        return try JSONDecoder().decode(CrashSignature.self, from: Data(text.utf8))
    }
}
