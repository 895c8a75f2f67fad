import AsyncHTTPClient
import BlobStore
import FleetAPI
import FleetClient
import Foundation
import Store
import Testing
import TestSupport

/// What an upload session may hold: sessions and announced bytes per token, the disk's
/// reserve, how long it lives without activity; and how long lists of a dump's uploads come
/// back, and what a metrics scrape costs.
@Suite struct UploadSessionLimitsTests {
    @Test func aTokenHoldsAtMostItsQuotaOfSessionsAndBytes() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess(["--max-sessions-per-token", "2", "--max-session-gib-per-token", "0.01"])
        defer { coordinator.stop() }
        func announce(_ index: Int, size: UInt64) async -> FleetClient.Failure? {
            await CoordinatorTests.failure {
                _ = try await client.announce(UploadAnnouncement(contentHash: String(format: "%064x", index), size: size, vm: "vdi-\(index)"))
            }
        }
        let tenMiB: UInt64 = 10_737_418  // 0.01 GiB
        #expect(await announce(1, size: 6 << 20) == nil)
        let bytes = await announce(2, size: 6 << 20)
        #expect(bytes?.status == 429 && bytes?.message.contains("limit of \(tenMiB)") == true, "\(String(describing: bytes))")
        #expect(await announce(3, size: 1 << 20) == nil)
        let sessions = await announce(4, size: 1)
        #expect(sessions?.status == 429 && sessions?.message.contains("2 open upload sessions") == true, "\(String(describing: sessions))")
        #expect(await announce(1, size: 6 << 20) == nil, "announcing an open session again is no new session")
        #expect(try harness.count("SELECT count(*) FROM upload_sessions WHERE state = 'open'") == 2)
    }

    @Test func anotherTokenHasAQuotaOfItsOwn() async throws {
        let harness = try FleetHarness()
        let second = "second-token-0123456789abcdef"
        let (coordinator, client) = try harness.startCoordinatorProcess(["--max-sessions-per-token", "1"],
                                                                        tokens: [("tester", FleetHarness.token), ("second", second)])
        defer { coordinator.stop() }
        _ = try await client.announce(UploadAnnouncement(contentHash: String(format: "%064x", 1), size: 10, vm: "a"))
        let full = await CoordinatorTests.failure { _ = try await client.announce(UploadAnnouncement(contentHash: String(format: "%064x", 2), size: 10, vm: "b")) }
        #expect(full?.status == 429)
        let other = FleetClient(server: coordinator.url, token: second)
        #expect(try await other.announce(UploadAnnouncement(contentHash: String(format: "%064x", 2), size: 10, vm: "b")).state == .open)
    }

    @Test func anIdleSessionExpiresAndItsBytesAreDeleted() async throws {
        let harness = try FleetHarness()
        // The session gets its bytes from one coordinator; a second one, with a short expiry,
        // finds it idle (two processes, so that no timing on a busy machine decides the test).
        var (coordinator, client) = try harness.startCoordinatorProcess()
        let path = try harness.forge(seed: 51)
        let (contentHash, size) = try ContentHasher.ofFile(path)
        let frame = try await Frames.of(path)
        let session = try #require(try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "vdi-051")).uploadId)
        _ = try await client.append(session: session, offset: 0, body: Frames.stream(frame[0..<frame.count / 2]))
        #expect(try CoordinatorTests.leftovers(harness).count == 1)
        coordinator.stop()
        try await Task.sleep(for: .seconds(1.5))
        (coordinator, client) = try harness.startCoordinatorProcess(["--session-expiry", "1s"], name: "expiring")
        defer { coordinator.stop() }
        try await UploadIntegrityTests.waitUntil(timeout: 20) {
            (await CoordinatorTests.failure { _ = try await client.session(session) })?.status == 404
        }
        try await UploadIntegrityTests.waitUntil(timeout: 5) { try CoordinatorTests.leftovers(harness).isEmpty }
        #expect(try harness.count("SELECT count(*) FROM upload_sessions WHERE state = 'expired'") == 1)
        #expect(try await client.status().openUploadSessions == 0)
        #expect(try coordinator.metric("dumpfleet_uploads_total{outcome=\"expired\"}") == 1)
        // Announcing again starts afresh.
        let again = try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "vdi-051"))
        #expect(again.uploadId != session && again.received == 0)
    }

    /// A new session is taken only if the disk can hold it beside what the open sessions may
    /// still send (announcing reserves); a dump the store has writes nothing and passes.
    @Test func announcingReservesDiskSpace() async throws {
        let harness = try FleetHarness()
        // A reserve that leaves 4 GiB for uploads, whatever this disk holds (other tests write
        // meanwhile: the announcements below are 1 GiB and more from the line either way).
        var status = statvfs()
        statvfs(harness.blobRoot, &status)
        let free = Double(UInt64(status.f_bavail) * UInt64(status.f_frsize)) / Double(1 << 30)
        let (coordinator, client) = try harness.startCoordinatorProcess(["--min-free-gib", String(max(0, free - 4))])
        defer { coordinator.stop() }
        let path = try harness.forge(seed: 52)
        let (contentHash, size) = try ContentHasher.ofFile(path)
        #expect(try await Uploader(client: client).upload(file: path, vm: "vdi-052", host: nil, tags: [:]).state == .stored)
        func announce(_ index: Int, mebibytes: UInt64) async -> FleetClient.Failure? {
            await CoordinatorTests.failure {
                _ = try await client.announce(UploadAnnouncement(contentHash: String(format: "%064x", index), size: mebibytes << 20, vm: "vdi-\(index)"))
            }
        }
        #expect(await announce(1, mebibytes: 3 << 10) == nil)
        let refused = await announce(2, mebibytes: 3 << 10)
        #expect(refused?.status == 507 && refused?.message.contains("may still send") == true, "\(String(describing: refused))")
        #expect(refused?.message.contains(harness.folder) == false)
        #expect(try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "vdi-053")).state == .known,
                "a known dump needs no room")
        // A reserve larger than any disk: no new session fits at all.
        let (full, fullClient) = try harness.startCoordinatorProcess(["--min-free-gib", "1000000"], name: "full")
        defer { full.stop() }
        let none = await CoordinatorTests.failure {
            _ = try await fullClient.announce(UploadAnnouncement(contentHash: String(format: "%064x", 3), size: 1 << 20, vm: "vdi-054"))
        }
        #expect(none?.status == 507, "\(String(describing: none))")
    }

    /// A dump sent from 250 VMs: its status carries the first 100 uploads and the count, and
    /// the rest come a page at a time; the web page shows one page.
    @Test func aDumpsUploadsComeAPageAtATime() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        let path = try harness.forge(seed: 53)
        let dumpId = try #require(try await Uploader(client: client).upload(file: path, vm: "vm-000", host: nil, tags: [:]).dumpId)
        let db = try PostgresConnection(harness.database)
        try db.execute("""
            INSERT INTO uploads (dump_id, vm_name, uploaded_by) SELECT $1, 'vm-' || lpad(n::text, 3, '0'), 'tester' FROM generate_series(1, 249) n
            """, [String(dumpId)])
        let dump = try await client.dump(dumpId)
        #expect(dump.uploads.count == 100 && dump.uploadCount == 250)
        var seen: [String] = []
        var after: Int64 = 0
        while true {
            let page: UploadPage = try await Self.get(client, "/v1/dumps/\(dumpId)/uploads?after=\(after)&limit=100")
            seen += page.uploads.map(\.vm)
            guard let next = page.next else { break }
            after = next
        }
        #expect(seen == (0..<250).map { String(format: "vm-%03d", $0) }, "every upload once, in order")
        let wrong = try RawHTTP.exchange(port: coordinator.port, "GET", "/v1/dumps/\(dumpId)/uploads?limit=5000", headers: ["Authorization": "Bearer \(FleetHarness.token)"])
        #expect(wrong.status == 400)
        let html = try RawHTTP.exchange(port: coordinator.port, "GET", "/ui/dumps/\(dumpId)", headers: ["Authorization": "Bearer \(FleetHarness.token)"])
        #expect(html.body.contains("250 in all") && html.body.components(separatedBy: "<tr><td>vm-").count - 1 == 100, "\(html.body.prefix(3000))")
    }

    /// Scraping /metrics reads nothing from the database: the queue gauges are a snapshot
    /// taken every --metrics-refresh, however many scrapers there are.
    @Test func metricsAreASnapshotNotAQueryPerScrape() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess(["--metrics-refresh", "1h"])
        defer { coordinator.stop() }
        let path = try harness.forge(seed: 54)
        _ = try await Uploader(client: client).upload(file: path, vm: "vdi-054", host: nil, tags: [:])
        let queued = try coordinator.metric("dumpfleet_jobs{state=\"queued\"}")
        #expect(queued == 0, "the snapshot was taken at start, before the upload")
        #expect(try await client.status().jobs["queued"] == 1, "the status endpoint is live")
        for _ in 0..<16 { _ = try coordinator.metric("dumpfleet_jobs{state=\"queued\"}") }
        #expect(try coordinator.metric("dumpfleet_jobs{state=\"queued\"}") == 0)
        #expect(try coordinator.metric("dumpfleet_queue_snapshot_time_seconds") > 0)
    }

    static func get<T: Decodable>(_ client: FleetClient, _ path: String) async throws -> T {
        var request = HTTPClientRequest(url: client.server + path)
        request.headers.add(name: "Authorization", value: "Bearer \(FleetHarness.token)")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 16 << 20)
        return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
    }
}
