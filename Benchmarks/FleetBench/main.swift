// Benchmarks for the fleet, printed as numbers (not asserted):
//   swift run -c release FleetBench [queue] [upload GiB] [heartbeat]
// Each section starts its own private PostgreSQL (fsync off, as in the tests).
//   queue      claim+complete throughput with 1, 2, 4 and 8 workers (batches of 10, and of 1 at 4)
//   upload     an N GiB sparse full dump (default 8) through the real HTTP path, against
//              `lz4 -c FILE > /dev/null` on the same file
//   heartbeat  lease-heartbeat lateness of a worker while every core spins
// End-to-end dumps per minute come from `dumpfleet demo` (it prints them).
import BlobStore
import Coordinator
import DumpFile
import DumpForge
import FleetAPI
import FleetClient
import Foundation
import Logging
import Store
import Worker

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

let quiet = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }
let arguments = Array(CommandLine.arguments.dropFirst())
let sections = arguments.isEmpty ? ["queue", "upload", "heartbeat"] : arguments.filter { Double($0) == nil }
let uploadGiB = arguments.compactMap { UInt64($0) }.first ?? 8

let postgres = EmbeddedPostgres()
try postgres.start()
defer { postgres.stop() }
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
func refill(_ count: Int) throws {
    let db = try PostgresConnection(database)
    try db.executeScript("TRUNCATE job_attempts, reports, signatures, jobs, uploads, upload_sessions, dumps RESTART IDENTITY CASCADE")
    try db.execute("""
        INSERT INTO dumps (content_hash, size) SELECT lpad(to_hex(g), 64, '0'), 4096 FROM generate_series(1, $1) g
        """, [String(count)])
    try db.execute("INSERT INTO jobs (dump_id, analyzer_version) SELECT id, 1 FROM dumps")
}

func queueThroughput(workers: Int, batch: Int, jobs: Int) throws -> Double {
    try refill(jobs)
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

if sections.contains("queue") {
    print("== queue: claim + complete (report and signature written, attempt logged), one transaction per job")
    for (workers, batch) in [(1, 10), (2, 10), (4, 10), (8, 10), (4, 1)] {
        let rate = try queueThroughput(workers: workers, batch: batch, jobs: 20000)
        print(String(format: "   %d worker%@, batches of %2d: %7.0f jobs/s   (thread-seconds claiming %.1f, completing %.1f)",
                     workers, workers == 1 ? " " : "s", batch, rate, claimTime.take(), completeTime.take()))
    }
}

// MARK: upload

func run(_ command: String) -> Double {
    let started = now()
    let status = system(command)
    if status != 0 { print("   `\(command)` exited \(status)") }
    return now() - started
}

if sections.contains("upload") {
    print("== upload: a \(uploadGiB) GiB full dump (sparse) over loopback")
    var description = DumpDescription.timerListCorruption(kind: .full, layoutSeed: 11)
    description.memory = DumpDescription.vmMemory(gibibytes: uploadGiB)
    let forged = DumpForge.Forge.dump(description)
    let path = scratch + "/big.dmp"
    try MappedFile.writeSparse(path, size: forged.size, chunks: forged.chunks.map { ($0.offset, $0.bytes) })
    let size = Double(forged.size)
    _ = run("cat \(path) > /dev/null")  // warm the page cache for both contenders alike
    let lz4 = run("lz4 -q -c \(path) > /dev/null")
    print(String(format: "   lz4 -c FILE > /dev/null:             %6.2f s  %7.0f MB/s", lz4, size / lz4 / 1e6))
    let hashStarted = now()
    _ = try ContentHasher.ofFile(path)
    let hashing = now() - hashStarted
    print(String(format: "   content hash alone (all cores):      %6.2f s  %7.0f MB/s", hashing, size / hashing / 1e6))

    let compressStarted = now()
    var compressedBytes = 0
    for try await chunk in CompressedFileChunks(path: path, skip: 0, progress: { _ in }) { compressedBytes += chunk.readableBytes }
    let compressing = now() - compressStarted
    print(String(format: "   client's LZ4 stream alone:           %6.2f s  %7.0f MB/s", compressing, size / compressing / 1e6))

    let token = "bench-token-0123456789abcdef"
    var configuration = CoordinatorConfiguration(database: database, blobRoot: scratch + "/blobs", tokens: [AccessToken(name: "bench", secret: token)],
                                                 analyzerVersion: 1)
    configuration.port = 0
    let coordinator = try await Coordinator(configuration: configuration, logger: quiet).start()
    let sending = SendingClock()
    let uploader = Uploader(client: FleetClient(server: coordinator.url, token: token)) { if $0.phase == .sending { sending.mark() } }
    let started = now()
    let status = try await uploader.upload(file: path, vm: "bench", host: nil, tags: [:])
    let finished = now()
    let total = finished - started
    let hashPhase = (sending.started ?? finished) - started
    let sendPhase = finished - (sending.started ?? finished)
    print(String(format: "   upload, whole command:               %6.2f s  %7.0f MB/s  (%.0f%% of lz4's rate)", total, size / total / 1e6, 100 * lz4 / total))
    print(String(format: "     hashing for the dedup check:       %6.2f s", hashPhase))
    print(String(format: "     compress + send + server verify:   %6.2f s  %7.0f MB/s  (%.0f%% of lz4's rate)", sendPhase, size / sendPhase / 1e6, 100 * lz4 / sendPhase))
    let blob = try BlobStore(root: scratch + "/blobs").path(of: try ContentHasher.ofFile(path).hash).path
    let stored = (try FileManager.default.attributesOfItem(atPath: blob)[.size] as? NSNumber)?.doubleValue ?? 0
    print(String(format: "   stored as dump %lld: %.1f MiB compressed (ratio %.0f)", status.dumpId ?? 0, stored / 1_048_576, size / max(stored, 1)))
    let verifyStarted = now()
    try FrameVerifier(expectedSize: forged.size).catchUp(from: blob, upTo: UInt64(stored))
    let verifying = now() - verifyStarted
    print(String(format: "   server's decode + content hash alone: %6.2f s  %7.0f MB/s", verifying, size / verifying / 1e6))

    // The same dump with its zeros written out (no holes), one byte changed so it is new: the
    // hashing now reads every block and finds the zero ones by comparing.
    let dense = scratch + "/dense.dmp"
    _ = run("cp --sparse=never \(path) \(dense) && printf x | dd of=\(dense) bs=1 seek=\(forged.size - 1) conv=notrunc status=none")
    _ = run("cat \(dense) > /dev/null")
    let denseLZ4 = run("lz4 -q -c \(dense) > /dev/null")
    let denseStarted = now()
    _ = try await uploader.upload(file: dense, vm: "bench-dense", host: nil, tags: [:])
    let denseTotal = now() - denseStarted
    print(String(format: "   without holes: lz4 -c %.2f s; upload %.2f s, %.0f MB/s (%.0f%% of lz4's rate)", denseLZ4, denseTotal, size / denseTotal / 1e6, 100 * denseLZ4 / denseTotal))
    try FileManager.default.removeItem(atPath: dense)
    await coordinator.stop()
}

/// When the upload's sending phase began.
final class SendingClock: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Double?

    func mark() {
        lock.lock()
        if first == nil { first = now() }
        lock.unlock()
    }

    var started: Double? {
        lock.lock()
        defer { lock.unlock() }
        return first
    }
}

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
