@testable import FleetClient
import AsyncHTTPClient
import BlobStore
import FleetAPI
import Foundation
import NIOCore
import Store
import Testing
import TestSupport

/// The coordinator over real HTTP against a real PostgreSQL: uploads (new, known, concurrent,
/// resumed) and every way an upload is refused, each leaving nothing behind.
@Suite struct CoordinatorTests {
    @Test func uploadStoresTheDumpQueuesOneJobAndServesTheBlob() async throws {
        let harness = try FleetHarness()
        let client = try await harness.startCoordinator()
        let path = try harness.forge(seed: 1)
        let stored = try await Uploader(client: client).upload(file: path, vm: "vdi-001", host: "kvm-1", tags: ["pool": "finance"])
        #expect(stored.state == .stored)
        let dumpId = try #require(stored.dumpId)
        let dump = try await client.dump(dumpId)
        let (contentHash, size) = try ContentHasher.ofFile(path)
        #expect(dump.contentHash == contentHash && dump.size == size)
        #expect(dump.uploads.map(\.vm) == ["vdi-001"] && dump.uploads.first?.host == "kvm-1" && dump.uploads.first?.tags == ["pool": "finance"])
        #expect(dump.uploads.first?.uploadedBy == "tester")
        #expect(dump.jobs.count == 1 && dump.jobs.first?.state == "queued")

        // The blob a worker downloads is the LZ4 frame of exactly these bytes.
        let blob = harness.folder + "/downloaded.lz4"
        _ = try await client.download(blob: contentHash, to: blob)
        #expect(try BlobStore.extract(blobAt: blob, contentHash: contentHash, to: harness.folder + "/extracted.dmp") == size)
        #expect(FileManager.default.contents(atPath: harness.folder + "/extracted.dmp") == FileManager.default.contents(atPath: path))

        let status = try await client.status()
        #expect(status.dumps == 1 && status.uploads == 1 && status.jobs["queued"] == 1 && status.openUploadSessions == 0)
        await harness.stop()
    }

    @Test func aKnownDumpIsRecordedAgainWithoutItsBytes() async throws {
        let harness = try FleetHarness()
        let client = try await harness.startCoordinator()
        let path = try harness.forge(seed: 2)
        let first = try await Uploader(client: client).upload(file: path, vm: "vdi-001", host: nil, tags: [:])
        let second = try await Uploader(client: client).upload(file: path, vm: "vdi-002", host: nil, tags: [:])
        #expect(second.state == .known && second.dumpId == first.dumpId && second.jobId == first.jobId)
        let dump = try await client.dump(try #require(first.dumpId))
        #expect(dump.uploads.map(\.vm) == ["vdi-001", "vdi-002"] && dump.jobs.count == 1)
        await harness.stop()
    }

    @Test func concurrentUploadsOfOneDumpGiveOneDumpOneJobTwoUploads() async throws {
        let harness = try FleetHarness()
        let client = try await harness.startCoordinator()
        let path = try harness.forge(seed: 3, kind: .bitmapKernel)
        async let a = Uploader(client: client).upload(file: path, vm: "vdi-a", host: nil, tags: [:])
        async let b = Uploader(client: client).upload(file: path, vm: "vdi-b", host: nil, tags: [:])
        let (left, right) = try await (a, b)
        #expect(left.dumpId == right.dumpId && left.jobId == right.jobId)
        #expect(try harness.count("SELECT count(*) FROM dumps") == 1)
        #expect(try harness.count("SELECT count(*) FROM jobs") == 1)
        #expect(try harness.count("SELECT count(*) FROM uploads") == 2)
        #expect(try Self.leftovers(harness).isEmpty)
        await harness.stop()
    }

    @Test func anInterruptedUploadResumesWithoutSendingBytesTwice() async throws {
        let harness = try FleetHarness()
        let client = try await harness.startCoordinator()
        let path = try harness.forge(seed: 4, kind: .bitmapKernel)
        let (contentHash, size) = try ContentHasher.ofFile(path)
        let frame = try await Frames.of(path)
        let announcement = UploadAnnouncement(contentHash: contentHash, size: size, vm: "vdi-004")
        let opened = try await client.announce(announcement)
        let session = try #require(opened.uploadId)
        // The first connection dies after 40% of the frame.
        let cut = frame.count * 2 / 5
        let partial = try await client.append(session: session, offset: 0, body: Frames.stream(frame[0..<cut]))
        #expect(partial.received == UInt64(cut))
        // Announcing again finds the session where it stopped; the uploader sends only the rest.
        let again = try await client.announce(announcement)
        #expect(again.uploadId == session && again.received == UInt64(cut))
        let stored = try await Uploader(client: client).upload(file: path, vm: "vdi-004", host: nil, tags: [:])
        #expect(stored.state == .stored)
        let metrics = try await Self.get(harness, "/metrics", token: nil).body
        #expect(metrics.contains("dumpfleet_upload_compressed_bytes_total \(frame.count)"), "every compressed byte crossed the network once")
        // A PATCH at the wrong offset is told where the session stands.
        let other = try await client.announce(UploadAnnouncement(contentHash: String(repeating: "ab", count: 32), size: 100, vm: "vdi-x"))
        await #expect(throws: FleetClient.Failure.self) {
            _ = try await client.append(session: other.uploadId!, offset: 7, body: Frames.stream([1, 2, 3]))
        }
        await harness.stop()
    }

    @Test func badUploadsAreRefusedAndLeaveNothingBehind() async throws {
        let harness = try FleetHarness()
        let client = try await harness.startCoordinator(maxUploadBytes: 64 << 20)
        let path = try harness.forge(seed: 5)
        let (contentHash, size) = try ContentHasher.ofFile(path)
        let frame = try await Frames.of(path)

        // Bytes that do not hash to the announced SHA-256.
        let wrong = String(contentHash.reversed())
        let session = try #require(try await client.announce(UploadAnnouncement(contentHash: wrong, size: size, vm: "vdi-005")).uploadId)
        _ = try await client.append(session: session, offset: 0, body: Frames.stream(frame[...]))
        let mismatch = await Self.failure { _ = try await client.finish(session: session) }
        #expect(mismatch?.status == 422 && mismatch?.message.contains("hash mismatch") == true)
        let gone = await Self.failure { _ = try await client.session(session) }
        #expect(gone?.status == 404, "a rejected session is closed")

        // Too large: announced, and streamed beyond what the announcement allows.
        let big = await Self.failure { _ = try await client.announce(UploadAnnouncement(contentHash: contentHash, size: 65 << 20, vm: "vdi-005")) }
        #expect(big?.status == 413 && big?.message.contains("at most") == true)
        let small = try #require(try await client.announce(UploadAnnouncement(contentHash: contentHash, size: 10, vm: "vdi-006")).uploadId)
        let overflow = await Self.failure { _ = try await client.append(session: small, offset: 0, body: Frames.stream(frame[...])) }
        #expect(overflow?.status == 413 && overflow?.message.contains("more than the 10 bytes") == true)
        // Bytes that are not an LZ4 frame are refused as they arrive.
        let garbage = try #require(try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "vdi-008")).uploadId)
        let notLZ4 = await Self.failure { _ = try await client.append(session: garbage, offset: 0, body: Frames.stream([UInt8](repeating: 7, count: 1 << 20)[...])) }
        #expect(notLZ4?.status == 422 && notLZ4?.message.contains("LZ4") == true)

        // Missing and wrong tokens.
        #expect(try await Self.get(harness, "/v1/status", token: nil).status == 401)
        #expect(try await Self.get(harness, "/v1/status", token: "not-the-token-at-all").status == 401)
        let stranger = FleetClient(server: client.server, token: "wrong-token-0123456789")
        let refused = await Self.failure { _ = try await Uploader(client: stranger).upload(file: path, vm: "vdi-007", host: nil, tags: [:]) }
        #expect(refused?.status == 401)

        // Hostile names: never paths.
        for hostile in ["/v1/blobs/..%2F..%2F..%2Fetc%2Fpasswd", "/v1/blobs/" + String(repeating: "A", count: 64), "/v1/uploads/..%2F..%2Fx",
                        "/v1/dumps/1;DROP%20TABLE%20dumps", "/v1/jobs/-1"] {
            #expect(try await Self.get(harness, hostile, token: FleetHarness.token).status == 400, "\(hostile)")
        }
        let traversal = await Self.failure { _ = try await client.announce(UploadAnnouncement(contentHash: "../../../../etc/passwd", size: 10, vm: "x")) }
        #expect(traversal?.status == 400)
        let control = await Self.failure { _ = try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "vm\u{0}\n")) }
        #expect(control?.status == 400)

        let leftovers = try Self.leftovers(harness)
        #expect(leftovers.isEmpty, "no partial blobs or incoming files: \(leftovers)")
        #expect(try harness.count("SELECT count(*) FROM dumps") == 0)
        #expect(try harness.count("SELECT count(*) FROM uploads") == 0)
        await harness.stop()
    }

    @Test func healthAndMetricsNeedNoToken() async throws {
        let harness = try FleetHarness()
        _ = try await harness.startCoordinator()
        let health = try await Self.get(harness, "/healthz", token: nil)
        #expect(health.status == 200 && health.body.contains(#""database":"ok""#) && health.body.contains("\"schemaVersion\":\(Migrations.all.last!.version)"))
        let metrics = try await Self.get(harness, "/metrics", token: nil)
        #expect(metrics.status == 200 && metrics.body.contains("dumpfleet_uploads_total{outcome=\"stored\"}") && metrics.body.contains("dumpfleet_jobs{state=\"queued\"}"))
        await harness.stop()
    }

    // MARK: helpers

    /// Files in the blob folder other than stored blobs (partial uploads, temporaries).
    static func leftovers(_ harness: FleetHarness) throws -> [String] {
        let files = FileManager.default.enumerator(atPath: harness.blobRoot)?.compactMap { $0 as? String } ?? []
        return files.filter { $0.hasSuffix(".part") || $0.hasSuffix(".partial") }
    }

    static func failure(_ body: () async throws -> Void) async -> FleetClient.Failure? {
        do {
            try await body()
            return nil
        } catch {
            return error as? FleetClient.Failure
        }
    }

    static func get(_ harness: FleetHarness, _ path: String, token: String?) async throws -> (status: Int, body: String) {
        var request = HTTPClientRequest(url: harness.coordinator!.url + path)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
    }
}
