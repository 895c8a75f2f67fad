import BlobStore
import FleetAPI
import FleetClient
import Foundation
import Store
import Testing
import TestSupport

/// `PUT /v1/plain`, the way a Windows desktop with nothing installed uploads (curl.exe
/// --upload-file), spoken by the real curl against a coordinator process and a real PostgreSQL.
@Suite struct PlainUploadTests {
    /// Real curl, or nil with a note (a failure under CI=true, where scripts/setup installed it).
    static func curl() -> String? {
        guard let curl = Tools.find("curl") else {
            #expect(!Tools.isCI, "curl is missing although scripts/setup installs it")
            print("note: curl is not installed (scripts/setup installs it); skipping the plain-upload check")
            return nil
        }
        return curl
    }

    /// One curl upload: its HTTP status and body (`-w` appends the status on a line of its own).
    struct Answer {
        var status: Int
        var body: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
    }

    static func put(_ curl: String, _ file: String, _ url: String, token: String? = FleetHarness.token, _ arguments: [String] = []) throws -> Answer {
        let auth = token.map { ["-H", "Authorization: Bearer \($0)"] } ?? []
        let answer = try Tools.run(curl, ["-sS", "--max-time", "120", "-w", "\n%{http_code}", "--upload-file", file] + auth + arguments + [url])
        let lines = String(decoding: answer.output, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        return Answer(status: Int(lines.last ?? "") ?? 0, body: lines.dropLast().joined(separator: "\n"))
    }

    /// Polls `condition` every 50 ms, on this thread: a test that waits asynchronously can
    /// find the 2 cooperative threads of a 2-core machine held by other tests' blocking work.
    static func waitFor(timeout: Double, _ condition: () throws -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }

    static func blobFiles(_ harness: FleetHarness) -> [String] {
        (FileManager.default.enumerator(atPath: harness.blobRoot)?.compactMap { $0 as? String } ?? []).filter { $0.hasSuffix(".lz4") }
    }

    /// A full dump of a 4 GiB machine (forged, written sparsely) goes through curl while the
    /// coordinator's peak resident memory stays where it was: the body is hashed and compressed
    /// as it streams, never held.
    @Test func aFourGiBDumpStreamsThroughWithFlatMemory() throws {
        guard let curl = Self.curl() else { return }
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        let dump = try harness.forge(seed: 85, kind: .full, gibibytes: 4)
        let (contentHash, size) = try ContentHasher.ofFile(dump)
        #expect(size > 4 << 30 - 64 << 20, "\(size)")
        let atStart = coordinator.peakResidentBytes
        // A small dump first, so that what is measured is what the size adds, not the first
        // use of the pools, the encoder and the database connections.
        #expect(try Self.put(curl, try harness.forge(seed: 84), coordinator.url + "/v1/plain?vm=warm-up").status == 201)
        let before = coordinator.peakResidentBytes
        let started = Date()
        let answer = try Self.put(curl, dump, coordinator.url + "/v1/plain?vm=vdi-4gib")
        let seconds = Date().timeIntervalSince(started)
        let after = coordinator.peakResidentBytes
        print("4 GiB plain upload: \(size) bytes in \(String(format: "%.1f", seconds)) s (\(String(format: "%.0f", Double(size) / seconds / 1e6)) MB/s); "
              + "coordinator peak RSS (VmHWM) \(atStart >> 20) MiB at start, \(before >> 20) MiB before, \(after >> 20) MiB after")
        #expect(answer.status == 201 && answer.json["state"] as? String == "stored", "\(answer.status) \(answer.body)")
        #expect(after - before < 256 << 20, "peak RSS grew by \((after - before) >> 20) MiB")
        #expect(seconds < 60)
        #expect(try harness.count("SELECT count(*) FROM dumps WHERE content_hash = $1 AND size = $2", [contentHash, String(size)]) == 1,
                "the coordinator's hash is the session protocol's")
        let blob = try FileManager.default.attributesOfItem(atPath: harness.blobs.path(of: contentHash).path)[.size] as? NSNumber
        print("stored blob: \((blob?.uint64Value ?? 0) >> 20) MiB")
        #expect(try CoordinatorTests.leftovers(harness).isEmpty)
    }

    /// curl killed mid-body leaves no dump row, no blob and no temporary file.
    @Test func aCutConnectionLeavesNothing() throws {
        guard let curl = Self.curl() else { return }
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        let dump = try harness.forge(seed: 86, kind: .full)
        let upload = Process()
        upload.executableURL = URL(fileURLWithPath: curl)
        upload.arguments = ["-sS", "--limit-rate", "4M", "-H", "Authorization: Bearer \(FleetHarness.token)", "--upload-file", dump,
                            coordinator.url + "/v1/plain?vm=vdi-cut"]
        upload.standardOutput = FileHandle.nullDevice
        upload.standardError = FileHandle.nullDevice
        try upload.run()
        // Until part of the body is written: the temporary file exists.
        let started = Date()
        #expect(try Self.waitFor(timeout: 30) {
            try coordinator.metric("dumpfleet_upload_plain_bytes_total") >= Double(2 << 20) && !CoordinatorTests.leftovers(harness).isEmpty
        })
        let partial = try CoordinatorTests.leftovers(harness)
        print("the upload was under way after \(String(format: "%.1f", Date().timeIntervalSince(started))) s (curl running: \(upload.isRunning))")
        kill(upload.processIdentifier, SIGKILL)
        upload.waitUntilExit()
        #expect(try Self.waitFor(timeout: 10) { try CoordinatorTests.leftovers(harness).isEmpty })
        let written = try coordinator.metric("dumpfleet_upload_plain_bytes_total")
        print("cut after \(Int(written) >> 20) MiB written; temporary file while it ran: \(partial)")
        #expect(try CoordinatorTests.leftovers(harness).isEmpty)
        #expect(Self.blobFiles(harness).isEmpty)
        #expect(try harness.count("SELECT count(*) FROM dumps") == 0 && harness.count("SELECT count(*) FROM uploads") == 0
                && harness.count("SELECT count(*) FROM jobs") == 0)
        #expect(coordinator.service.output.contains("plain upload connection ended early"))
    }

    /// The same dump twice, and a dump sent both ways, is one dump; what a plain upload stores
    /// is analyzed from the same queue.
    @Test func theSameDumpTwiceIsOneDump() async throws {
        guard let curl = Self.curl() else { return }
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        let dump = try harness.forge(seed: 87)
        let first = try Self.put(curl, dump, coordinator.url + "/v1/plain?vm=vdi-a")
        // The second time from a pipe: curl sends it chunked, with no Content-Length.
        let piped = try Tools.run("/bin/sh", ["-c", #"cat "$1" | "$2" -sS -w '\n%{http_code}' -H "Authorization: Bearer $3" --upload-file - "$4""#, "sh",
                                              dump, curl, FleetHarness.token, coordinator.url + "/v1/plain?vm=vdi-b"])
        let lines = String(decoding: piped.output, as: UTF8.self).split(separator: "\n")
        let second = Answer(status: Int(lines.last ?? "") ?? 0, body: lines.dropLast().joined(separator: "\n"))
        #expect(first.status == 201 && first.json["state"] as? String == "stored", "\(first.body)")
        #expect(second.status == 200 && second.json["state"] as? String == "known", "\(second.body)")
        let dumpId = try #require(first.json["dumpId"] as? Int)
        #expect(second.json["dumpId"] as? Int == dumpId && second.json["jobId"] as? Int == first.json["jobId"] as? Int)
        #expect(try harness.count("SELECT count(*) FROM dumps") == 1 && harness.count("SELECT count(*) FROM uploads") == 2)
        #expect(Self.blobFiles(harness).count == 1)

        // Across the two ways in: the session protocol's upload of a plain upload's dump is
        // known, and so is a plain upload of a dump the session protocol stored.
        let again = try await Uploader(client: client).upload(file: dump, vm: "vdi-c", host: nil, tags: [:])
        #expect(again.state == .known && again.dumpId == Int64(dumpId))
        let other = try harness.forge(seed: 88)
        let viaSession = try await Uploader(client: client).upload(file: other, vm: "vdi-d", host: nil, tags: [:])
        let viaPlain = try Self.put(curl, other, coordinator.url + "/v1/plain?vm=vdi-e")
        #expect(viaPlain.status == 200 && viaPlain.json["state"] as? String == "known" && viaPlain.json["dumpId"] as? Int == viaSession.dumpId.map(Int.init),
                "\(viaPlain.body)")
        #expect(try harness.count("SELECT count(*) FROM dumps") == 2 && Self.blobFiles(harness).count == 2)

        let analyzed = try harness.runWorkers([harness.workerConfiguration()], timeout: 60) {
            try harness.count("SELECT count(*) FROM jobs WHERE state = 'done'") == 2
        }
        #expect(analyzed, "a worker analyzed what the plain uploads stored")
        #expect(try harness.count("SELECT count(*) FROM reports WHERE dump_id = $1", [String(dumpId)]) == 1)
    }

    /// VM, host, tags and file name from the query or from headers; refusals that say why.
    @Test func labelsFromQueryOrHeadersAndClearRefusals() throws {
        guard let curl = Self.curl() else { return }
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess(["--max-upload-gib", "1"])
        defer { coordinator.stop() }
        let plain = coordinator.url + "/v1/plain"

        let fromQuery = try Self.put(curl, try harness.forge(seed: 89), plain + "?vm=vdi%20finance%2001&host=kvm-1&tag=pool=finance&tag=case=4711&file=MEMORY.DMP")
        #expect(fromQuery.status == 201, "\(fromQuery.body)")
        // A URL ending in a slash: curl appends the file's name, which is recorded.
        let forged = try harness.forge(seed: 90)
        let fromHeaders = try Self.put(curl, forged, plain + "/", ["-H", "X-DumpFleet-VM: vdi-02", "-H", "X-DumpFleet-Host: kvm-2",
                                                                   "-H", "X-DumpFleet-Tags: pool=hr, site = x y", "-H", "Accept: text/plain"])
        #expect(fromHeaders.status == 201 && fromHeaders.body.hasPrefix("dump ") && fromHeaders.body.contains("stored and queued for analysis")
                && fromHeaders.body.split(separator: "\n").count == 1, "one line for a console: \(fromHeaders.body)")
        let uploads = try PostgresConnection(harness.database).execute("SELECT vm_name, host, tags::text, file_name, uploaded_by FROM uploads ORDER BY id").values
        #expect(uploads.count == 2)
        #expect(uploads.first == ["vdi finance 01", "kvm-1", #"{"case": "4711", "pool": "finance"}"#, "MEMORY.DMP", "tester"], "\(uploads)")
        #expect(uploads.last == ["vdi-02", "kvm-2", #"{"pool": "hr", "site": "x y"}"#, URL(fileURLWithPath: forged).lastPathComponent, "tester"], "\(uploads)")
        let known = try Self.put(curl, forged, plain + "?vm=vdi-03", ["-H", "Accept: text/plain"])
        #expect(known.status == 200 && known.body.contains("was stored already"), "\(known.body)")

        let text = harness.folder + "/notes.txt"
        try String(repeating: "not a dump at all\r\n", count: 4000).write(toFile: text, atomically: true, encoding: .utf8)
        let notADump = try Self.put(curl, text, plain + "?vm=vdi-04")
        #expect(notADump.status == 422 && (notADump.json["error"] as? String)?.contains("not a dump a worker can read: not a Windows crash dump") == true,
                "\(notADump.body)")
        let asText = try Self.put(curl, text, plain + "?vm=vdi-04", ["-H", "Accept: text/plain"])
        #expect(asText.status == 422 && asText.body.hasPrefix("error: the body is not a dump"), "\(asText.body)")
        let noVM = try Self.put(curl, forged, plain)
        #expect(noVM.status == 400 && noVM.body.contains("X-DumpFleet-VM"), "\(noVM.body)")
        let badName = try Self.put(curl, forged, plain + "?vm=vdi%E2%80%8B05")
        #expect(badName.status == 400 && badName.body.contains("U+200B"), "\(badName.body)")
        #expect(try Self.put(curl, forged, plain + "?vm=vdi-06", token: nil).status == 401)
        #expect(try Self.put(curl, forged, plain + "?vm=vdi-06", token: "not-a-token-of-this-coordinator").status == 401)
        // Past --max-upload-gib, refused on its Content-Length, before the body.
        let large = harness.folder + "/large.dmp"
        try FileManager.default.copyItem(atPath: forged, toPath: large)
        #expect(truncate(large, (1 << 30) + 1) == 0)
        let tooLarge = try Self.put(curl, large, plain + "?vm=vdi-07")
        #expect(tooLarge.status == 413 && tooLarge.body.contains("at most \(1 << 30)"), "\(tooLarge.body)")

        #expect(try harness.count("SELECT count(*) FROM dumps") == 2 && harness.count("SELECT count(*) FROM uploads") == 3)
        #expect(try Self.blobFiles(harness).count == 2 && CoordinatorTests.leftovers(harness).isEmpty)
        #expect(try coordinator.metric(#"dumpfleet_uploads_total{outcome="rejected"}"#) == 2, "the two bodies that are not dumps")
    }

    /// A disk down to its reserve is answered 507 before the body is sent.
    @Test func aFullDiskIsRefused() throws {
        guard let curl = Self.curl() else { return }
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess(["--min-free-gib", "1048576"])
        defer { coordinator.stop() }
        let full = try Self.put(curl, try harness.forge(seed: 91), coordinator.url + "/v1/plain?vm=vdi-08")
        #expect(full.status == 507 && full.body.contains("disk is nearly full"), "\(full.body)")
        #expect(try harness.count("SELECT count(*) FROM dumps") == 0 && CoordinatorTests.leftovers(harness).isEmpty)
    }
}
