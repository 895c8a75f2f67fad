import CrashSimilarity
import DumpAnalysis
import Store

extension CrashIndex {
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

    /// Stores what similarity needs of an analyzed dump (band keys, fingerprint, the modules,
    /// drivers and processes it had) and places it in a cluster; returns the cluster id. Run it
    /// in the transaction that stores the report: clustering is serialized by an advisory lock,
    /// so two workers finishing alike crashes at once do not start two clusters.
    @discardableResult
    public func index(dumpId: Int64, report: CrashReport, on db: PostgresConnection) throws -> Int64 {
        try index([Entry(dumpId: dumpId, report: report)], on: db)[0]
    }

    /// `index(dumpId:report:)` for many dumps at once, in three statements whatever their number
    /// (a round trip costs more than what PostgreSQL does for one crash). The dumps are placed
    /// in order, each seeing what the ones before it did (`ClusterPlacement`), so a batch ends
    /// as one dump at a time would. Returns each entry's cluster id, in order.
    @discardableResult
    public func index(_ entries: [Entry], on db: PostgresConnection) throws -> [Int64] {
        guard !entries.isEmpty else { return [] }
        guard Set(entries.map(\.dumpId)).count == entries.count else { throw ClusterQueries.Failure(description: "a dump appears twice in one batch") }
        let batch = Batch(entries, bands: bands)
        try storeAndLock(batch, on: db)
        let (crashes, exemplarCounts) = try snapshot(batch, on: db)
        var placement = ClusterPlacement(index: self, exemplarCounts: exemplarCounts)
        let clusterOf = try write(placement.place(crashes), batch, on: db)
        return try entries.map { entry in
            guard let cluster = clusterOf[entry.dumpId] else { throw ClusterQueries.Failure(description: "dump \(entry.dumpId) was not placed in a cluster") }
            return cluster
        }
    }

    /// The entries with their fingerprints and band keys, and the array literals that carry
    /// them as bind parameters.
    private struct Batch {
        let entries: [Entry]
        let prints: [Fingerprint]
        let keys: [[Int64]]
        let ids, keyArrays, printTexts: String

        init(_ entries: [Entry], bands: MinHashBands) {
            self.entries = entries
            prints = entries.map { Fingerprint($0.signature) }
            keys = prints.map { bands.clusterKeys($0) }
            ids = PostgresConnection.arrayLiteral(entries.map(\.dumpId))
            keyArrays = PostgresConnection.arrayLiteral(keys.map { PostgresConnection.arrayLiteral($0) })
            printTexts = PostgresConnection.arrayLiteral(prints.map(\.text))
        }
    }

    /// Statement 1: the band keys and fingerprints (where they changed) and the attributes,
    /// then the clustering lock. The lock comes last: the writes before it touch only these
    /// dumps' rows, which merge and split (the lock's other holders) never lock, so waiting for
    /// it cannot deadlock. The next statement's snapshot is taken after the lock, so it sees
    /// every placement committed before.
    private func storeAndLock(_ batch: Batch, on db: PostgresConnection) throws {
        let attributes = batch.entries.flatMap { entry in entry.attributes.map { (entry.dumpId, $0.kind, $0.value) } }
        try db.execute("""
            WITH entries AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(dump_id, keys, fingerprint)),
                 signature AS (UPDATE signatures s SET bands = e.keys::bigint[], fingerprint = e.fingerprint FROM entries e
                               WHERE s.dump_id = e.dump_id AND (s.bands <> e.keys::bigint[] OR s.fingerprint IS DISTINCT FROM e.fingerprint)),
                 fresh AS (SELECT * FROM unnest($4::bigint[], $5::text[], $6::text[]) AS t(dump_id, kind, value)),
                 stale AS (DELETE FROM dump_attributes a WHERE a.dump_id = ANY($1::bigint[])
                           AND (a.dump_id, a.kind, a.value) NOT IN (SELECT dump_id, kind, value FROM fresh)),
                 added AS (INSERT INTO dump_attributes (dump_id, kind, value) SELECT dump_id, kind, value FROM fresh ON CONFLICT DO NOTHING)
            SELECT pg_advisory_xact_lock(\(Self.clusteringLock))
            """, [batch.ids, batch.keyArrays, batch.printTexts, PostgresConnection.arrayLiteral(attributes.map(\.0)),
                  PostgresConnection.arrayLiteral(attributes.map(\.1)), PostgresConnection.arrayLiteral(attributes.map(\.2))])
    }

    /// Statement 2: where each entry is now, the exemplars it shares a band with, and how many
    /// exemplars the clusters named so have. One result with four kinds of row; an exemplar's
    /// fingerprint comes once however many entries it is a candidate of, and is parsed once.
    private func snapshot(_ batch: Batch, on db: PostgresConnection) throws -> (crashes: [ClusterPlacement.Crash], exemplarCounts: [Int64: Int]) {
        let rows = try db.execute("""
            WITH entries AS (SELECT * FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS t(dump_id, keys, n)),
                 membership AS (SELECT e.n, m.cluster_id, m.pinned,
                                       NOT EXISTS (SELECT 1 FROM cluster_members o WHERE o.cluster_id = m.cluster_id AND o.dump_id <> m.dump_id)
                                       OR x.cluster_id IS NOT DISTINCT FROM m.cluster_id AS anchors,
                                       x.dump_id IS NOT NULL AS exemplar
                                FROM entries e JOIN cluster_members m ON m.dump_id = e.dump_id LEFT JOIN cluster_exemplars x ON x.dump_id = e.dump_id),
                 candidates AS (SELECT e.n, c.dump_id, c.cluster_id
                                FROM entries e CROSS JOIN LATERAL exemplar_candidates(e.keys::bigint[], e.dump_id, $3) c)
            SELECT 'member', n, cluster_id, NULL::bigint, NULL::text, pinned, anchors, exemplar FROM membership
            UNION ALL
            SELECT 'candidate', n, cluster_id, dump_id, NULL, NULL, NULL, NULL FROM candidates
            UNION ALL
            SELECT 'exemplar', NULL, NULL, dump_id, fingerprint, NULL, NULL, NULL FROM cluster_exemplars
            WHERE dump_id IN (SELECT dump_id FROM candidates)
            UNION ALL
            SELECT 'count', NULL, cluster_id, count(*), NULL, NULL, NULL, NULL FROM cluster_exemplars
            WHERE cluster_id IN (SELECT cluster_id FROM membership UNION SELECT cluster_id FROM candidates) GROUP BY cluster_id
            """, [batch.ids, batch.keyArrays, String(candidateLimit)])
        var crashes = batch.entries.indices.map {
            ClusterPlacement.Crash(dumpId: batch.entries[$0].dumpId, fingerprint: batch.prints[$0], keys: batch.keys[$0], membership: nil, candidates: [])
        }
        var candidates: [(entry: Int, dump: Int64, cluster: Int64)] = []
        var exemplars: [Int64: Fingerprint] = [:]
        var counts: [Int64: Int] = [:]
        for row in rows.values {
            // WITH ORDINALITY counts from 1.
            let entry = row[1].flatMap { Int($0) }.map { $0 - 1 }.flatMap { crashes.indices.contains($0) ? $0 : nil }
            let cluster = row[2].flatMap { Int64($0) }, dump = row[3].flatMap { Int64($0) }
            switch (row[0], entry, cluster, dump) {
            case ("member", let entry?, let cluster?, _):
                crashes[entry].membership = .init(cluster: cluster, pinned: row[5] == "t", anchors: row[6] == "t", exemplar: row[7] == "t")
            case ("candidate", let entry?, let cluster?, let dump?):
                candidates.append((entry, dump, cluster))
            case ("exemplar", _, _, let dump?):
                exemplars[dump] = row[4].flatMap(Fingerprint.init(text:))
            case ("count", _, let cluster?, _):
                counts[cluster] = row[3].flatMap { Int($0) } ?? 0
            default:
                continue
            }
        }
        for candidate in candidates {
            guard let fingerprint = exemplars[candidate.dump] else { continue }
            crashes[candidate.entry].candidates.append(.init(dumpId: candidate.dump, cluster: candidate.cluster, fingerprint: fingerprint))
        }
        return (crashes, counts)
    }

    /// Statement 3: the clusters founded, the memberships (a pinned member keeps its place and
    /// score) and the exemplars; returns each dump's cluster id. A cluster founded in this
    /// batch travels as minus its founder's dump id (ids are positive) until the INSERT gives
    /// it an id.
    private func write(_ decisions: [ClusterPlacement.Decision], _ batch: Batch, on db: PostgresConnection) throws -> [Int64: Int64] {
        let clusters = decisions.map { decision -> Int64 in
            switch decision.cluster {
            case .stored(let id): id
            case .founded(let dump): -dump
            }
        }
        let rows = try db.execute("""
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
            """, [batch.ids, PostgresConnection.arrayLiteral(clusters),
                  "{" + decisions.map { String(Float($0.score)) }.joined(separator: ",") + "}",
                  "{" + decisions.map { $0.exemplar ? "t" : "f" }.joined(separator: ",") + "}",
                  batch.printTexts, batch.keyArrays, PostgresConnection.arrayLiteral(batch.entries.map(\.signature.bucket))])
        var clusterOf: [Int64: Int64] = [:]
        for row in rows.values {
            if let dump = row[0].flatMap({ Int64($0) }), let cluster = row[1].flatMap({ Int64($0) }) { clusterOf[dump] = cluster }
        }
        return clusterOf
    }
}
