import BlobStore
import FleetAPI
import FleetClient
import Foundation
import Store
import TestSupport

/// `FleetBench abuse`: the hostile review's measurements, repeated against a coordinator
/// process (the release `dumpfleet`, built with `swift build -c release --product dumpfleet`):
/// half-sent requests, idle connections at a low open-files limit, crawling uploads, empty
/// PATCHes on 1 GiB sessions after a restart and after a SIGKILL, 16 scrapers, and a dump with
/// 1.5 million upload records. It prints what it measures; nothing is asserted.
struct AbuseBenchmark {
    let database: String
    let folder: String
    let token = "bench-token-0123456789abcdef"

    func run() async throws {
        guard FileManager.default.isExecutableFile(atPath: ServiceProcess.executable) else {
            say("abuse: build the coordinator first: swift build -c release --product dumpfleet")
            return
        }
        say("abuse (a coordinator process, \(ProcessInfo.processInfo.activeProcessorCount) cores):")
        try halfSentRequests()
        try idleConnectionsAtLowOpenFiles()
        try await crawlingUploads()
        try await emptyPatchesOnLargeSessions()
        try await scrapers()
        try await manyUploadRecords()
    }

    /// Prints a result at once (stdout into a file is block-buffered).
    func say(_ text: String) {
        print(text)
        fflush(nil)
    }

    func startCoordinator(_ name: String, _ arguments: [String] = [], openFiles: Int? = nil) throws -> CoordinatorProcess {
        try CoordinatorProcess(database: database, blobs: folder + "/blobs", tokens: [("bench", token)], folder: folder,
                               arguments: ["--min-free-gib", "0", "--max-sessions-per-token", "100000"] + arguments, openFiles: openFiles, name: name)
    }

    func client(_ coordinator: CoordinatorProcess) -> FleetClient { FleetClient(server: coordinator.url, token: token) }

    func healthLatency(_ coordinator: CoordinatorProcess) throws -> Double {
        let started = now()
        _ = try RawHTTP.exchange(port: coordinator.port, "GET", "/healthz")
        return now() - started
    }

    func halfSentRequests() throws {
        let coordinator = try startCoordinator("half-sent", ["--idle-timeout", "5s", "--max-connections-per-address", "0"])
        defer { coordinator.stop() }
        let before = coordinator.openDescriptors
        let connections = try (0..<800).map { _ in try RawConnection(port: coordinator.port) }
        for connection in connections { connection.send("GET /v1/status HTTP/1.1\r\nHost: coordinator\r\nAuthoriz") }
        Thread.sleep(forTimeInterval: 0.5)
        let held = coordinator.openDescriptors
        let started = now()
        let deadline = Date().addingTimeInterval(30)
        let closed = connections.filter { $0.isClosedByServer(within: max(0.01, deadline.timeIntervalSinceNow)) }.count
        say(String(format: "   800 half-sent requests (idle timeout 5 s): %d closed, the last after %.1f s; descriptors %d -> %d -> %d",
                     closed, now() - started + 0.5, before, held, coordinator.openDescriptors))
    }

    func idleConnectionsAtLowOpenFiles() throws {
        let coordinator = try startCoordinator("idle", openFiles: 256)
        defer { coordinator.stop() }
        let idle = try (0..<300).map { _ in try RawConnection(port: coordinator.port, from: "127.0.0.2") }
        Thread.sleep(forTimeInterval: 0.5)
        let cpu = coordinator.cpuSeconds
        let latency = try healthLatency(coordinator)
        Thread.sleep(forTimeInterval: 3)
        say(String(format: "   300 idle connections, 256 open files: /healthz in %.1f ms; %.2f s CPU in 3 s; %d descriptors; %d connections closed at once",
                     latency * 1000, coordinator.cpuSeconds - cpu, coordinator.openDescriptors, idle.filter { $0.isClosedByServer(within: 0.01) }.count))
    }

    func crawlingUploads() async throws {
        let coordinator = try startCoordinator("crawling", ["--max-uploads-in-progress", "1000", "--max-connections-per-address", "0"])
        defer { coordinator.stop() }
        let client = client(coordinator)
        let header = try await frame(ofRandomMebibytes: 1)
        for count in [100, 500] {
            let before = (coordinator.residentBytes, coordinator.openDescriptors)
            var crawling: [RawConnection] = []
            for index in 0..<count {
                let session = try await client.announce(UploadAnnouncement(contentHash: String(format: "%064x", count * 10_000 + index), size: 64 << 20,
                                                                           vm: "crawl-\(count)-\(index)")).uploadId!
                let connection = try RawConnection(port: coordinator.port)
                connection.send("PATCH /v1/uploads/\(session) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\nUpload-Offset: 0\r\nContent-Length: \(64 << 20)\r\n\r\n")
                connection.send(Array(header.prefix(200_000)))
                crawling.append(connection)
            }
            try await Task.sleep(for: .seconds(1))
            let during = (coordinator.residentBytes, coordinator.openDescriptors)
            crawling.forEach { $0.close() }
            try await Task.sleep(for: .seconds(1))
            say("   \(count) crawling uploads: RSS \(before.0 >> 20) -> \(during.0 >> 20) -> \(coordinator.residentBytes >> 20) MiB, "
                  + "descriptors \(before.1) -> \(during.1) -> \(coordinator.openDescriptors)")
        }
    }

    /// Three sessions holding 1 GiB each; the coordinator restarts (and once is killed
    /// mid-request); three empty PATCHes come in while /healthz is timed.
    func emptyPatchesOnLargeSessions() async throws {
        let content = folder + "/gibibyte.bin"
        try writeRandom(content, mebibytes: 1024)
        let (contentHash, size) = try ContentHasher.ofFile(content)
        let frame = try await Frames.of(content)
        var coordinator = try startCoordinator("sessions")
        var sessions: [String] = []
        for index in 0..<3 {
            let session = try await client(coordinator).announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "large-\(index)")).uploadId!
            let cut = frame.count - 1000
            _ = try await client(coordinator).append(session: session, offset: 0, body: Frames.stream(frame[0..<cut]))
            sessions.append(session)
        }
        coordinator.stop()
        coordinator = try startCoordinator("sessions-restarted")
        say(String(format: "   /healthz with three empty PATCHes on 1 GiB sessions, after a restart: %@", try await emptyPatches(sessions, frame.count - 1000, coordinator)))
        // Killed while a request is under way: the last checkpoint is up to 64 MiB behind.
        let client = client(coordinator)
        let killedSession = try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "killed")).uploadId!
        let connection = try RawConnection(port: coordinator.port)
        connection.send("PATCH /v1/uploads/\(killedSession) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(token)\r\nUpload-Offset: 0\r\nContent-Length: \(frame.count)\r\n\r\n")
        connection.send(Array(frame[0..<(900 << 20)]))
        while (try await client.session(killedSession).received ?? 0) < 900 << 20 { try await Task.sleep(for: .milliseconds(50)) }
        coordinator.service.killAndWait()
        coordinator = try startCoordinator("sessions-killed")
        defer { coordinator.stop() }
        say(String(format: "   the same after a SIGKILL mid-request (900 MiB sent): %@", try await emptyPatches([killedSession], 900 << 20, coordinator)))
        try? FileManager.default.removeItem(atPath: content)
    }

    func emptyPatches(_ sessions: [String], _ offset: Int, _ coordinator: CoordinatorProcess) async throws -> String {
        let client = client(coordinator)
        let idle = try healthLatency(coordinator)
        let started = now()
        async let patched: Void = withThrowingTaskGroup(of: Void.self) { group in
            for session in sessions { group.addTask { _ = try await client.append(session: session, offset: UInt64(offset), body: Frames.stream([UInt8]()[...])) } }
            try await group.waitForAll()
        }
        var worst = 0.0
        repeat { worst = max(worst, try healthLatency(coordinator)) } while now() - started < 0.5
        try await patched
        let reread = try coordinator.metric("dumpfleet_upload_reverified_bytes_total")
        return String(format: "idle %.1f ms, worst %.1f ms; PATCHes done in %.2f s, %.0f MiB re-read", idle * 1000, worst * 1000, now() - started, reread / 1_048_576)
    }

    func scrapers() async throws {
        let coordinator = try startCoordinator("scrapers")
        defer { coordinator.stop() }
        let quiet = try statusLatency(coordinator)
        let stop = Date().addingTimeInterval(5)
        let scraped = Counter()
        let port = coordinator.port
        for _ in 0..<16 {
            Thread.detachNewThread {
                while Date() < stop { if (try? RawHTTP.exchange(port: port, "GET", "/metrics")) != nil { scraped.add() } }
            }
        }
        var worst = 0.0
        while Date() < stop { worst = max(worst, try statusLatency(coordinator)) }
        say(String(format: "   16 scrapers for 5 s (%d scrapes): /v1/status %.1f ms alone, worst %.1f ms beside them", scraped.value, quiet * 1000, worst * 1000))
    }

    func statusLatency(_ coordinator: CoordinatorProcess) throws -> Double {
        let started = now()
        _ = try RawHTTP.exchange(port: coordinator.port, "GET", "/v1/status", headers: ["Authorization": "Bearer \(token)"])
        return now() - started
    }

    func manyUploadRecords() async throws {
        let coordinator = try startCoordinator("records")
        defer { coordinator.stop() }
        let path = folder + "/small.bin"
        try writeRandom(path, mebibytes: 1)
        let dumpId = try await Uploader(client: client(coordinator)).upload(file: path, vm: "first", host: nil, tags: [:]).dumpId!
        try PostgresConnection(database).execute("""
            INSERT INTO uploads (dump_id, vm_name, uploaded_by) SELECT $1, 'vm-' || n, 'bench' FROM generate_series(1, 1500000) n
            """, [String(dumpId)])
        try PostgresConnection(database).execute("ANALYZE uploads")  // as autovacuum would, soon after
        for path in ["/v1/dumps/\(dumpId)", "/v1/dumps/\(dumpId)/uploads?after=1400000&limit=1000", "/ui/dumps/\(dumpId)"] {
            let before = coordinator.residentBytes
            let started = now()
            let answer = try RawHTTP.exchange(port: coordinator.port, "GET", path, headers: ["Authorization": "Bearer \(token)"])
            say(String(format: "   a dump with 1.5 M uploads, GET %@: %d, %d KiB in %.0f ms, RSS %+lld MiB", path, answer.status, answer.body.utf8.count >> 10,
                         (now() - started) * 1000, (Int64(coordinator.residentBytes) - Int64(before)) >> 20))
        }
    }

    func frame(ofRandomMebibytes mebibytes: Int) async throws -> [UInt8] {
        let path = folder + "/random-\(mebibytes).bin"
        try writeRandom(path, mebibytes: mebibytes)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try await Frames.of(path)
    }

    func writeRandom(_ path: String, mebibytes: Int) throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? output.close() }
        var generator = SystemRandomNumberGenerator()
        var block = [UInt8](repeating: 0, count: 1 << 20)
        for _ in 0..<mebibytes {
            block.withUnsafeMutableBytes { bytes in
                for index in 0..<bytes.count / 8 { bytes.storeBytes(of: generator.next(), toByteOffset: index * 8, as: UInt64.self) }
            }
            try output.write(contentsOf: block)
        }
    }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
