import BlobStore
import FleetAPI
import FleetClient
import Foundation
import Testing
import TestSupport

/// A coordinator process under the abuse a hostile review tried: idle and half-sent
/// connections, a low open-files limit, uploads whose clients vanish or crawl, heavy work
/// next to cheap requests, a restart mid-upload. Memory, descriptors and CPU time are read
/// from /proc, so the bounds below are measured, not assumed.
@Suite struct CoordinatorLimitsTests {
    init() { Self.raiseOwnOpenFilesLimit() }

    @Test func halfSentRequestsAreClosedAfterTheIdleTimeout() throws {
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess(["--idle-timeout", "2s", "--max-connections-per-address", "0"])
        defer { coordinator.stop() }
        let before = coordinator.openDescriptors
        let connections = try (0..<200).map { _ in try RawConnection(port: coordinator.port) }
        for connection in connections { connection.send("GET /v1/status HTTP/1.1\r\nHost: coordinator\r\nAuthoriz") }
        // A connection the coordinator never accepted would sit in the backlog, not be closed:
        // every one closed means every one was accepted, held, and let go.
        let held = coordinator.openDescriptors
        let deadline = Date().addingTimeInterval(10)
        let closed = connections.filter { $0.isClosedByServer(within: max(0.01, deadline.timeIntervalSinceNow)) }.count
        #expect(closed == connections.count, "\(closed) of \(connections.count) half-sent requests were closed")
        Thread.sleep(forTimeInterval: 0.3)
        let after = coordinator.openDescriptors
        #expect(after <= before + 5, "descriptors back to \(after) from \(held) (\(before) before)")
        print("measure: 200 half-sent requests, idle timeout 2 s: descriptors \(before) -> \(held) -> \(after)")
    }

    /// The open-files limit at 256 and 300 idle connections from three hosts: the per-address
    /// cap closes those past 64 from one host, and the rest would be more than the 120
    /// connections 256 files allow, so the oldest idle ones are closed to make room: a health
    /// check from elsewhere is answered, and the coordinator does not spin.
    @Test func aHealthCheckIsAnsweredBeside300IdleConnectionsAt256OpenFiles() throws {
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess(openFiles: 256)
        defer { coordinator.stop() }
        #expect(coordinator.service.output.contains("openFiles=256") && coordinator.service.output.contains("connections=120"), "\(coordinator.service.output)")
        // 100 from one host first (36 past its cap of 64), then 200 from two more.
        let idle = try (0..<300).map { index in try RawConnection(port: coordinator.port, from: index < 100 ? "127.0.0.2" : "127.0.0.\(3 + index % 2)") }
        Thread.sleep(forTimeInterval: 0.5)
        let cpu = coordinator.cpuSeconds
        let started = Date()
        let health = try RawHTTP.exchange(port: coordinator.port, "GET", "/healthz")
        let waited = Date().timeIntervalSince(started)
        // Before the limits it was not answered at all (every descriptor was taken); 5 s leaves
        // room for a machine busy with the rest of the suite.
        #expect(health.status == 200 && waited < 5, "healthz answered \(health.status) after \(waited) s")
        Thread.sleep(forTimeInterval: 2)
        let spent = coordinator.cpuSeconds - cpu
        #expect(spent < 0.5, "the coordinator used \(spent) s of CPU in 2 s beside idle connections")
        let closed = idle.filter { $0.isClosedByServer(within: 0.01) }.count
        #expect(closed >= 300 - 120, "past the per-address cap and the total, connections are closed: \(closed)")
        let refused = try coordinator.metric("dumpfleet_connections_refused_total")
        let evicted = try coordinator.metric("dumpfleet_connections_closed_idle_total")
        #expect(refused > 0 && evicted > 0, "both the per-address cap (\(refused)) and the room-making (\(evicted)) closed some")
        print("measure: 300 idle connections at 256 open files: healthz in \(String(format: "%.3f", waited)) s, \(String(format: "%.2f", spent)) s CPU in 2 s, \(closed) closed (\(Int(refused)) refused, \(Int(evicted)) idle ones to make room), descriptors \(coordinator.openDescriptors)")
    }

    /// A PATCH whose client vanished holds its session only until the idle timeout: then
    /// `dumpfleet upload` of the same file resumes it and finishes.
    @Test func anUploadWhoseClientVanishedCanBeResumed() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess(["--idle-timeout", "2s"])
        defer { coordinator.stop() }
        let path = try harness.forge(seed: 41, kind: .bitmapKernel)
        let (contentHash, size) = try ContentHasher.ofFile(path)
        let frame = try await Frames.of(path)
        let session = try #require(try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "vdi-041")).uploadId)
        let vanished = try RawConnection(port: coordinator.port)
        vanished.send("PATCH /v1/uploads/\(session) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(FleetHarness.token)\r\n"
                      + "Upload-Offset: 0\r\nContent-Length: \(frame.count)\r\n\r\n")
        vanished.send(Array(frame[0..<frame.count / 3]))
        try await UploadIntegrityTests.waitUntil { (try await client.session(session).received ?? 0) > 0 }

        let upload = try ServiceProcess(["upload", path, "--vm", "vdi-041", "--server", coordinator.url, "--token", FleetHarness.token],
                                        log: harness.folder + "/upload.log")
        #expect(upload.waitForExit(timeout: 60), "the upload finished once the silent connection was dropped")
        #expect(upload.process.terminationStatus == 0 && upload.output.contains("stored as dump"), "\(upload.output)")
        #expect(vanished.isClosedByServer(within: 1), "the silent connection was closed")
    }

    /// 100 uploads crawling at once cost little memory each, and what they held is given back
    /// when they end (about 9 MB each, kept afterwards, before verification read from files).
    @Test func slowUploadsCostLittleMemoryAndGiveItBack() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess(["--max-uploads-in-progress", "128"])
        defer { coordinator.stop() }
        // Warm up: one whole upload, so code and thread pools are in place before measuring.
        let warm = try harness.forge(seed: 42, kind: .bitmapKernel)
        _ = try await Uploader(client: client).upload(file: warm, vm: "warm", host: nil, tags: [:]) as UploadStatus
        let frame = try await Frames.of(try harness.forge(seed: 43, kind: .bitmapKernel))
        let before = (memory: coordinator.residentBytes, descriptors: coordinator.openDescriptors)

        var crawling: [RawConnection] = []
        for index in 0..<100 {
            let hash = String(format: "%064x", index + 1)
            let session = try #require(try await client.announce(UploadAnnouncement(contentHash: hash, size: 64 << 20, vm: "slow-\(index)")).uploadId)
            // From four addresses, as from four hosts: the per-address cap stays at its default.
            let connection = try RawConnection(port: coordinator.port, from: "127.0.0.\(2 + index % 4)")
            connection.send("PATCH /v1/uploads/\(session) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(FleetHarness.token)\r\n"
                            + "Upload-Offset: 0\r\nContent-Length: \(64 << 20)\r\n\r\n")
            connection.send(Array(frame.prefix(100_000)))
            crawling.append(connection)
        }
        // Each crawling upload holds its connection and its file open.
        try await UploadIntegrityTests.waitUntil { coordinator.openDescriptors >= before.descriptors + 200 }
        let during = (memory: coordinator.residentBytes, descriptors: coordinator.openDescriptors)
        crawling.forEach { $0.close() }
        try await UploadIntegrityTests.waitUntil { coordinator.openDescriptors <= before.descriptors + 5 }
        let after = (memory: coordinator.residentBytes, descriptors: coordinator.openDescriptors)
        let grown = Int64(during.memory) - Int64(before.memory), kept = Int64(after.memory) - Int64(before.memory)
        print("measure: 100 crawling uploads: RSS \(before.memory >> 20) -> \(during.memory >> 20) -> \(after.memory >> 20) MiB, descriptors \(before.descriptors) -> \(during.descriptors) -> \(after.descriptors)")
        #expect(grown < 100 << 20, "100 uploads in progress took \(grown >> 20) MiB")
        #expect(kept < 60 << 20, "\(kept >> 20) MiB stayed after they ended")
        #expect(after.descriptors <= before.descriptors + 5)
    }

    /// While the upload threads are stuck (a failpoint stalls them), a health check and a status
    /// query are answered at once: they run on the database's threads, not the uploads'.
    @Test func cheapRequestsAreAnsweredWhileUploadsAreStuck() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess(environment: ["DUMPFLEET_FAILPOINT": "verify:6"])
        defer { coordinator.service.killAndWait() }  // a graceful stop would wait out every stalled piece
        let frame = try await Frames.of(try harness.forge(seed: 44, kind: .bitmapKernel))
        var stuck: [RawConnection] = []
        for index in 0..<4 {
            let session = try #require(try await client.announce(UploadAnnouncement(contentHash: String(format: "%064x", 100 + index), size: 1 << 30,
                                                                                   vm: "stuck-\(index)")).uploadId)
            let connection = try RawConnection(port: coordinator.port)
            connection.send("PATCH /v1/uploads/\(session) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(FleetHarness.token)\r\n"
                            + "Upload-Offset: 0\r\nContent-Length: \(frame.count)\r\n\r\n")
            connection.send(frame)
            stuck.append(connection)
        }
        #expect(coordinator.service.waitFor("failpoint verify reached", timeout: 10))
        try await Task.sleep(for: .milliseconds(300))
        for path in ["/healthz", "/v1/status"] {
            let started = Date()
            let answer = try RawHTTP.exchange(port: coordinator.port, "GET", path, headers: ["Authorization": "Bearer \(FleetHarness.token)"])
            let waited = Date().timeIntervalSince(started)
            #expect(answer.status == 200 && waited < 3, "\(path): \(answer.status) after \(waited) s while uploads are stuck for 6 s")
        }
        stuck.forEach { $0.close() }
    }

    /// An upload goes on from where its verification stood: after a graceful restart nothing is
    /// read twice, and after a SIGKILL mid-request at most what arrived since the last
    /// checkpoint, once (checkpoints are saved every 64 MiB and when a request ends).
    @Test func aRestartedCoordinatorRereadsOnlyWhatFollowsTheCheckpoint() async throws {
        let harness = try FleetHarness()
        var (coordinator, client) = try harness.startCoordinatorProcess()
        let (_, hashA, sizeA, frameA) = try await Self.randomUpload(harness, seed: 45, mebibytes: 24)
        let (_, hashB, sizeB, frameB) = try await Self.randomUpload(harness, seed: 46, mebibytes: 16)
        let sessionA = try #require(try await client.announce(UploadAnnouncement(contentHash: hashA, size: sizeA, vm: "vdi-045")).uploadId)
        let sessionB = try #require(try await client.announce(UploadAnnouncement(contentHash: hashB, size: sizeB, vm: "vdi-046")).uploadId)
        let cutA = frameA.count - 100
        _ = try await client.append(session: sessionA, offset: 0, body: Frames.stream(frameA[0..<cutA]))
        // B's request is under way when the coordinator is killed.
        let cutB = 12 << 20
        let killed = try RawConnection(port: coordinator.port)
        killed.send("PATCH /v1/uploads/\(sessionB) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(FleetHarness.token)\r\n"
                    + "Upload-Offset: 0\r\nContent-Length: \(frameB.count)\r\n\r\n")
        killed.send(Array(frameB[0..<cutB]))
        try await UploadIntegrityTests.waitUntil { (try await client.session(sessionB).received ?? 0) == UInt64(cutB) }
        coordinator.service.killAndWait()

        (coordinator, client) = try harness.startCoordinatorProcess(name: "restarted")
        defer { coordinator.stop() }
        for _ in 0..<3 { _ = try await client.append(session: sessionA, offset: UInt64(cutA), body: Frames.stream([UInt8]())) }
        let afterA = try coordinator.metric("dumpfleet_upload_reverified_bytes_total")
        _ = try await client.append(session: sessionB, offset: UInt64(cutB), body: Frames.stream([UInt8]()))
        let afterB = try coordinator.metric("dumpfleet_upload_reverified_bytes_total")
        for _ in 0..<2 { _ = try await client.append(session: sessionB, offset: UInt64(cutB), body: Frames.stream([UInt8]())) }
        let afterMore = try coordinator.metric("dumpfleet_upload_reverified_bytes_total")
        print("measure: after a restart, three empty PATCHes re-read \(Int(afterA)) bytes of a \(cutA)-byte upload; "
              + "after a SIGKILL mid-request, \(Int(afterB - afterA)) bytes of \(cutB), then \(Int(afterMore - afterB)) more")
        #expect(afterA == 0, "a request that ended saved its checkpoint")
        #expect(afterB - afterA > 0 && afterB - afterA <= Double(cutB), "what arrived since the last checkpoint, no more")
        #expect(afterMore == afterB, "read once, then saved")

        _ = try await client.append(session: sessionA, offset: UInt64(cutA), body: Frames.stream(frameA[cutA...]))
        _ = try await client.append(session: sessionB, offset: UInt64(cutB), body: Frames.stream(frameB[cutB...]))
        #expect(try await client.finish(session: sessionA).state == .stored)
        #expect(try await client.finish(session: sessionB).state == .stored)
    }

    /// A file of pseudo-random bytes (which LZ4 stores as they are), its content hash, size and frame.
    static func randomUpload(_ harness: FleetHarness, seed: UInt64, mebibytes: Int) async throws -> (String, String, UInt64, [UInt8]) {
        let path = harness.folder + "/random-\(seed).bin"
        var random = TestRandom(seed: seed)
        var content = [UInt8](repeating: 0, count: mebibytes << 20)
        content.withUnsafeMutableBytes { bytes in
            for index in 0..<bytes.count / 8 { bytes.storeBytes(of: random.next(), toByteOffset: index * 8, as: UInt64.self) }
        }
        try Data(content).write(to: URL(fileURLWithPath: path))
        let (contentHash, size) = try ContentHasher.ofFile(path)
        return (path, contentHash, size, try await Frames.of(path))
    }

    static func raiseOwnOpenFilesLimit() {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
