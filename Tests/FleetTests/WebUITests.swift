import DumpForge
import Foundation
import Store
import TestSupport
import Testing

/// The web UI as a browser sees it: headless Chromium loads each page from a coordinator whose
/// database holds a labelled estate, and the test reads the rendered DOM.
@Suite struct WebUITests {
    /// Found on PATH, as scripts/setup looks for it (`command -v chromium`).
    static var chromium: String? { Tools.find(anyOf: ["chromium", "chromium-browser", "google-chrome"]) }

    /// The DOM Chromium renders for `path` (signing in with the token on the way). Headless
    /// Chromium now and then never finishes a load here, or, on a busy machine, dumps the DOM
    /// before the page arrived (an empty body); such a run is killed after 60 s or its output
    /// dropped, and the page tried again, up to four times.
    static func render(_ browser: String, _ base: String, _ path: String, signIn: Bool = true) throws -> String {
        let separator = path.contains("?") ? "&" : "?"
        let url = base + path + (signIn ? separator + "token=" + FleetHarness.token : "")
        for _ in 0..<4 {
            let folder = Fixtures.temporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            _ = FileManager.default.createFile(atPath: folder + "/dom.html", contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: browser)
            process.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                                 "--disable-component-update", "--disable-background-networking", "--disable-crash-reporter", "--disable-breakpad",
                                 "--timeout=45000", "--user-data-dir=\(folder)/profile", "--dump-dom", url]
            process.standardOutput = FileHandle(forWritingAtPath: folder + "/dom.html")
            process.standardError = FileHandle.nullDevice
            let finished = DispatchSemaphore(value: 0)
            process.terminationHandler = { _ in finished.signal() }
            try process.run()
            if finished.wait(timeout: .now() + 60) == .timedOut {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                continue
            }
            let dom = (try? String(contentsOfFile: folder + "/dom.html", encoding: .utf8)) ?? ""
            if dom.contains("<main>") { return dom }
        }
        return ""
    }

    @Test func pagesShowClustersCorrelationsReportsAndSearch() throws {
        guard let browser = Self.chromium else {
            #expect(!Tools.isCI, "Chromium is missing although scripts/setup installs it")
            print("note: Chromium is not installed (scripts/setup installs it); skipping the web UI check")
            return
        }
        let harness = try FleetHarness()
        var estate = Estate()
        estate.vms = 10
        estate.memoryGiB = 1
        let result = try EstateQuality(estate: estate, seed: 21).measure(database: harness.database)
        // The coordinator runs as its own process, as in production, on a port it picks.
        let (coordinator, _) = try harness.startCoordinatorProcess(tokens: [("ui", FleetHarness.token)])
        defer { coordinator.stop() }
        let base = coordinator.url
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
    }
}
