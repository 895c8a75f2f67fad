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
        let keys = bands.keys(signature)
        try db.execute("UPDATE signatures SET bands = $2::bigint[] WHERE dump_id = $1", [String(dumpId), Self.array(keys)])
        try db.execute("DELETE FROM dump_attributes WHERE dump_id = $1", [String(dumpId)])
        try db.execute("""
            INSERT INTO dump_attributes (dump_id, kind, value) SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS t(k, v)
            """, [String(dumpId), Self.array(attributes.map(\.kind)), Self.array(attributes.map(\.value))])
        try db.execute("SELECT pg_advisory_xact_lock(7460212)")
        let current = try db.execute("SELECT cluster_id, pinned FROM cluster_members WHERE dump_id = $1", [String(dumpId)]).values.first
        if current?[1] == "t", let pinned = current?[0].flatMap({ Int64($0) }) { return pinned }
        let scored = try candidates(keys: keys, excluding: dumpId, on: db).compactMap { candidate -> (cluster: Int64, score: Double)? in
            guard let cluster = candidate.cluster else { return nil }
            return (cluster, model.score(signature, candidate.signature).value)
        }
        var best: [Int64: Double] = [:]
        for (cluster, score) in scored { best[cluster] = max(best[cluster] ?? 0, score) }
        let currentCluster = current?[0].flatMap { Int64($0) }
        let choice: (Int64, Double)?
        let alone = try currentCluster.map { cluster in
            try db.execute("SELECT count(*) FROM cluster_members WHERE cluster_id = $1 AND dump_id <> $2", [String(cluster), String(dumpId)]).values[0][0] == "0"
        } ?? false
        if let currentCluster, let score = best[currentCluster] ?? (alone ? 1 : nil), score >= threshold {
            choice = (currentCluster, score)  // stays where it was (alone, or still alike): ids are stable under reprocessing
        } else if let top = best.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }), top.value >= threshold {
            choice = (top.key, top.value)
        } else {
            choice = nil
        }
        let cluster: Int64
        let score: Double
        if let choice {
            (cluster, score) = choice
        } else {
            cluster = Int64(try db.execute("INSERT INTO clusters (representative_dump_id, title) VALUES ($1, $2) RETURNING id",
                                           [String(dumpId), signature.bucket]).values[0][0]!)!
            score = 1
        }
        try db.execute("""
            INSERT INTO cluster_members (dump_id, cluster_id, score) VALUES ($1, $2, $3)
            ON CONFLICT (dump_id) DO UPDATE SET cluster_id = excluded.cluster_id, score = excluded.score, assigned_at = now()
            """, [String(dumpId), String(cluster), String(score)])
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
        let hits = try candidates(keys: bands.keys(signature), excluding: dumpId ?? 0, on: db).map { candidate -> SimilarCrash in
            let score = model.score(signature, candidate.signature)
            return SimilarCrash(dumpId: candidate.dumpId, score: (score.value * 1000).rounded() / 1000, reasons: score.reasons,
                                bucket: candidate.signature.bucket, clusterId: candidate.cluster)
        }
        return Array(hits.sorted { $0.score > $1.score || ($0.score == $1.score && $0.dumpId < $1.dumpId) }.prefix(top))
    }

    /// The stored signature of a dump.
    public func signature(dumpId: Int64, on db: PostgresConnection) throws -> CrashSignature? {
        guard let text = try db.execute("SELECT features::text FROM signatures WHERE dump_id = $1", [String(dumpId)]).values.first?[0] else { return nil }
        return try JSONDecoder().decode(CrashSignature.self, from: Data(text.utf8))
    }

    struct Candidate {
        var dumpId: Int64
        var signature: CrashSignature
        var cluster: Int64?
    }

    func candidates(keys: [Int64], excluding dumpId: Int64, on db: PostgresConnection) throws -> [Candidate] {
        let rows = try db.execute("""
            SELECT s.dump_id, s.features::text, m.cluster_id FROM signatures s LEFT JOIN cluster_members m ON m.dump_id = s.dump_id
            WHERE s.bands && $1::bigint[] AND s.dump_id <> $2 LIMIT $3
            """, [Self.array(keys), String(dumpId), String(candidateLimit)])
        let decoder = JSONDecoder()
        return rows.values.compactMap { row in
            guard let id = row[0].flatMap({ Int64($0) }), let text = row[1],
                  let signature = try? decoder.decode(CrashSignature.self, from: Data(text.utf8)) else { return nil }
            return Candidate(dumpId: id, signature: signature, cluster: row[2].flatMap { Int64($0) })
        }
    }

    /// A PostgreSQL array literal of numbers or of strings (quoted, escaped), for a bind parameter.
    static func array(_ values: [Int64]) -> String { "{" + values.map(String.init).joined(separator: ",") + "}" }

    static func array(_ values: [String]) -> String {
        "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "}"
    }
}
