import BlobStore
import FleetAPI
import FleetClient
import Foundation
import Store
import Testing
import TestSupport

/// Input at the edges, against a coordinator process: what it refuses with a 4xx that says
/// why (not a 500 with PostgreSQL's text), and what it keeps as it was given.
@Suite struct InputEdgeTests {
    @Test func datesAreCheckedBeforeTheDatabaseSeesThem() async throws {
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        let fullWidth = "２０２４-０１-０１".addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        for (since, status) in [("2024-13-45", 400), (fullWidth, 400), ("2023-02-29", 400), ("2024-1-01", 400), ("2024-02-29", 200), ("2026-12-31", 200)] {
            let answer = try RawHTTP.exchange(port: coordinator.port, "GET", "/v1/clusters?since=\(since)", headers: ["Authorization": "Bearer \(FleetHarness.token)"])
            #expect(answer.status == status, "since=\(since): \(answer.status) \(answer.body)")
            #expect(!answer.body.contains("SQLSTATE") && !answer.body.contains("internal error"))
        }
    }

    @Test func namesAreBoundedInBytesAndShowAsThemselves() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        var index = 0
        func announce(vm: String = "vdi-01", host: String? = nil, tags: [String: String] = [:]) async -> FleetClient.Failure? {
            index += 1
            return await CoordinatorTests.failure {
                _ = try await client.announce(UploadAnnouncement(contentHash: String(format: "%064x", index), size: 100, vm: vm, host: host, tags: tags))
            }
        }
        let long = await announce(vm: String(repeating: "v", count: 10_000))
        #expect(long?.status == 400 && long?.message.contains("bytes") == true, "\(String(describing: long))")
        #expect(await announce(vm: String(repeating: "é", count: 127)) == nil, "254 bytes of UTF-8")
        #expect(await announce(vm: String(repeating: "é", count: 128))?.status == 400, "256 bytes of UTF-8, though 128 characters")
        for (hidden, code) in [("vdi\u{200B}01", "200B"), ("vdi-\u{202E}10", "202E"), ("vdi\u{2066}x", "2066"), ("vdi\u{FEFF}", "FEFF")] {
            let refused = await announce(vm: hidden)
            #expect(refused?.status == 400 && refused?.message.contains("U+\(code)") == true, "\(String(describing: refused))")
        }
        #expect(await announce(host: "kvm\u{2028}12")?.status == 400)
        #expect(await announce(tags: ["pool\u{200D}": "x"])?.status == 400)
        #expect(await announce(vm: " vdi-01")?.status == 400)
        #expect(await announce(vm: "vdi finance 02", host: "kvm 7", tags: ["pool": "finance west"]) == nil, "inner spaces are fine")
        #expect(try harness.count("SELECT count(*) FROM upload_sessions") == 2)
    }

    @Test func reannouncingTakesNewTagsAndRefusesAnotherSize() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        let path = try harness.forge(seed: 71)
        let (contentHash, size) = try ContentHasher.ofFile(path)
        let first = try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "vdi-071", host: "kvm-1",
                                                                 tags: ["pool": "a"], fileName: "MEMORY.DMP"))
        let resized = await CoordinatorTests.failure { _ = try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size + 1, vm: "vdi-071", host: "kvm-1")) }
        #expect(resized?.status == 409 && resized?.message.contains("announced \(size) bytes") == true, "\(String(describing: resized))")
        let again = try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: "vdi-071", host: "kvm-1",
                                                                 tags: ["pool": "b", "case": "4711"], fileName: "MEMORY-2.DMP"))
        #expect(again.uploadId == first.uploadId)
        let frame = try await Frames.of(path)
        _ = try await client.append(session: try #require(again.uploadId), offset: 0, body: Frames.stream(frame[...]))
        let stored = try await client.finish(session: try #require(again.uploadId))
        let dump = try await client.dump(try #require(stored.dumpId))
        #expect(dump.uploads.first?.tags == ["pool": "b", "case": "4711"], "the tags announced last")
        #expect(try harness.count("SELECT count(*) FROM uploads WHERE file_name = 'MEMORY-2.DMP'") == 1)
        let known = await CoordinatorTests.failure { _ = try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size * 2, vm: "vdi-072")) }
        #expect(known?.status == 409 && known?.message.contains("has this content hash and \(size) bytes") == true, "\(String(describing: known))")
    }

    @Test func tagsMayBeLeftOutAndAnEmptyFinishSaysSoWithoutAPath() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        let body = #"{"contentHash": "\#(String(repeating: "c", count: 64))", "size": 4096, "vm": "vdi-073"}"#
        let announced = try RawHTTP.exchange(port: coordinator.port, "POST", "/v1/uploads", headers: ["Authorization": "Bearer \(FleetHarness.token)",
                                                                                                       "Content-Type": "application/json"], body: body)
        #expect(announced.status == 201, "\(announced)")
        let session = try #require(try JSONDecoder().decode(UploadStatus.self, from: Data(announced.body.utf8)).uploadId)
        let empty = await CoordinatorTests.failure { _ = try await client.finish(session: session) }
        #expect(empty?.status == 409 && empty?.message.contains("no bytes") == true && empty?.received == 0, "\(String(describing: empty))")
        #expect(empty?.message.contains(harness.folder) == false && empty?.message.contains("/") == false, "no server path: \(String(describing: empty))")
        #expect(try await client.session(session).state == .open, "still open: the client may send the bytes now")
    }

    /// VM names with spaces stay whole in a cluster's members (they were split at the spaces).
    @Test func namesWithSpacesStayWholeInClusters() async throws {
        let harness = try FleetHarness()
        let (coordinator, client) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        for seed in [74, 75] as [UInt64] {
            _ = try await Uploader(client: client).upload(file: try harness.forge(seed: seed), vm: "vdi finance 02", host: "kvm 7", tags: [:])
        }
        let analyzed = try harness.runWorkers([harness.workerConfiguration()], timeout: 60) {
            try harness.count("SELECT count(*) FROM cluster_members") == 2
        }
        #expect(analyzed)
        let clusters = try await client.clusters(since: nil)
        let cluster = try await client.cluster(try #require(clusters.first?.id))
        #expect(cluster.summary.vms == 1 && cluster.summary.hosts == 1)
        #expect(cluster.members.allSatisfy { $0.vms == ["vdi finance 02"] }, "\(cluster.members)")
        #expect(cluster.summary.buckets.allSatisfy { !$0.isEmpty && !$0.contains("\"") }, "\(cluster.summary.buckets)")
    }
}
