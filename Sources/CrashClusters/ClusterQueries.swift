import FleetAPI
import Foundation
import Store

/// Clusters as operators see them: the list with cross-VM counts, one cluster in detail with its
/// correlations, and the two edits (merge, split) that reprocessing respects.
public struct ClusterQueries: Sendable {
    public init() {}

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Clusters with dumps, largest first; `since` (YYYY-MM-DD) keeps those seen since then,
    /// and `matching` (an ILIKE pattern) those whose title or a bucket matches.
    public func list(since: String? = nil, matching pattern: String? = nil, limit: Int = 200, offset: Int = 0, on db: PostgresConnection) throws -> [ClusterSummary] {
        let rows = try db.execute("""
            SELECT \(Self.summaryColumns) FROM \(Self.summarySource)
            WHERE c.merged_into IS NULL
            GROUP BY c.id HAVING ($1::date IS NULL OR max(u.uploaded_at) >= $1::date)
                AND ($3::text IS NULL OR c.title ILIKE $3 OR bool_or(s.bucket ILIKE $3))
            ORDER BY count(DISTINCT m.dump_id) DESC, c.id LIMIT $2 OFFSET $4
            """, [since, String(limit), pattern, String(offset)])
        return rows.values.map(Self.summary)
    }

    /// One cluster (following merges to the cluster it joined), or nil. Its members come a page
    /// at a time, `memberLimit` with dump ids above `membersAfter` (the summary counts them all).
    public func detail(id: Int64, membersAfter: Int64 = 0, memberLimit: Int = 500, on db: PostgresConnection) throws -> ClusterDetail? {
        var target = id
        var mergedFrom: Int64?
        for _ in 0..<64 {
            guard let row = try db.execute("SELECT merged_into FROM clusters WHERE id = $1", [String(target)]).values.first else { return nil }
            guard let next = row[0].flatMap({ Int64($0) }) else { break }
            mergedFrom = mergedFrom ?? id
            target = next
        }
        let rows = try db.execute("""
            SELECT \(Self.summaryColumns), c.representative_dump_id FROM \(Self.summarySource)
            WHERE c.id = $1 GROUP BY c.id
            """, [String(target)])
        guard let row = rows.values.first else { return nil }
        let members = try db.execute("""
            SELECT m.dump_id, m.score, m.pinned, array_to_json((array_agg(DISTINCT u.vm_name ORDER BY u.vm_name))[1:\(Self.vmsPerMember)])::text,
                   s.bucket, count(DISTINCT u.vm_name)
            FROM cluster_members m JOIN uploads u ON u.dump_id = m.dump_id JOIN signatures s ON s.dump_id = m.dump_id
            WHERE m.cluster_id = $1 AND m.dump_id > $2 GROUP BY m.dump_id, m.score, m.pinned, s.bucket ORDER BY m.dump_id LIMIT $3
            """, [String(target), String(membersAfter), String(memberLimit)]).values.map { member in
            ClusterDetail.Member(dumpId: Int64(member[0] ?? "0") ?? 0, score: Double(member[1] ?? "0") ?? 0, pinned: member[2] == "t",
                   vms: Self.textArray(member[3]), vmCount: Int(member[5] ?? "0") ?? 0, bucket: member[4] ?? "")
        }
        let daily = try db.execute("""
            SELECT to_char(day, 'YYYY-MM-DD'), count(*) FROM (
                SELECT m.dump_id, date_trunc('day', min(u.uploaded_at) AT TIME ZONE 'UTC') AS day
                FROM cluster_members m JOIN uploads u ON u.dump_id = m.dump_id WHERE m.cluster_id = $1 GROUP BY m.dump_id) first_seen
            GROUP BY day ORDER BY day
            """, [String(target)]).values.map { ClusterDetail.DailyCount(day: $0[0] ?? "", dumps: Int($0[1] ?? "0") ?? 0) }
        return ClusterDetail(summary: Self.summary(Array(row.prefix(8))), representativeDumpId: row[8].flatMap { Int64($0) },
                             mergedFrom: mergedFrom, members: members, daily: daily, correlations: try correlations(cluster: target, on: db))
    }

    /// VM names listed per member (a dump sent from a million VMs lists the first ones, by name,
    /// and counts them all).
    static let vmsPerMember = 20

    /// The cluster a dump is in, if it has been placed.
    public func cluster(ofDump dumpId: Int64, on db: PostgresConnection) throws -> Int64? {
        try db.execute("SELECT cluster_id FROM cluster_members WHERE dump_id = $1", [String(dumpId)]).values.first?[0].flatMap { Int64($0) }
    }

    /// Modules, driver versions and processes over-represented in the cluster against all other
    /// dumps, as crash-stats reports them: the difference in support, and a χ² test of the 2×2
    /// table. Kept when the difference is at least 20 points and χ² ≥ 3.84 (p < 0.05); best first.
    public func correlations(cluster: Int64, limit: Int = 12, on db: PostgresConnection) throws -> [ClusterCorrelation] {
        let totals = try db.execute("""
            SELECT (SELECT count(*) FROM cluster_members WHERE cluster_id = $1), (SELECT count(DISTINCT dump_id) FROM dump_attributes)
            """, [String(cluster)]).values[0]
        let inside = Double(totals[0] ?? "0") ?? 0
        let outside = (Double(totals[1] ?? "0") ?? 0) - inside
        guard inside > 0 else { return [] }
        let rows = try db.execute("""
            SELECT a.kind, a.value, count(*) FILTER (WHERE m.cluster_id = $1), count(*) FILTER (WHERE m.cluster_id IS DISTINCT FROM $1)
            FROM dump_attributes a LEFT JOIN cluster_members m ON m.dump_id = a.dump_id
            WHERE (a.kind, a.value) IN (SELECT a2.kind, a2.value FROM dump_attributes a2 JOIN cluster_members m2 ON m2.dump_id = a2.dump_id
                                        WHERE m2.cluster_id = $1)
            GROUP BY a.kind, a.value
            """, [String(cluster)])
        let found = rows.values.compactMap { row -> ClusterCorrelation? in
            guard let kind = row[0], let value = row[1], let a = Double(row[2] ?? ""), let c = Double(row[3] ?? "") else { return nil }
            let inCluster = a / inside
            let elsewhere = outside > 0 ? c / outside : 0
            return ClusterCorrelation(kind: kind, value: value, inCluster: inCluster, elsewhere: elsewhere,
                               chiSquare: Self.chiSquare(a: a, b: inside - a, c: c, d: outside - c))
        }
        return Array(found.filter { $0.inCluster - $0.elsewhere >= 0.2 && $0.chiSquare >= 3.84 }
            .sorted { ($0.inCluster - $0.elsewhere, $0.chiSquare, $1.value) > ($1.inCluster - $1.elsewhere, $1.chiSquare, $0.value) }
            .prefix(limit))
    }

    /// χ² of a 2×2 table [[a, b], [c, d]] (Pearson, no continuity correction).
    static func chiSquare(a: Double, b: Double, c: Double, d: Double) -> Double {
        let n = a + b + c + d
        let denominator = (a + b) * (c + d) * (a + c) * (b + d)
        guard denominator > 0 else { return 0 }
        let difference = a * d - b * c
        return n * difference * difference / denominator
    }

    /// What a search box finds: dumps uploaded from VMs whose name contains `text`, and
    /// clusters whose buckets or title contain it (any case).
    public func search(_ text: String, limit: Int = 50, on db: PostgresConnection) throws -> (dumps: [(id: Int64, vm: String, bucket: String?, cluster: Int64?)], clusters: [ClusterSummary]) {
        let pattern = "%" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_") + "%"
        let dumps = try db.execute("""
            SELECT DISTINCT u.dump_id, u.vm_name, s.bucket, m.cluster_id FROM uploads u
            LEFT JOIN signatures s ON s.dump_id = u.dump_id LEFT JOIN cluster_members m ON m.dump_id = u.dump_id
            WHERE u.vm_name ILIKE $1 ORDER BY u.dump_id LIMIT $2
            """, [pattern, String(limit)]).values.map { row in
            (id: Int64(row[0] ?? "0") ?? 0, vm: row[1] ?? "", bucket: row[2], cluster: row[3].flatMap { Int64($0) })
        }
        return (dumps, try list(matching: pattern, limit: limit, on: db))
    }

    // MARK: operator edits

    /// Merges `source` into `target`: its dumps move (pinned, so reprocessing keeps them) and it
    /// points at `target` from then on.
    public func merge(_ source: Int64, into target: Int64, on db: PostgresConnection) throws {
        guard source != target else { throw Failure(description: "a cluster cannot be merged into itself") }
        try db.transaction {
            try db.execute("SELECT pg_advisory_xact_lock(\(CrashIndex.clusteringLock))")
            let live = try db.execute("SELECT id FROM clusters WHERE id IN ($1, $2) AND merged_into IS NULL", [String(source), String(target)])
            guard live.count == 2 else { throw Failure(description: "clusters \(source) and \(target) must both exist and not be merged already") }
            try db.execute("UPDATE cluster_members SET cluster_id = $2, pinned = true WHERE cluster_id = $1", [String(source), String(target)])
            try db.execute("UPDATE cluster_exemplars SET cluster_id = $2 WHERE cluster_id = $1", [String(source), String(target)])
            try db.execute("UPDATE clusters SET merged_into = $2 WHERE id = $1", [String(source), String(target)])
        }
    }

    /// Moves `dumps` out of their cluster into a new one, pinned there; returns its id.
    public func split(_ cluster: Int64, dumps: [Int64], on db: PostgresConnection) throws -> Int64 {
        guard !dumps.isEmpty else { throw Failure(description: "name the dumps to split off") }
        return try db.transaction {
            try db.execute("SELECT pg_advisory_xact_lock(\(CrashIndex.clusteringLock))")
            let list = PostgresConnection.arrayLiteral(dumps)
            let inCluster = try db.execute("SELECT count(*) FROM cluster_members WHERE cluster_id = $1 AND dump_id = ANY($2::bigint[])", [String(cluster), list])
            guard inCluster.values[0][0] == String(Set(dumps).count) else { throw Failure(description: "not every dump given is in cluster \(cluster)") }
            let created = Int64(try db.execute("""
                INSERT INTO clusters (representative_dump_id, title)
                SELECT $1, coalesce(title, '') || ' (split)' FROM clusters WHERE id = $2 RETURNING id
                """, [String(dumps[0]), String(cluster)]).values[0][0]!)!
            try db.execute("UPDATE cluster_members SET cluster_id = $1, pinned = true WHERE dump_id = ANY($2::bigint[])", [String(created), list])
            // Both clusters need exemplars: the moved dumps take theirs along (or become the new
            // cluster's), and a cluster left without any gets its first remaining member.
            try db.execute("DELETE FROM cluster_exemplars WHERE dump_id = ANY($1::bigint[])", [list])
            try db.execute("""
                INSERT INTO cluster_exemplars (dump_id, cluster_id, fingerprint, bands)
                SELECT dump_id, $1, fingerprint, bands FROM signatures WHERE dump_id = ANY($2::bigint[]) AND fingerprint IS NOT NULL
                ORDER BY dump_id LIMIT $3
                """, [String(created), list, String(CrashIndex().exemplarsPerCluster)])
            try db.execute("""
                INSERT INTO cluster_exemplars (dump_id, cluster_id, fingerprint, bands)
                SELECT s.dump_id, $1, s.fingerprint, s.bands FROM signatures s JOIN cluster_members m ON m.dump_id = s.dump_id
                WHERE m.cluster_id = $1 AND s.fingerprint IS NOT NULL AND NOT EXISTS (SELECT 1 FROM cluster_exemplars WHERE cluster_id = $1)
                ORDER BY s.dump_id LIMIT 1
                """, [String(cluster)])
            return created
        }
    }

    /// What `summary(_:)` reads, from `summarySource` grouped by cluster.
    static let summaryColumns = """
        c.id, coalesce(c.title, ''), count(DISTINCT m.dump_id), count(DISTINCT u.vm_name), count(DISTINCT nullif(u.host, '')),
        \(SQLTime.minute("min(u.uploaded_at)")), \(SQLTime.minute("max(u.uploaded_at)")), array_to_json(array_agg(DISTINCT s.bucket))::text
        """
    static let summarySource = """
        clusters c JOIN cluster_members m ON m.cluster_id = c.id
        JOIN uploads u ON u.dump_id = m.dump_id JOIN signatures s ON s.dump_id = m.dump_id
        """

    static func summary(_ row: [String?]) -> ClusterSummary {
        ClusterSummary(id: Int64(row[0] ?? "0") ?? 0, title: row[1] ?? "", dumps: Int(row[2] ?? "0") ?? 0, vms: Int(row[3] ?? "0") ?? 0,
                       hosts: Int(row[4] ?? "0") ?? 0, firstSeen: row[5] ?? "", lastSeen: row[6] ?? "",
                       buckets: Self.textArray(row[7]))
    }

    /// A text array the query sent as JSON: names may hold spaces (a VM called "vdi finance 02"),
    /// so no separator character would do.
    static func textArray(_ json: String?) -> [String] {
        guard let json, let values = try? JSONDecoder().decode([String?].self, from: Data(json.utf8)) else { return [] }
        return values.compactMap { $0 }
    }
}
