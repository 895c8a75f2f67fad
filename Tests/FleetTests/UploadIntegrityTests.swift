import BlobStore
import FleetAPI
import FleetClient
import Foundation
import Store
import Testing
import TestSupport

/// Uploads against a coordinator process when things go wrong on the server's side: a second
/// writer for one session, a finish whose database write fails, a stored blob that rots.
@Suite struct UploadIntegrityTests {
    /// A session id in upper case is the same session: it cannot open a second writer, and
    /// once stored the blob is never written again.
    @Test func anUpperCaseSessionIdIsTheSameSessionAndAStoredBlobIsNeverWrittenAgain() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        let path = try harness.forge(seed: 31, kind: .bitmapKernel)
        let (contentHash, size) = try ContentHasher.ofFile(path)
        let frame = try await Frames.of(path)
        let session = try #require(try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "vdi-031")).uploadId)
        let upper = session.uppercased()
        #expect(upper != session)

        // A slow PATCH holds the session with half the frame sent.
        let half = frame.count / 2
        let slow = try RawConnection(port: coordinator.port)
        slow.send("PATCH /v1/uploads/\(session) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(FleetHarness.token)\r\n"
                  + "Upload-Offset: 0\r\nContent-Length: \(frame.count)\r\n\r\n")
        slow.send(Array(frame[0..<half]))
        try await Self.waitUntil { try await client.session(upper).received == UInt64(half) }

        let second = await CoordinatorTests.failure { _ = try await client.append(session: upper, offset: UInt64(half), body: Frames.stream(frame[half...])) }
        #expect(second?.status == 409 && second?.message.contains("another connection") == true, "\(String(describing: second))")
        let early = await CoordinatorTests.failure { _ = try await client.finish(session: upper) }
        #expect(early?.status == 409, "finish waits for the writer: \(String(describing: early))")

        // The slow client goes away; the session is free, and the rest arrives under the other spelling.
        slow.close()
        try await Self.waitUntil {
            (try? await client.append(session: upper, offset: UInt64(half), body: Frames.stream(frame[half...])))?.received == UInt64(frame.count)
        }
        let stored = try await client.finish(session: upper)
        #expect(stored.state == .stored && stored.uploadId == session)

        // A PATCH on the finished session, in either case, finds no session; the blob stays as stored.
        let blob = try harness.blobs.path(of: contentHash).path
        let storedSize = try FileManager.default.attributesOfItem(atPath: blob)[.size] as? NSNumber
        for id in [session, upper] {
            let late = await CoordinatorTests.failure { _ = try await client.append(session: id, offset: UInt64(frame.count), body: Frames.stream([1, 2, 3])) }
            #expect(late?.status == 404)
        }
        #expect(try FileManager.default.attributesOfItem(atPath: blob)[.size] as? NSNumber == storedSize)
        #expect(try BlobStore.extract(blobAt: blob, contentHash: contentHash, to: harness.folder + "/check.dmp") == size)
    }

    /// When the transaction that records a finished upload fails, the upload is not lost: the
    /// session stays open and a second finish records it.
    @Test func aFinishWhoseRecordFailsCanBeRepeated() async throws {
        let harness = try FleetHarness()
        let db = try PostgresConnection(harness.database)
        try db.executeScript("""
            CREATE TABLE refuse_uploads (reason text);
            CREATE FUNCTION refuse_upload() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF EXISTS (SELECT 1 FROM refuse_uploads) THEN RAISE EXCEPTION 'the test refuses to record this upload'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_upload BEFORE INSERT ON uploads FOR EACH ROW EXECUTE FUNCTION refuse_upload();
            INSERT INTO refuse_uploads VALUES ('on');
            """)
        let (coordinator, client) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        let path = try harness.forge(seed: 32)
        let (contentHash, size) = try ContentHasher.ofFile(path)
        let frame = try await Frames.of(path)
        let session = try #require(try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "vdi-032")).uploadId)
        _ = try await client.append(session: session, offset: 0, body: Frames.stream(frame[...]))

        let failed = await CoordinatorTests.failure { _ = try await client.finish(session: session) }
        #expect(failed?.status == 500 && failed?.message.contains("reference") == true, "\(String(describing: failed))")
        #expect(failed?.message.contains(harness.folder) == false, "no server path in the answer")
        #expect(try harness.count("SELECT count(*) FROM dumps") == 0)
        let open = try await client.session(session)
        #expect(open.state == .open, "the session stays open: the upload is resumable")

        // The client starts over, as `dumpfleet upload` run again does: the session says it
        // holds the whole frame, so nothing is sent twice, and the finish is repeated.
        try db.execute("DELETE FROM refuse_uploads")
        let stored = try await Uploader(client: client).upload(file: path, vm: "vdi-032", host: nil, tags: [:])
        #expect(stored.state == .stored && stored.uploadId == session && stored.dumpId != nil && stored.jobId != nil)
        #expect(try coordinator.metric("dumpfleet_upload_compressed_bytes_total") == Double(frame.count))
        #expect(try harness.count("SELECT count(*) FROM dumps") == 1 && harness.count("SELECT count(*) FROM uploads") == 1)
        #expect(try BlobStore.extract(blobAt: harness.blobs.path(of: contentHash).path, contentHash: contentHash, to: harness.folder + "/check.dmp") == size)
        #expect(try CoordinatorTests.leftovers(harness).isEmpty)
        #expect(coordinator.service.output.contains("the test refuses to record this upload"), "the log has the reason")
    }

    /// A stored blob that rots fails its job once (not five times); the dump is no longer
    /// "known", so the next upload of it sends the bytes, replaces the blob (the bad one is
    /// kept in quarantine) and the job runs again.
    @Test func aDamagedBlobIsQuarantinedAndReplacedByTheNextUpload() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        let path = try harness.forge(seed: 33)
        let first = try await Uploader(client: client).upload(file: path, vm: "vdi-033", host: nil, tags: [:])
        let dumpId = try #require(first.dumpId)
        let blob = try harness.blobs.path(of: try ContentHasher.ofFile(path).hash).path
        var bytes = try #require(FileManager.default.contents(atPath: blob))
        bytes[bytes.count / 2] ^= 0x55
        try bytes.write(to: URL(fileURLWithPath: blob))

        let failed = try harness.runWorkers([harness.workerConfiguration()], timeout: 60) {
            try harness.count("SELECT count(*) FROM jobs WHERE state = 'failed'") == 1
        }
        #expect(failed)
        let broken = try await client.dump(dumpId)
        #expect(broken.jobs.first?.attempt == 1 && broken.jobs.first?.lastError?.contains("damaged") == true, "\(broken.jobs)")
        #expect(broken.blobError != nil)
        let served = try RawHTTP.exchange(port: coordinator.port, "GET", "/v1/blobs/\(broken.contentHash)", headers: ["Authorization": "Bearer \(FleetHarness.token)"])
        #expect(served.status == 410, "a copy found damaged is not served to workers: \(served.status)")

        let again = try await Uploader(client: client).upload(file: path, vm: "vdi-034", host: nil, tags: [:])
        #expect(again.state == .stored && again.dumpId == dumpId, "the bytes were taken again, not answered \"known\"")
        let quarantined = try FileManager.default.contentsOfDirectory(atPath: harness.blobRoot + "/quarantine")
        let contentHash = try ContentHasher.ofFile(path).hash
        #expect(quarantined.count == 1 && quarantined[0].hasPrefix(contentHash), "\(quarantined)")
        let mended = try await client.dump(dumpId)
        #expect(mended.blobError == nil && mended.jobs.first?.state == "queued", "\(mended)")

        let done = try harness.runWorkers([harness.workerConfiguration()], timeout: 60) {
            try harness.count("SELECT count(*) FROM jobs WHERE state = 'done'") == 1
        }
        #expect(done)
        #expect(try harness.count("SELECT count(*) FROM reports WHERE dump_id = $1", [String(dumpId)]) == 1)
    }

    static func waitUntil(timeout: Double = 30, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("a condition did not come true within \(timeout) s")
    }
}
