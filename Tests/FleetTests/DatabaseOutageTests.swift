import AsyncHTTPClient
import FleetClient
import Foundation
import Store
import Testing
import TestSupport

/// A coordinator and a worker process on a PostgreSQL server of their own, which restarts and
/// then goes away, while the database's password sits in their connection string.
@Suite struct DatabaseOutageTests {
    @Test func aRestartCostsNoRequestAnErrorAndAnOutageShowsNoSecret() async throws {
        let server = EmbeddedPostgres()
        try server.start()
        defer { server.stop() }
        try Migrations.apply(PostgresConnection(server.connectionString))
        // Trust authentication ignores the password, but libpq carries it in the connection
        // string like any other, and it must show nowhere.
        let secret = "Pa55-\(UInt64.random(in: 1...UInt64.max))"
        let harness = try FleetHarness(database: server.connectionString + " password=\(secret)")
        let (coordinator, client) = try harness.startCoordinatorProcess()
        defer { coordinator.stop() }

        // Every pooled connection in use once, so that all of them are idle when the server restarts.
        try await Self.statusRequests(client, count: 16)
        try server.restart()
        let afterRestart = try await Self.statusRequests(client, count: 16)
        #expect(afterRestart.allSatisfy { $0 == 200 }, "each stale pooled connection is replaced, not answered with 500: \(afterRestart)")

        // The server goes away for good.
        server.stop()
        let health = try RawHTTP.exchange(port: coordinator.port, "GET", "/healthz")
        #expect(health.status == 503 && health.body.contains(#""database":"unavailable""#), "\(health.body)")
        let status = try RawHTTP.exchange(port: coordinator.port, "GET", "/v1/status", headers: ["Authorization": "Bearer \(FleetHarness.token)"])
        #expect(status.status == 503 && status.body.contains("database unavailable") && status.headers["retry-after"] != nil, "\(status)")
        let worker = try workerProcess(harness, name: "worker")
        let migrate = try ServiceProcess.run(["migrate", "--database", harness.database], log: harness.folder + "/migrate.log")
        #expect(worker.waitFor("cannot claim jobs", timeout: 30), "\(worker.output)")
        worker.killAndWait()
        #expect(migrate.status != 0 && migrate.output.contains("cannot connect to PostgreSQL"), "\(migrate.output)")

        #expect(coordinator.service.output.contains("the database does not answer"), "the log has the details")
        for (what, text) in [("/healthz", health.body), ("/v1/status", status.body), ("the coordinator's log", coordinator.service.output),
                             ("the worker's log", worker.output), ("dumpfleet migrate", migrate.output)] {
            #expect(!text.contains(secret), "\(what) shows the password: \(text.suffix(2000))")
            #expect(!text.contains("password="), "\(what) shows a connection string")
        }
        for (what, text) in [("/healthz", health.body), ("/v1/status", status.body)] {
            #expect(!text.contains("host="), "\(what) shows where the database is: \(text)")
        }
        for (what, text) in [("/healthz", health.body), ("/v1/status", status.body), ("the coordinator's log", coordinator.service.output),
                             ("the worker's log", worker.output)] {
            #expect(!text.contains(server.folder), "\(what) shows the server's socket folder: \(text.suffix(2000))")
        }
    }

    /// Sends `count` status requests, eight at a time; their HTTP statuses.
    @discardableResult
    static func statusRequests(_ client: FleetClient, count: Int) async throws -> [Int] {
        var statuses: [Int] = []
        for _ in 0..<(count / 8) {
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        do {
                            _ = try await client.status()
                            return 200
                        } catch let failure as FleetClient.Failure {
                            return failure.status
                        }
                    }
                }
                for try await status in group { statuses.append(status) }
            }
        }
        return statuses
    }
}
