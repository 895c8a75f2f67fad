import CrashClusters
import Store
import Testing
import TestSupport

/// The operators' queries on a database filled directly, at sizes the estate does not reach.
@Suite struct ClusterQueriesTests {
    @Test func searchFindsAClusterBeyondTheLargestTwoHundred() throws {
        let db = try PostgresConnection(TestDatabase.fresh())
        // 201 clusters of two dumps each, then the one sought: a single dump, so it is last by size.
        try db.executeScript("""
            INSERT INTO dumps (content_hash, size) SELECT lpad(to_hex(g), 64, '0'), 1 FROM generate_series(1, 403) g;
            INSERT INTO uploads (dump_id, vm_name) SELECT id, 'vdi-' || id FROM dumps;
            INSERT INTO signatures (dump_id, signature_id, bucket, bugcheck_class, features)
                SELECT id, '0', CASE WHEN id = 403 THEN '0x3B_c0000005_NeedleDriver.sys' ELSE '0x50_filler.sys' END, '0x50', '{}' FROM dumps;
            INSERT INTO clusters (title) SELECT 'cluster ' || g FROM generate_series(1, 202) g;
            INSERT INTO cluster_members (dump_id, cluster_id, score) SELECT id, (id + 1) / 2, 1 FROM dumps;
            """)
        let found = try ClusterQueries().search("needledriver", on: db)
        #expect(found.clusters.map(\.id) == [202], "\(found.clusters.map(\.id))")
        #expect(found.clusters.first?.buckets == ["0x3B_c0000005_NeedleDriver.sys"])
        #expect(try ClusterQueries().search("filler", limit: 5, on: db).clusters.count == 5)
    }
}
