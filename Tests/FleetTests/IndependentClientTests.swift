import Foundation
import Store
import Testing
import TestSupport

/// The upload protocol as deploy/API.md writes it, spoken by programs we did not write: curl for
/// HTTP, the `lz4` tool for the frame (and to unpack what the coordinator serves), Python's
/// hashlib for the content hash. The other upload tests drive our coordinator with our own
/// client, hasher and encoder, so a misreading of the protocol shared by both sides would pass
/// them all; it would not pass this one.
@Suite struct IndependentClientTests {
    /// The content hash as API.md defines it: SHA-256 over the SHA-256 digests of the 4 MiB
    /// blocks.
    static let contentHash = """
        import hashlib, sys
        digests = b""
        with open(sys.argv[1], "rb") as f:
            while block := f.read(4 << 20):
                digests += hashlib.sha256(block).digest()
        print(hashlib.sha256(digests).hexdigest())
        """

    @Test func curlLz4AndPythonUploadAsTheAPIReferenceSays() throws {
        guard let curl = Tools.find("curl"), let lz4 = Tools.find("lz4"), let python = Tools.find("python3") else {
            #expect(!Tools.isCI, "curl, lz4 or python3 is missing although scripts/setup installs them")
            print("note: curl, lz4 or python3 is not installed (scripts/setup installs them); skipping the independent-client check")
            return
        }
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        // A full dump of a 1 GiB machine: 256 hash blocks, most of them zeros.
        let dump = try harness.forge(seed: 81, kind: .full)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: dump)[.size] as? NSNumber).uint64Value
        let hash = String(decoding: try Tools.run(python, ["-c", Self.contentHash, dump]).output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(hash.count == 64)
        let frame = harness.folder + "/dump.lz4"
        #expect(try Tools.run("/bin/sh", ["-c", "\(lz4) -q -c \(dump) > \(frame)"]).status == 0)
        let frameBytes = try #require(FileManager.default.contents(atPath: frame))
        let half = frameBytes.count / 2
        try frameBytes.prefix(half).write(to: URL(fileURLWithPath: frame + ".1"))
        try frameBytes.dropFirst(half).write(to: URL(fileURLWithPath: frame + ".2"))

        func call(_ method: String, _ path: String, _ arguments: [String] = []) throws -> (status: Int, json: [String: Any]) {
            let answer = try Tools.run(curl, ["-sS", "-X", method, "-H", "Authorization: Bearer \(FleetHarness.token)", "-w", "\n%{http_code}"]
                                            + arguments + [coordinator.url + path])
            let text = String(decoding: answer.output, as: UTF8.self)
            let status = Int(text.split(separator: "\n").last ?? "") ?? 0
            let body = text.split(separator: "\n").dropLast().joined(separator: "\n")
            return (status, (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:])
        }
        let json = ["-H", "Content-Type: application/json", "--data"]
        let announcement = #"{"contentHash": "\#(hash)", "size": \#(size), "vm": "vdi-curl", "host": "kvm-1", "fileName": "MEMORY.DMP"}"#

        let opened = try call("POST", "/v1/uploads", json + [announcement])
        #expect(opened.status == 201 && opened.json["state"] as? String == "open" && opened.json["received"] as? Int == 0, "\(opened)")
        let session = try #require(opened.json["uploadId"] as? String)
        let binary = ["-H", "Content-Type: application/x-lz4"]
        let first = try call("PATCH", "/v1/uploads/\(session)", binary + ["-H", "Upload-Offset: 0", "--data-binary", "@\(frame).1"])
        #expect(first.status == 200 && first.json["received"] as? Int == half, "\(first)")
        // Resuming as API.md says: ask where the session stands, send the rest from there.
        let standing = try call("GET", "/v1/uploads/\(session)")
        #expect(standing.json["received"] as? Int == half)
        let wrong = try call("PATCH", "/v1/uploads/\(session)", binary + ["-H", "Upload-Offset: 7", "--data-binary", "@\(frame).2"])
        #expect(wrong.status == 409 && wrong.json["received"] as? Int == half, "\(wrong)")
        let rest = try call("PATCH", "/v1/uploads/\(session)", binary + ["-H", "Upload-Offset: \(half)", "--data-binary", "@\(frame).2"])
        #expect(rest.status == 200 && rest.json["received"] as? Int == frameBytes.count, "\(rest)")
        let stored = try call("POST", "/v1/uploads/\(session)/finish")
        #expect(stored.status == 200 && stored.json["state"] as? String == "stored", "\(stored)")
        let dumpId = try #require(stored.json["dumpId"] as? Int)

        // The same dump from another VM is known: no bytes move.
        let known = try call("POST", "/v1/uploads", json + [announcement.replacingOccurrences(of: "vdi-curl", with: "vdi-curl-2")])
        #expect(known.status == 200 && known.json["state"] as? String == "known" && known.json["dumpId"] as? Int == dumpId, "\(known)")
        // What a worker downloads unpacks, with the lz4 tool, to the very bytes uploaded.
        let blob = harness.folder + "/blob.lz4"
        #expect(try Tools.run(curl, ["-sS", "-f", "-o", blob, "-H", "Authorization: Bearer \(FleetHarness.token)", coordinator.url + "/v1/blobs/\(hash)"]).status == 0)
        #expect(try Tools.run("/bin/sh", ["-c", "\(lz4) -q -d -c \(blob) | cmp - \(dump)"]).status == 0, "the stored blob holds the dump")
        let shown = try call("GET", "/v1/dumps/\(dumpId)")
        #expect(shown.json["contentHash"] as? String == hash && shown.json["uploadCount"] as? Int == 2, "\(shown)")
    }
}
