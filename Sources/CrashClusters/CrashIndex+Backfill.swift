import DumpAnalysis
import Foundation
import Store

extension CrashIndex {
    /// What a backfill did.
    public struct BackfillResult: Sendable {
        /// Reports placed in a cluster.
        public var placed = 0
        /// Dumps whose stored report this build cannot read (written by an older analyzer):
        /// `dumpfleet reprocess` analyzes them again, and the workers then place them.
        public var unreadable: [Int64] = []
    }

    /// Places stored reports in clusters from the reports alone, without the dumps: those that
    /// have no cluster (stored before clustering existed), or with `everything` all of them, as
    /// a reprocess would (operators' merges and splits stay). Works in dump-id order, `batchSize`
    /// reports to a transaction, so it can be stopped and run again; `progress` hears the
    /// count after each batch.
    public func backfill(everything: Bool, batchSize: Int = 1000, on db: PostgresConnection,
                         progress: (BackfillResult) -> Void = { _ in }) throws -> BackfillResult {
        var result = BackfillResult()
        var after: Int64 = 0
        let decoder = JSONDecoder()
        while true {
            let rows = try db.execute("""
                SELECT r.dump_id, r.report::text FROM reports r
                WHERE r.dump_id > $1 AND ($2::boolean OR NOT EXISTS (SELECT 1 FROM cluster_members m WHERE m.dump_id = r.dump_id))
                ORDER BY r.dump_id LIMIT $3
                """, [String(after), everything ? "t" : "f", String(batchSize)]).values
            guard let last = rows.last?[0].flatMap({ Int64($0) }) else { return result }
            after = last
            var entries: [Entry] = []
            for row in rows {
                guard let dumpId = row[0].flatMap({ Int64($0) }) else { continue }
                guard let json = row[1], let report = try? decoder.decode(CrashReport.self, from: Data(json.utf8)) else {
                    result.unreadable.append(dumpId)
                    continue
                }
                entries.append(Entry(dumpId: dumpId, report: report))
            }
            _ = try db.transaction { try index(entries, on: db) }
            result.placed += entries.count
            progress(result)
        }
    }
}
