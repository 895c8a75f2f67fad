// Benchmarks for the fleet, printed as numbers (not asserted):
//   swift run -c release FleetBench [queue] [upload GiB] [heartbeat]
// The sections share one private PostgreSQL with fsync, synchronous_commit and full_page_writes
// off, as in the tests; the queue section also runs on a second one with PostgreSQL's durable
// defaults, and prints each server's settings beside its numbers.
//   queue      claim+complete throughput with 1, 2, 4 and 8 workers (batches of 10, and of 1 at 4)
//   upload     an N GiB sparse full dump (default 8) through the real HTTP path, against
//              `lz4 -c FILE > /dev/null` on the same file; then the same size with every page
//              holding data, from a warm and from a dropped page cache, with the bytes read
//   heartbeat  lease-heartbeat lateness of a worker while every core spins
//   quality    clustering and similar-search quality on two labelled estates (the forge's defaults, and
//              field variation: every dump type, 16 builds, stale stack values), against exact buckets
//   similarity N synthetic signatures (default 1,000,000; `similarity 200000` for fewer), then
//              `similar` top-10 latency, clustering all of them in batches (with BCubed against
//              their families), and clustering one report per transaction as workers do
//   abuse      (only when named) a coordinator process under a hostile review's load: half-sent
//              requests, idle connections at 256 open files, crawling uploads, empty PATCHes on
//              1 GiB sessions after a restart and a SIGKILL, 16 scrapers, 1.5 M upload records;
//              needs `swift build -c release --product dumpfleet` first (see Abuse.swift)
// End-to-end dumps per minute come from `dumpfleet demo` (it prints them).
import BlobStore
import CrashClusters
import CrashSimilarity
import DumpAnalysis
import Coordinator
import DumpFile
import DumpForge
import FleetAPI
import FleetClient
import Foundation
import Logging
import Store
import TestSupport
import Worker

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
let arguments = Array(CommandLine.arguments.dropFirst())
let sections = arguments.isEmpty ? ["queue", "upload", "heartbeat", "quality", "similarity"] : arguments.filter { Double($0) == nil }
/// A number after a section is its size.
func size(after section: String, default value: Int) -> Int {
    guard let index = arguments.firstIndex(of: section), index + 1 < arguments.count, let number = Int(arguments[index + 1]) else { return value }
    return number
}
let uploadGiB = UInt64(size(after: "upload", default: 8))

let postgres = EmbeddedPostgres()
try postgres.start()
defer { postgres.stop() }
let interrupts = postgres.stopOnInterrupt()
let database = postgres.connectionString
try Migrations.apply(PostgresConnection(database))
let scratch = NSTemporaryDirectory() + "dumpfleet-bench-\(getpid())"
try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(atPath: scratch) }

// MARK: queue
/// Seconds summed over the worker threads, to split a run into claiming and completing.
final class Total: @unchecked Sendable {
    private let lock = NSLock()
    private var sum = 0.0

    func add(_ seconds: Double) {
        lock.lock()
        sum += seconds
        lock.unlock()
    }

    /// The sum so far, reset to zero.
    func take() -> Double {
        lock.lock()
        defer { lock.unlock() }
        let value = sum
        sum = 0
        return value
    }
}

let claimTime = Total()
let completeTime = Total()

/// Queues `count` jobs on fresh dump rows; returns nothing (the rows are the state).
func refill(_ count: Int, database: String = database) throws {
    let db = try PostgresConnection(database)
    try db.executeScript("TRUNCATE job_attempts, reports, signatures, jobs, uploads, upload_sessions, dumps RESTART IDENTITY CASCADE")
    try db.execute("""
        INSERT INTO dumps (content_hash, size) SELECT lpad(to_hex(g), 64, '0'), 4096 FROM generate_series(1, $1) g
        """, [String(count)])
    try db.execute("INSERT INTO jobs (dump_id, analyzer_version) SELECT id, 1 FROM dumps")
}

func queueThroughput(workers: Int, batch: Int, jobs: Int, database: String) throws -> Double {
    try refill(jobs, database: database)
    let signature = StoredSignature(id: "0123456789abcdef", bucket: "0x1E_c0000005_bench+0x1", bugCheckClass: "0x1E_c0000005", featuresJSON: "{}")
    let queue = JobQueue()
    let group = DispatchGroup()
    let started = now()
    for index in 0..<workers {
        group.enter()
        Thread.detachNewThread {
            defer { group.leave() }
            do {
                let db = try PostgresConnection(database)
                while true {
                    let t0 = now()
                    let leases = try queue.claim(workerId: "bench-\(index)", limit: batch, leaseSeconds: 60, on: db)
                    claimTime.add(now() - t0)
                    if leases.isEmpty { break }
                    let t1 = now()
                    for lease in leases { try queue.complete(lease, report: "{}", signature: signature, on: db) }
                    completeTime.add(now() - t1)
                }
            } catch {
                print("worker \(index): \(error)")
            }
        }
    }
    group.wait()
    let elapsed = now() - started
    let done = try PostgresConnection(database).execute("SELECT count(*) FROM job_attempts WHERE outcome = 'done'").values[0][0]
    guard done == String(jobs) else { fatalError("expected \(jobs) jobs done, found \(done ?? "?")") }
    return Double(jobs) / elapsed
}

/// The settings that decide what a commit costs, as the server reports them.
func commitSettings(_ database: String) throws -> String {
    let rows = try PostgresConnection(database).execute("""
        SELECT name, current_setting(name) FROM pg_settings
        WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'shared_buffers') ORDER BY name
        """).values
    return rows.map { "\($0[0] ?? "?")=\($0[1] ?? "?")" }.joined(separator: " ")
}

if sections.contains("queue") {
    let durable = EmbeddedPostgres(durability: .durable)
    try durable.start()
    defer { durable.stop() }
    try Migrations.apply(PostgresConnection(durable.connectionString))
    for (server, name, jobs) in [(database, "scratch", 20000), (durable.connectionString, "durable", 5000)] {
        print("== queue: claim + complete (report and signature written, attempt logged), one transaction per job, \(jobs) jobs")
        print("   \(name) server: \(try commitSettings(server))")
        for (workers, batch) in [(1, 10), (2, 10), (4, 10), (8, 10), (4, 1)] {
            let rate = try queueThroughput(workers: workers, batch: batch, jobs: jobs, database: server)
            print(String(format: "   %d worker%@, batches of %2d: %7.0f jobs/s   (thread-seconds claiming %.1f, completing %.1f)",
                         workers, workers == 1 ? " " : "s", batch, rate, claimTime.take(), completeTime.take()))
        }
    }
}

// MARK: upload (Upload.swift)

if sections.contains("upload") { try await uploadBenchmark() }

// MARK: heartbeat

func heartbeatLateness() throws {
    let cores = ProcessInfo.processInfo.activeProcessorCount
    print("== heartbeat lateness: a worker (2 jobs at a time) with a 1.5 s lease, heartbeat every 0.5 s, analyzing")
    print("   4 GiB complete dumps while \(2 * cores) more threads spin, for 15 s")
    try refill(0)
    let blobs = try BlobStore(root: scratch + "/blobs")
    let db = try PostgresConnection(database)
    for seed in 1...12 {
        var description = DumpDescription.spinLockHang(kind: .bitmapFull, layoutSeed: UInt64(seed))
        description.memory = DumpDescription.vmMemory(gibibytes: 4)
        let forged = DumpForge.Forge.dump(description)
        let path = scratch + "/hang-\(seed).dmp"
        try MappedFile.writeSparse(path, size: forged.size, chunks: forged.chunks.map { ($0.offset, $0.bytes) })
        let (hash, size) = try blobs.store(file: path)
        try FileManager.default.removeItem(atPath: path)
        let session = Catalog.Session(id: UUID().uuidString, announcement: UploadAnnouncement(contentHash: hash, size: size, vm: "vm-\(seed)"), uploadedBy: nil)
        _ = try Catalog(analyzerVersion: 1).finish(session, on: db)
    }
    var configuration = WorkerConfiguration(database: database, blobs: .directory(scratch + "/blobs"), scratch: scratch + "/work", analyzerVersion: 1)
    configuration.leaseSeconds = 1.5
    configuration.concurrency = 2
    let worker = Worker(configuration: configuration, logger: quiet)
    let spinning = SpinFlag()
    for _ in 0..<(2 * cores) {
        Thread.detachNewThread {
            var x: UInt64 = 1
            while spinning.on { x = x &* 6364136223846793005 &+ 1442695040888963407 }
            if x == 42 { print("") }
        }
    }
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        try? worker.run()
        done.signal()
    }
    Thread.sleep(forTimeInterval: 15)
    spinning.on = false
    worker.drain()
    done.wait()
    let finished = try db.execute("SELECT count(*) FROM jobs WHERE state = 'done'").values[0][0] ?? "0"
    let expired = try db.execute("SELECT count(*) FROM job_attempts WHERE outcome = 'expired'").values[0][0] ?? "0"
    print(String(format: "   worst lateness %.1f ms (target < %.0f ms, a third of the lease); %@ jobs done, %@ leases expired",
                 worker.worstHeartbeatLateness * 1000, 1.5 / 3 * 1000, finished, expired))
}

if sections.contains("heartbeat") { try heartbeatLateness() }

final class SpinFlag: @unchecked Sendable {
    var on = true
}

// MARK: quality

if sections.contains("quality") {
    var estate = Estate()
    estate.vms = 120
    estate.memoryGiB = 2
    estate.driverVersions = 3
    estate.oneOffEvery = 5
    // The second estate varies what the forge's defaults hold still: every dump type, 16
    // Windows builds, stale return addresses on every stack (which minidumps' scans pick up).
    for (name, measured) in [("", estate), (" with field variation (every dump type, 16 builds, stale stack values)", Estate.fieldVariation(estate))] {
        try qualityReport(name, measured)
    }
}

func qualityReport(_ name: String, _ estate: Estate) throws {
    try refill(0)
    try PostgresConnection(database).executeScript("TRUNCATE cluster_exemplars, cluster_members, clusters, dump_attributes CASCADE")
    let started = now()
    let result = try EstateQuality(estate: estate, seed: 2026).measure(database: database)
    let scanned = result.dumps.filter { $0.report.stack.contains { $0.trust == .scan } }.count
    print("== quality\(name): \(result.crashes) crashes of a labelled estate (\(estate.vms) VMs; 4 causes, \(estate.driverVersions) driver builds each, deeper stacks, one-offs; "
          + "\(scanned) stacks with scanned frames), \(String(format: "%.0f", now() - started)) s")
    print(String(format: "   clusters (%d):       BCubed precision %.3f recall %.3f F1 %.3f", result.clusters, result.fleet.precision, result.fleet.recall, result.fleet.f1))
    print(String(format: "   exact buckets (%d):  BCubed precision %.3f recall %.3f F1 %.3f", result.bucketCount, result.buckets.precision, result.buckets.recall, result.buckets.f1))
    print(String(format: "   similar top-10:     RR@1 %.3f  MAP %.3f   (same bucket first: RR@1 %.3f  MAP %.3f)", result.similarRR, result.similarMAP, result.bucketRR, result.bucketMAP))
    for line in result.mixedClusters { print("   mixed " + line) }
}

// MARK: similarity at scale

/// A synthetic crash family: a culprit driver, a bug check and a stack; members vary the way
/// the field does (a rebuilt driver moves its RVAs, a code path adds a frame).
struct Family {
    var culprit: String
    var bugCheckClass: String
    var frames: [(module: String, function: String, rva: Int)]

    static func make(_ random: inout SeededRandom, drivers: [String]) -> Family {
        let culprit = drivers[Int(random.below(UInt64(drivers.count)))]
        let classes = ["0x1E_c0000005", "0x3B_c0000005", "0x50", "0x7E_c0000005", "0xD1", "0x9F", "0x133", "0x139_3"]
        var frames = [(module: culprit, function: "Routine\(random.below(40))", rva: Int(0x1000 + random.below(0x8000)))]
        for _ in 0..<(2 + Int(random.below(6))) {
            let module = random.below(3) == 0 ? culprit : ["nt", "ndis", "dxgkrnl", "storport", "fltmgr", "tcpip"][Int(random.below(6))]
            frames.append((module, "F\(random.below(200))", Int(0x1000 + random.below(0x40000))))
        }
        return Family(culprit: culprit, bugCheckClass: classes[Int(random.below(UInt64(classes.count)))], frames: frames)
    }

    func member(_ random: inout SeededRandom) -> String {
        var frames = self.frames
        if random.below(3) == 0 { frames = frames.map { $0.module == culprit ? ($0.module, $0.function, $0.rva + 0x400) : $0 } }
        if random.below(3) == 0 { frames.insert(("nt", "IofCallDriver", 0x1055), at: min(frames.count, 2 + Int(random.below(3)))) }
        let frameJSON = frames.enumerated().map { position, frame in
            #"{"position":\#(position),"module":"\#(frame.module)","key":"\#(frame.module)+0x\#(String(frame.rva, radix: 16))","function":"\#(frame.function)"}"#
        }.joined(separator: ",")
        return #"{"id":"0","canonical":"","bucket":"\#(bugCheckClass)_\#(culprit)+0x\#(String(frames[0].rva, radix: 16))","bugCheckClass":"\#(bugCheckClass)","culprit":"\#(culprit)","frames":[\#(frameJSON)],"modules":[],"evidenceTokens":[]}"#
    }
}

func percentile(_ values: [Double], _ p: Double) -> Double { values.sorted()[min(values.count - 1, Int(Double(values.count) * p))] }

if sections.contains("abuse") {
    try await AbuseBenchmark(database: database, folder: scratch).run()
}

if sections.contains("similarity") {
    let total = size(after: "similarity", default: 1_000_000)
    let familyCount = max(10, total / 500)
    print("== similarity: \(total) synthetic signatures in \(familyCount) families")
    try refill(0)
    let db = try PostgresConnection(database)
    try db.executeScript("TRUNCATE cluster_exemplars, cluster_members, clusters, dump_attributes CASCADE")
    var random = SeededRandom(seed: 99)
    let drivers = (0..<400).map { "drv\($0)" }
    let families = (0..<familyCount).map { _ in Family.make(&random, drivers: drivers) }
    let bands = MinHashBands()
    let decoder = JSONDecoder()
    // The family of each stored signature, by dump id (refill restarts the ids at 1).
    var familyOf = [Int32](repeating: -1, count: total + 1)
    let insertStarted = now()
    var inserted = 0
    while inserted < total {
        let batch = min(10_000, total - inserted)
        var hashes: [String] = [], features: [String] = [], prints: [String] = [], buckets: [String] = [], classes: [String] = [], keys: [String] = []
        for number in inserted..<(inserted + batch) {
            let family = Int(random.below(UInt64(familyCount)))
            familyOf[number + 1] = Int32(family)
            let json = families[family].member(&random)
            let signature = try decoder.decode(CrashSignature.self, from: Data(json.utf8))
            hashes.append(String(format: "%064llx", UInt64(number)))
            features.append(json)
            prints.append(Fingerprint(signature).text)
            buckets.append(signature.bucket)
            classes.append(signature.bugCheckClass)
            keys.append(PostgresConnection.arrayLiteral(bands.keys(signature)))
        }
        _ = try db.transaction {
            try db.execute("""
                WITH rows AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                              AS t(hash, features, bucket, class, bands, fingerprint)),
                dumps_in AS (INSERT INTO dumps (content_hash, size) SELECT hash, 1 FROM rows RETURNING id, content_hash)
                INSERT INTO signatures (dump_id, signature_id, bucket, bugcheck_class, features, bands, fingerprint)
                SELECT d.id, '0', r.bucket, r.class, r.features::jsonb, r.bands::bigint[], r.fingerprint FROM rows r JOIN dumps_in d ON d.content_hash = r.hash
                """, [PostgresConnection.arrayLiteral(hashes), PostgresConnection.arrayLiteral(features), PostgresConnection.arrayLiteral(buckets),
                   PostgresConnection.arrayLiteral(classes), PostgresConnection.arrayLiteral(keys), PostgresConnection.arrayLiteral(prints)])
        }
        inserted += batch
        if inserted % 100_000 == 0 || inserted == total { print("   \(inserted) inserted, \(String(format: "%.0f", Double(inserted) / (now() - insertStarted))) per second") }
    }
    try db.executeScript("VACUUM ANALYZE signatures")
    let index = CrashIndex()
    var latencies: [Double] = []
    var sameFamilyFirst = 0
    for _ in 0..<1000 {
        let family = Int(random.below(UInt64(familyCount)))
        let signature = try decoder.decode(CrashSignature.self, from: Data(families[family].member(&random).utf8))
        let started = now()
        let hits = try index.similar(to: signature, top: 10, on: db)
        latencies.append(now() - started)
        if let first = hits.first, familyOf[Int(first.dumpId)] == family { sameFamilyFirst += 1 }
    }
    print(String(format: "   similar top-10 over %d: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms; the first answer is of the query's family in %d of 1000",
                 total, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.95) * 1000, percentile(latencies, 0.99) * 1000, sameFamilyFirst))

    // Clustering every stored signature from no clusters at all, 1,000 to a transaction, as a
    // backfill would; only the time inside CrashIndex.index counts (reading and decoding the
    // stored JSON does not).
    var clustering = 0.0
    for first in stride(from: 1, through: total, by: 1000) {
        let rows = try db.execute("SELECT dump_id, features::text FROM signatures WHERE dump_id BETWEEN $1 AND $2 ORDER BY dump_id",
                                  [String(first), String(first + 999)])
        let entries = try rows.values.map { row in
            CrashIndex.Entry(dumpId: Int64(row[0]!)!, signature: try decoder.decode(CrashSignature.self, from: Data(row[1]!.utf8)), attributes: [])
        }
        let started = now()
        _ = try db.transaction { try index.index(entries, on: db) }
        clustering += now() - started
        if (first + 999) % 200_000 == 0 { print("   \(first + 999) clustered, \(String(format: "%.0f", Double(first + 999) / clustering)) per second") }
    }
    let placed = try db.execute("SELECT dump_id, cluster_id FROM cluster_members").values.compactMap { row -> (Int, Int64)? in
        guard let dump = row[0].flatMap({ Int($0) }), let cluster = row[1].flatMap({ Int64($0) }) else { return nil }
        return (dump, cluster)
    }
    let quality = ClusterQuality.bcubed(clusters: placed.map(\.1), labels: placed.map { familyOf[$0.0] })
    let clusterTotal = Set(placed.map(\.1)).count
    print(String(format: "   clustering in batches of 1,000: %.0f reports/s (%d reports into %d clusters for %d families; BCubed precision %.3f recall %.3f F1 %.3f)",
                 Double(total) / clustering, placed.count, clusterTotal, familyCount, quality.precision, quality.recall, quality.f1))

    // The workers' path: each new report stored and clustered in its own transaction, from one
    // connection and from two at once (the advisory lock serializes the placing).
    let reports = try (0..<4000).map { _ -> (json: String, signature: CrashSignature) in
        let json = families[Int(random.below(UInt64(familyCount)))].member(&random)
        return (json, try decoder.decode(CrashSignature.self, from: Data(json.utf8)))
    }
    var nextHash = total
    for connections in [1, 2] {
        let share = reports.count / connections
        let first = nextHash
        nextHash += reports.count
        let failures = Total()
        let started = now()
        DispatchQueue.concurrentPerform(iterations: connections) { worker in
            do {
                let db = try PostgresConnection(database)
                for number in (worker * share)..<((worker + 1) * share) {
                    let (json, signature) = reports[number]
                    try db.transaction {
                        let id = try db.execute("INSERT INTO dumps (content_hash, size) VALUES ($1, 1) RETURNING id",
                                                [String(format: "%064llx", UInt64(first + number))]).values[0][0]!
                        try db.execute("INSERT INTO signatures (dump_id, signature_id, bucket, bugcheck_class, features) VALUES ($1, '0', $2, $3, $4::jsonb)",
                                       [id, signature.bucket, signature.bugCheckClass, json])
                        try index.index([CrashIndex.Entry(dumpId: Int64(id)!, signature: signature, attributes: [])], on: db)
                    }
                }
            } catch {
                print("   worker \(worker): \(error)")
                failures.add(1)
            }
        }
        print(String(format: "   clustering one report per transaction, as workers do: %.0f reports/s from %d connection%@%@", Double(reports.count) / (now() - started),
                     connections, connections == 1 ? "" : "s", failures.take() == 0 ? "" : " (failed)"))
    }
}
