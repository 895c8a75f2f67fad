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

    /// An analyzed dump to place in a cluster: its signature, and the (kind, value) pairs of
    /// what it had loaded and running (see `attributes(of:)`).
    public struct Entry: Sendable {
        public var dumpId: Int64
        public var signature: CrashSignature
        public var attributes: [(kind: String, value: String)]

        public init(dumpId: Int64, signature: CrashSignature, attributes: [(kind: String, value: String)]) {
            self.dumpId = dumpId
            self.signature = signature
            self.attributes = attributes
        }

        public init(dumpId: Int64, report: CrashReport) {
            self.init(dumpId: dumpId, signature: report.signature, attributes: CrashIndex.attributes(of: report))
        }
    }

    /// Stores what similarity needs of an analyzed dump (band keys, fingerprint, the modules,
    /// drivers and processes it had) and places it in a cluster; returns the cluster id. Run it
    /// in the transaction that stores the report: clustering is serialized by an advisory lock,
    /// so two workers finishing alike crashes at once do not start two clusters.
    @discardableResult
    public func index(dumpId: Int64, report: CrashReport, on db: PostgresConnection) throws -> Int64 {
        try index([Entry(dumpId: dumpId, report: report)], on: db)[0]
    }

    /// `index(dumpId:report:)` for many dumps at once, in three statements whatever their number
    /// (a round trip costs more than what PostgreSQL does for one crash): store the band keys,
    /// fingerprints and attributes, then take the clustering lock; read where the dumps are now
    /// and the exemplars they share a band with; write the clusters founded, the memberships
    /// and the exemplars. The dumps are placed in order, each seeing what the ones before it
    /// did (`ClusterPlacement`). Returns each entry's cluster id, in order.
    @discardableResult
    public func index(_ entries: [Entry], on db: PostgresConnection) throws -> [Int64] {
        guard !entries.isEmpty else { return [] }
        guard Set(entries.map(\.dumpId)).count == entries.count else { throw ClusterQueries.Failure(description: "a dump appears twice in one batch") }
        let prints = entries.map { Fingerprint($0.signature) }
        let keys = prints.map { bands.keys($0) }
        let ids = PostgresConnection.arrayLiteral(entries.map(\.dumpId))
        let keyArrays = PostgresConnection.arrayLiteral(keys.map { PostgresConnection.arrayLiteral($0) })
        let printTexts = PostgresConnection.arrayLiteral(prints.map(\.text))
        let attributes = entries.flatMap { entry in entry.attributes.map { (entry.dumpId, $0.kind, $0.value) } }

        // The lock comes last: the writes before it touch only these dumps' rows, which merge
        // and split (the lock's other holders) never lock, so waiting for it cannot deadlock.
        // The next statement's snapshot is taken after the lock, so it sees every earlier
        // placement.
        try db.execute("""
            WITH entries AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(dump_id, keys, fingerprint)),
                 signature AS (UPDATE signatures s SET bands = e.keys::bigint[], fingerprint = e.fingerprint FROM entries e WHERE s.dump_id = e.dump_id),
                 fresh AS (SELECT * FROM unnest($4::bigint[], $5::text[], $6::text[]) AS t(dump_id, kind, value)),
                 stale AS (DELETE FROM dump_attributes a WHERE a.dump_id = ANY($1::bigint[])
                           AND (a.dump_id, a.kind, a.value) NOT IN (SELECT dump_id, kind, value FROM fresh)),
                 added AS (INSERT INTO dump_attributes (dump_id, kind, value) SELECT dump_id, kind, value FROM fresh ON CONFLICT DO NOTHING)
            SELECT pg_advisory_xact_lock(7460212)
            """, [ids, keyArrays, printTexts, PostgresConnection.arrayLiteral(attributes.map(\.0)),
                  PostgresConnection.arrayLiteral(attributes.map(\.1)), PostgresConnection.arrayLiteral(attributes.map(\.2))])

        // Rows of three kinds: where an entry is now, a candidate exemplar of an entry, and how
        // many exemplars a cluster named in the other rows has.
        let snapshot = try db.execute("""
            WITH entries AS (SELECT * FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS t(dump_id, keys, n)),
                 membership AS (SELECT e.n, m.cluster_id, m.pinned,
                                NOT EXISTS (SELECT 1 FROM cluster_members o WHERE o.cluster_id = m.cluster_id AND o.dump_id <> m.dump_id)
                                OR x.cluster_id IS NOT DISTINCT FROM m.cluster_id AS anchors,
                                x.dump_id IS NOT NULL AS exemplar
                         FROM entries e JOIN cluster_members m ON m.dump_id = e.dump_id LEFT JOIN cluster_exemplars x ON x.dump_id = e.dump_id),
                 candidates AS (SELECT e.n, c.dump_id, c.cluster_id, c.fingerprint
                                FROM entries e CROSS JOIN LATERAL exemplar_candidates(e.keys::bigint[], e.dump_id, $3) c)
            SELECT 'member', n, cluster_id, NULL::bigint, NULL::text, pinned, anchors, exemplar FROM membership
            UNION ALL
            SELECT 'candidate', n, cluster_id, dump_id, fingerprint, NULL, NULL, NULL FROM candidates
            UNION ALL
            SELECT 'count', NULL, cluster_id, count(*), NULL, NULL, NULL, NULL FROM cluster_exemplars
            WHERE cluster_id IN (SELECT cluster_id FROM membership UNION SELECT cluster_id FROM candidates) GROUP BY cluster_id
            """, [ids, keyArrays, String(candidateLimit)])
        var crashes = entries.indices.map {
            ClusterPlacement.Crash(dumpId: entries[$0].dumpId, fingerprint: prints[$0], keys: keys[$0], membership: nil, candidates: [])
        }
        var counts: [Int64: Int] = [:]
        for row in snapshot.values {
            guard let cluster = row[2].flatMap({ Int64($0) }) else { continue }
            let entry = row[1].flatMap { Int($0) }.map { $0 - 1 }.flatMap { crashes.indices.contains($0) ? $0 : nil }
            switch (row[0], entry) {
            case ("member", let entry?):
                crashes[entry].membership = .init(cluster: cluster, pinned: row[5] == "t", anchors: row[6] == "t", exemplar: row[7] == "t")
            case ("candidate", let entry?):
                guard let dump = row[3].flatMap({ Int64($0) }), let other = row[4].flatMap(Fingerprint.init(text:)) else { continue }
                crashes[entry].candidates.append(.init(dumpId: dump, cluster: cluster, fingerprint: other))
            case ("count", _):
                counts[cluster] = row[3].flatMap { Int($0) } ?? 0
            default:
                continue
            }
        }
        var placement = ClusterPlacement(index: self, exemplarCounts: counts)
        let decisions = placement.place(crashes)

        // A cluster founded in this batch travels as minus its founder's dump id until the
        // INSERT gives it an id; a pinned member keeps its place and score.
        func clusterParameter(_ cluster: ClusterPlacement.Cluster) -> Int64 {
            switch cluster {
            case .stored(let id): id
            case .founded(let dump): -dump
            }
        }
        let written = try db.execute("""
            WITH placed AS (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::real[], $4::boolean[], $5::text[], $6::text[], $7::text[])
                            AS t(dump_id, cluster_id, score, exemplar, fingerprint, keys, title)),
                 founded AS (INSERT INTO clusters (representative_dump_id, title) SELECT dump_id, title FROM placed WHERE cluster_id = -dump_id
                             RETURNING id, representative_dump_id),
                 resolved AS (SELECT p.dump_id, CASE WHEN p.cluster_id > 0 THEN p.cluster_id ELSE f.id END AS cluster_id, p.score, p.exemplar,
                                     p.fingerprint, p.keys
                              FROM placed p LEFT JOIN founded f ON f.representative_dump_id = -p.cluster_id),
                 members AS (INSERT INTO cluster_members (dump_id, cluster_id, score) SELECT dump_id, cluster_id, score FROM resolved
                             ON CONFLICT (dump_id) DO UPDATE SET cluster_id = excluded.cluster_id, score = excluded.score, assigned_at = now()
                             WHERE NOT cluster_members.pinned),
                 exemplars AS (INSERT INTO cluster_exemplars (dump_id, cluster_id, fingerprint, bands)
                               SELECT dump_id, cluster_id, fingerprint, keys::bigint[] FROM resolved WHERE exemplar
                               ON CONFLICT (dump_id) DO UPDATE SET cluster_id = excluded.cluster_id, fingerprint = excluded.fingerprint, bands = excluded.bands)
            SELECT dump_id, cluster_id FROM resolved
            """, [ids, PostgresConnection.arrayLiteral(decisions.map { clusterParameter($0.cluster) }),
                  "{" + decisions.map { String(Float($0.score)) }.joined(separator: ",") + "}",
                  "{" + decisions.map { $0.exemplar ? "t" : "f" }.joined(separator: ",") + "}",
                  printTexts, keyArrays, PostgresConnection.arrayLiteral(entries.map(\.signature.bucket))])
        var clusterOf: [Int64: Int64] = [:]
        for row in written.values {
            if let dump = row[0].flatMap({ Int64($0) }), let cluster = row[1].flatMap({ Int64($0) }) { clusterOf[dump] = cluster }
        }
        return try entries.map { entry in
            guard let cluster = clusterOf[entry.dumpId] else { throw ClusterQueries.Failure(description: "dump \(entry.dumpId) was not placed in a cluster") }
            return cluster
        }
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

    /// The stored signature of a dump.
    public func signature(dumpId: Int64, on db: PostgresConnection) throws -> CrashSignature? {
        guard let text = try db.execute("SELECT features::text FROM signatures WHERE dump_id = $1", [String(dumpId)]).values.first?[0] else { return nil }
        return try JSONDecoder().decode(CrashSignature.self, from: Data(text.utf8))
    }
}
