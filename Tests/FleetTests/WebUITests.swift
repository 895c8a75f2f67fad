import DumpForge
import Foundation
import Store
import TestSupport
import Testing

/// The web UI as a browser sees it: headless Chromium loads each page from a coordinator whose
/// database holds a labelled estate, and the test reads the rendered DOM.
@Suite struct WebUITests {
    static var chromium: String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The DOM Chromium renders for `path` (signing in with the token on the way).
    static func render(_ browser: String, _ base: String, _ path: String, signIn: Bool = true) throws -> String {
        let separator = path.contains("?") ? "&" : "?"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: browser)
        process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--user-data-dir=\(NSTemporaryDirectory())chromium-\(getpid())-\(UInt32.random(in: 0...UInt32.max))",
                             "--dump-dom", base + path + (signIn ? separator + "token=" + FleetHarness.token : "")]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let dom = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: dom, as: UTF8.self)
    }

    @Test func pagesShowClustersCorrelationsReportsAndSearch() async throws {
        guard let browser = Self.chromium else {
            print("note: Chromium is not installed (scripts/setup installs it); skipping the web UI check")
            return
        }
        let harness = try FleetHarness()
        var estate = Estate()
        estate.vms = 10
        estate.memoryGiB = 1
        let result = try EstateQuality(estate: estate, seed: 21).measure(database: harness.database)
        _ = try await harness.startCoordinator()
        let base = harness.coordinator!.url
        let db = try PostgresConnection(harness.database)
        let timer = try #require(result.dumps.first { $0.cause.hasPrefix("VideoAccelerator") && !$0.report.evidence.isEmpty })
        let cluster = try #require(db.execute("SELECT cluster_id FROM cluster_members WHERE dump_id = $1", [String(timer.id)]).values[0][0])

        let list = try Self.render(browser, base, "/ui/clusters?sort=vms")
        #expect(list.contains("id=\"clusters\"") && list.contains("0x3B_c0000005_CORRUPTION_VideoAccelerator.exe"), "\(list.prefix(600))")
        #expect(list.contains("VMs ▾"), "sorted by VMs")

        let page = try Self.render(browser, base, "/ui/clusters/\(cluster)")
        #expect(page.contains("Over-represented in this cluster") && page.contains("videoaccelerato"))
        #expect(page.contains("<svg") && page.contains("id=\"timeline\""))
        #expect(page.contains(timer.report.failureBucketId) && page.contains("KiInsertTimerTable"), "the representative report")
        #expect(page.contains("id=\"vms\"") && page.contains("vdi-w10-"))

        let dump = try Self.render(browser, base, "/ui/dumps/\(timer.id)")
        #expect(dump.contains("FAILURE_BUCKET_ID: \(timer.report.failureBucketId)") && dump.contains("\\HDPServer\\VideoAccelerator.exe"))

        let vm = try #require(db.execute("SELECT vm_name FROM uploads WHERE dump_id = $1", [String(timer.id)]).values[0][0])
        let search = try Self.render(browser, base, "/ui/search?q=\(vm)")
        #expect(search.contains("/ui/dumps/\(timer.id)"), "search by VM")
        let byBucket = try Self.render(browser, base, "/ui/search?q=CORRUPTION")
        #expect(byBucket.contains("/ui/clusters/\(cluster)"), "search by bucket")

        let signedOut = try Self.render(browser, base, "/ui/clusters", signIn: false)
        #expect(signedOut.contains("Sign in") && !signedOut.contains("CORRUPTION"), "no token, no data")
        await harness.stop()
    }
}
