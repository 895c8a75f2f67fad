import CrashClusters
import DumpAnalysis
import DumpForge
import DumpMemory
import FleetAPI
import Foundation
import Store
import TestSupport
import Testing

/// Clusters and similarity search on a labelled estate, against a real PostgreSQL: quality
/// floors, correlations, operator edits that survive reprocessing, and the same answers from a
/// full dump and a minidump of one crash.
@Suite struct EstateClusteringTests {
    /// 30 desktops, 1 GiB each; three builds of each cause's driver, every third stack one frame
    /// deeper, one crash in five an unrelated one-off.
    static var estate: Estate {
        var estate = Estate()
        estate.vms = 30
        estate.memoryGiB = 1
        estate.driverVersions = 3
        estate.oneOffEvery = 5
        return estate
    }

    @Test func clustersBeatExactBucketsAndNameWhatTheClusterShares() throws {
        let database = try TestDatabase.fresh()
        let result = try EstateQuality(estate: Self.estate, seed: 5).measure(database: database)
        print("estate: \(result.crashes) crashes, \(result.clusters) clusters, \(result.bucketCount) buckets; "
              + "BCubed F1 \(result.fleet.f1) (buckets \(result.buckets.f1)); RR@1 \(result.similarRR) MAP \(result.similarMAP) "
              + "(buckets \(result.bucketRR), \(result.bucketMAP))")
        let db = try PostgresConnection(database)
        let membership = try Self.membership(db)
        let assignments = result.dumps.map { "\($0.id) \($0.cause.prefix(24)) → cluster \(membership[$0.id] ?? 0) \($0.report.failureBucketId)" }
        #expect(result.fleet.f1 >= 0.95, "BCubed P \(result.fleet.precision) R \(result.fleet.recall):\n\(assignments.joined(separator: "\n"))")
        #expect(result.fleet.f1 > result.buckets.f1)
        #expect(result.similarRR >= result.bucketRR && result.similarMAP > result.bucketMAP)

        // The planted process (its 15-character EPROCESS name) and driver top their clusters' correlations.
        for (cause, planted) in [("VideoAccelerator.exe overwrites a kernel timer (0x3B)", "videoaccelerator.exe"),
                                 ("storage filter spin-lock hang, NMI from the host (0x80)", "vfstor.sys")] {
            let dump = try #require(result.dumps.first { $0.cause == cause })
            let cluster = try #require(Int64(try db.execute("SELECT cluster_id FROM cluster_members WHERE dump_id = $1", [String(dump.id)]).values[0][0]!))
            let detail = try #require(try ClusterQueries().detail(id: cluster, on: db))
            #expect(detail.correlations.first.map { planted.hasPrefix($0.value) } == true, "\(detail.correlations.prefix(3))")
            // Minidumps carry no process list, so a process reaches only the cluster's larger dumps.
            #expect((detail.correlations.first?.inCluster ?? 0) > 0.5 && detail.correlations.first?.elsewhere == 0)
            #expect(detail.members.count == detail.summary.dumps && !detail.daily.isEmpty)
        }
        let listed = try ClusterQueries().list(on: db)
        #expect(listed.count == result.clusters && listed.map(\.dumps).reduce(0, +) == result.crashes)
    }

    /// The same causes as the forge's defaults never write them: every dump type (a third of
    /// them minidumps, whose stacks are all recovered by scanning), 16 Windows builds from
    /// 10240 to 26100, and stale return addresses in every stack's locals, which a scan takes
    /// for callers. Clusters must form around what survives the dump type.
    @Test func clustersHoldAcrossDumpTypesBuildsAndScannedStacks() throws {
        let database = try TestDatabase.fresh()
        let estate = Estate.fieldVariation(Self.estate)
        let result = try EstateQuality(estate: estate, seed: 12).measure(database: database)
        let scanned = result.dumps.filter { $0.report.stack.contains { $0.trust == .scan } }.count
        print("field estate: \(result.crashes) crashes (\(scanned) with scanned frames), \(result.clusters) clusters, \(result.bucketCount) buckets; "
              + "BCubed F1 \(result.fleet.f1) P \(result.fleet.precision) R \(result.fleet.recall) (buckets \(result.buckets.f1)); "
              + "RR@1 \(result.similarRR) MAP \(result.similarMAP) (buckets \(result.bucketRR), \(result.bucketMAP))")
        let membership = try Self.membership(try PostgresConnection(database))
        let assignments = result.dumps.map { "\($0.id) \($0.cause.prefix(24)) → cluster \(membership[$0.id] ?? 0) \($0.report.failureBucketId)" }
        #expect(scanned > result.crashes / 5, "the estate holds stacks recovered by scanning")
        #expect(result.fleet.f1 >= 0.95, "\(result.mixedClusters)\n\(assignments.joined(separator: "\n"))")
        #expect(result.fleet.f1 > result.buckets.f1 + 0.05)
    }

    @Test func mergesAndSplitsSurviveReprocessing() throws {
        let (result, db) = try Self.measured(vms: 12, seed: 9)
        let queries = ClusterQueries()
        let clusters = try queries.list(on: db)
        try #require(clusters.count >= 3)
        let (big, other) = (clusters[0], clusters[1])
        try queries.merge(other.id, into: big.id, on: db)
        let members = try #require(try queries.detail(id: big.id, on: db)).members.map(\.dumpId)
        let splitOff = Array(members.prefix(2))
        let created = try queries.split(big.id, dumps: splitOff, on: db)
        let before = try Self.membership(db)

        // Reprocessing analyzes every dump again and indexes it as the worker does.
        let index = CrashIndex()
        for dump in result.dumps {
            try db.transaction { _ = try index.index(dumpId: dump.id, report: dump.report, on: db) }
        }
        let after = try Self.membership(db)
        #expect(after == before, "every dump stays where it was: \(before.keys.sorted().filter { before[$0] != after[$0] }.map { "\($0): \(before[$0]!) → \(after[$0] ?? 0)" })")
        #expect(try queries.detail(id: created, on: db)?.members.map(\.dumpId).sorted() == splitOff.sorted())
        let merged = try #require(try queries.detail(id: other.id, on: db))
        #expect(merged.summary.id == big.id && merged.mergedFrom == other.id, "the merged id leads to the cluster it joined")
        #expect(try queries.list(on: db).contains { $0.id == other.id } == false)

        // A backfill indexes the same dumps in one batch: the operators' edits hold there too.
        try db.transaction { _ = try index.index(result.dumps.map { CrashIndex.Entry(dumpId: $0.id, report: $0.report) }, on: db) }
        #expect(try Self.membership(db) == before)
    }

    @Test func batchesAndBackfillsPlaceCrashesAsOneAtATimeDoes() throws {
        let (result, db) = try Self.measured(vms: 16, seed: 21)
        let oneAtATime = try Self.membership(db)
        try db.executeScript("TRUNCATE cluster_exemplars, cluster_members, clusters")
        let batch = try db.transaction { try CrashIndex().index(result.dumps.map { CrashIndex.Entry(dumpId: $0.id, report: $0.report) }, on: db) }
        let batched = try Self.membership(db)
        #expect(batch == result.dumps.map { batched[$0.id] }, "each entry's cluster comes back in order")
        func groups(_ membership: [Int64: Int64]) -> Set<Set<Int64>> { Set(Dictionary(grouping: membership.keys, by: { membership[$0]! }).values.map(Set.init)) }
        #expect(groups(batched) == groups(oneAtATime))
        #expect(Set(batch).count > 3, "the estate has several causes")
        let exemplars = try db.execute("SELECT max(n) FROM (SELECT count(*) AS n FROM cluster_exemplars GROUP BY cluster_id) c").values[0][0]
        #expect(exemplars.flatMap { Int($0) }.map { $0 >= 1 && $0 <= CrashIndex().exemplarsPerCluster } == true)

        // A database from before clusters: reports and signatures, nothing else. A backfill
        // places every report it can read, in small batches, and lists the one it cannot.
        try db.executeScript("""
            TRUNCATE cluster_exemplars, cluster_members, clusters, dump_attributes;
            UPDATE signatures SET bands = '{}', fingerprint = NULL;
            """)
        let old = result.dumps[0].id
        try db.execute(#"UPDATE reports SET report = '{"written": "by analyzer version 0"}' WHERE dump_id = $1"#, [String(old)])
        var progress: [Int] = []
        let backfill = try CrashIndex().backfill(everything: false, batchSize: 4, on: db) { progress.append($0.placed) }
        #expect(backfill.placed == result.dumps.count - 1 && backfill.unreadable == [old])
        #expect(progress.count == (result.dumps.count + 3) / 4 && progress.last == backfill.placed)
        var readable = oneAtATime
        readable[old] = nil
        #expect(groups(try Self.membership(db)) == groups(readable))
        #expect(try db.execute("SELECT count(*) FROM signatures WHERE fingerprint IS NULL").values[0][0] == "1")
        #expect(try db.execute("SELECT count(DISTINCT dump_id) FROM dump_attributes").values[0][0] == String(result.dumps.count - 1))
        #expect(try CrashIndex().backfill(everything: false, on: db).placed == 0, "a second run finds nothing to do")
    }

    @Test func aFullDumpAndAMinidumpOfOneCrashFindTheSameCrashes() throws {
        let (_, db) = try Self.measured(vms: 16, seed: 3)
        var answers: [[Int64]] = []
        for kind in [DumpDescription.DumpKind.bitmapKernel, .triage] {
            var description = DumpDescription.networkDriverFault(kind: kind, layoutSeed: 77)
            description.memory = DumpDescription.vmMemory(gibibytes: 1)
            let (path, source) = try Fixtures.mapped(Forge.dump(description))
            let report = CrashAnalyzer(parallelism: 1).analyze(try KernelDump(source: source))
            Fixtures.discard(path)
            answers.append(try CrashIndex().similar(to: report.signature, top: 5, on: db).map(\.dumpId))
        }
        #expect(!answers[0].isEmpty)
        #expect(answers[0] == answers[1])
    }

    /// The estate with `vms` desktops, measured into a fresh database.
    static func measured(vms: Int, seed: UInt64) throws -> (EstateQuality.Result, PostgresConnection) {
        let database = try TestDatabase.fresh()
        var estate = Self.estate
        estate.vms = vms
        return (try EstateQuality(estate: estate, seed: seed).measure(database: database), try PostgresConnection(database))
    }

    static func membership(_ db: PostgresConnection) throws -> [Int64: Int64] {
        Dictionary(uniqueKeysWithValues: try db.execute("SELECT dump_id, cluster_id FROM cluster_members").values.map { (Int64($0[0]!)!, Int64($0[1]!)!) })
    }
}
