import Foundation
import Store
import Testing
import TestSupport

/// Who may call the coordinator and the web UI, and what the processes show of their secrets.
@Suite struct AuthEdgeTests {
    @Test func aTokenMustBeLongAndNotASample() throws {
        let harness = try FleetHarness()
        let base = ["coordinator", "--database", harness.database, "--port", "0", "--blobs", harness.blobRoot]
        let short = try ServiceProcess.run(base, environment: ["DUMPFLEET_TOKEN": "x"], log: harness.folder + "/short.log")
        #expect(short.status != 0 && short.output.contains("at least 16"), "\(short.output)")
        let sample = try ServiceProcess.run(base, environment: ["DUMPFLEET_TOKEN": "example-token-change-me-0123456789"], log: harness.folder + "/sample.log")
        #expect(sample.status != 0 && sample.output.contains("sample"), "\(sample.output)")
        try "uploader tooshort\n".write(toFile: harness.folder + "/tokens", atomically: true, encoding: .utf8)
        let file = try ServiceProcess.run(base + ["--tokens-file", harness.folder + "/tokens"], environment: ["DUMPFLEET_TOKEN": ""], log: harness.folder + "/file.log")
        #expect(file.status != 0 && file.output.contains("line 1") && file.output.contains("at least 16"), "\(file.output)")
    }

    @Test func theWebUIWantsABearerHeaderOrItsCookie() throws {
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        // Seven characters of anything before the token used to pass.
        for header in ["Xearer " + FleetHarness.token, "Basic  " + FleetHarness.token, FleetHarness.token] {
            let page = try RawHTTP.exchange(port: coordinator.port, "GET", "/ui/clusters", headers: ["Authorization": header])
            #expect(page.status == 303 && page.headers["location"] == "/ui/login", "\(header): \(page.status)")
        }
        let bearer = try RawHTTP.exchange(port: coordinator.port, "GET", "/ui/clusters", headers: ["Authorization": "Bearer " + FleetHarness.token])
        #expect(bearer.status == 200)
    }

    @Test func signingInFromAnotherSiteIsRefused() throws {
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        let form = "token=" + FleetHarness.token
        let typeForm = ["Content-Type": "application/x-www-form-urlencoded"]
        for foreign in [["Origin": "http://evil.example"], ["Sec-Fetch-Site": "cross-site"], ["Origin": "null"]] {
            let login = try RawHTTP.exchange(port: coordinator.port, "POST", "/ui/login", headers: typeForm.merging(foreign) { $1 }, body: form)
            #expect(login.status == 403 && login.headers["set-cookie"] == nil, "\(foreign): \(login.status)")
        }
        let linked = try RawHTTP.exchange(port: coordinator.port, "GET", "/ui/clusters?token=\(FleetHarness.token)", headers: ["Sec-Fetch-Site": "cross-site"])
        #expect(linked.status == 303 && linked.headers["location"] == "/ui/login" && linked.headers["set-cookie"] == nil)
        let own = try RawHTTP.exchange(port: coordinator.port, "POST", "/ui/login",
                                       headers: typeForm.merging(["Origin": "http://127.0.0.1:\(coordinator.port)", "Sec-Fetch-Site": "same-origin"]) { $1 }, body: form)
        #expect(own.status == 303 && own.headers["set-cookie"]?.contains("dumpfleet_token=") == true, "\(own)")
        let script = try RawHTTP.exchange(port: coordinator.port, "POST", "/ui/login", headers: typeForm, body: form)
        #expect(script.status == 303, "a program (no browser headers) signs in as before")
    }

    @Test func signInRedirectsStayOnThisServer() throws {
        let harness = try FleetHarness()
        let (coordinator, _) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }
        for (path, location) in [("//ui/clusters?token=\(FleetHarness.token)", "/ui/clusters"),
                                 ("//ui/clusters?sort=vms&token=\(FleetHarness.token)", "/ui/clusters?sort=vms"),
                                 ("/ui/clusters?token=\(FleetHarness.token)", "/ui/clusters")] {
            let answer = try RawHTTP.exchange(port: coordinator.port, "GET", path)
            #expect(answer.status == 303 && answer.headers["location"] == location, "\(path): \(answer.headers)")
        }
    }

    @Test func workersServeMetricsOnLoopbackUnlessTold() throws {
        let harness = try FleetHarness()
        for (host, expected) in [(nil, "0100007F"), ("0.0.0.0", "00000000")] as [(String?, String)] {
            let port = Tools.freePort()
            let worker = try ServiceProcess(["worker", "--database", harness.database, "--blobs", harness.blobRoot, "--scratch", harness.folder + "/scratch",
                                             "--metrics-port", String(port)] + (host.map { ["--metrics-host", $0] } ?? []),
                                            log: harness.folder + "/worker-\(port).log")
            defer { worker.killAndWait() }
            let deadline = Date().addingTimeInterval(20)
            var bound: String?
            while bound == nil && Date() < deadline {
                bound = Self.listeningAddress(port: port)
                if bound == nil { Thread.sleep(forTimeInterval: 0.1) }
            }
            #expect(bound == expected, "--metrics-host \(host ?? "(default)"): listening on \(bound ?? "nothing") \(worker.output)")
        }
    }

    @Test func helpShowsNoSecretFromTheEnvironment() throws {
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let environment = ["DUMPFLEET_TOKEN": "Tok3n-secret-0123456789", "DUMPFLEET_DATABASE": "postgresql://fleet:Passw0rd-secret@db/fleet"]
        for command in ["upload", "worker", "status", "migrate", "coordinator", "requeue", "show"] {
            let help = try ServiceProcess.run([command, "--help"], environment: environment, log: "\(folder)/\(command).log")
            #expect(help.status == 0 && help.output.contains("USAGE"), "\(command): \(help.output)")
            #expect(!help.output.contains("Tok3n-secret") && !help.output.contains("Passw0rd-secret"), "\(command) --help shows a secret: \(help.output)")
        }
    }

    /// The local address (hex, as /proc/net/tcp writes it) of a socket listening on `port`.
    static func listeningAddress(port: Int) -> String? {
        // Read to the end: /proc files report a size of 0, and a reader that trusts the size
        // stops after the first page, which holds only the first few dozen sockets.
        let table = FileHandle(forReadingAtPath: "/proc/net/tcp").map { String(decoding: $0.readDataToEndOfFile(), as: UTF8.self) } ?? ""
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 3, fields[3] == "0A" else { continue }
            let local = fields[1].split(separator: ":")
            if local.count == 2, Int(local[1], radix: 16) == port { return String(local[0]) }
        }
        return nil
    }
}
