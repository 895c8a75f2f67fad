import Foundation
import Testing
import TestSupport

/// The fleet as an operator runs it: `coordinator` and `worker` processes, then `upload`,
/// `status`, `wait` and `show` against them; and `demo`, end to end on its own PostgreSQL.
@Suite struct FleetCommandTests {
    let cli = CLITests()

    @Test func uploadWaitAndShowAgainstACoordinatorAndAWorker() throws {
        let database = try TestDatabase.fresh(migrated: false)
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let token = "cli-test-token-0123456789"
        // On a port the coordinator picks and logs (a port made up here may be taken).
        let service = try CoordinatorProcess(database: database, blobs: folder + "/blobs", tokens: [("uploader", token)], folder: folder)
        let coordinator = service.service
        let server = ["--server", service.url, "--token", token]
        let worker = try ServiceProcess(["worker", "--database", database, "--scratch", folder + "/scratch", "--poll", "0.5"] + server,
                                 log: folder + "/worker.log")

        let dump = folder + "/timer.dmp"
        #expect(try cli.run(["forge", "--kind", "bitmap-kernel", "--scenario", "timer-corruption", "--memory-gib", "1", dump]).status == 0)
        let upload = try cli.run(["upload", dump, "--vm", "vdi-w10-0147", "--host", "kvm-12", "--tag", "pool=finance", "--json"] + server)
        #expect(upload.status == 0, "\(upload.error)")
        let answer = try JSONSerialization.jsonObject(with: Data(upload.output.utf8)) as? [String: Any]
        let status = answer?["status"] as? [String: Any]
        let dumpId = try #require(status?["dumpId"] as? Int, "\(upload.output)")
        #expect(status?["state"] as? String == "stored")

        let waited = try cli.run(["wait", String(dumpId), "--timeout", "60"] + server)
        #expect(waited.status == 0, "\(waited.error) \(worker.output)")
        #expect(waited.output.contains("0x3B_c0000005_CORRUPTION_VideoAccelerator.exe"))
        let shown = try cli.run(["show", String(dumpId)] + server)
        #expect(shown.output.contains("uploaded") && shown.output.contains("vdi-w10-0147 on kvm-12 by uploader [pool=finance]"))
        #expect(shown.output.contains("done, attempt 1 of 5"))
        let report = try cli.run(["show", String(dumpId), "--report"] + server)
        #expect(report.output.contains("\\HDPServer\\VideoAccelerator.exe") || report.output.contains("VideoAccelerator.exe"))
        let queue = try cli.run(["status"] + server)
        #expect(queue.output.contains("jobs: queued 0, running 0, done 1, failed 0"))
        let again = try cli.run(["upload", dump, "--vm", "vdi-w10-0200"] + server)
        #expect(again.output.contains("already stored as dump \(dumpId)"))
        let badToken = try cli.run(["status", "--server", service.url, "--token", "nope-nope-nope-nope"])
        #expect(badToken.status != 0 && badToken.error.contains("bearer token"))

        // A second crash of the same cause on another VM: similar, clusters, cluster.
        let second = folder + "/timer-2.dmp"
        #expect(try cli.run(["forge", "--kind", "bitmap-kernel", "--scenario", "timer-corruption", "--memory-gib", "1", "--seed", "8", second]).status == 0)
        let secondUpload = try cli.run(["upload", second, "--vm", "vdi-w10-0301"] + server)
        let secondId = try #require(secondUpload.output.split(separator: " ").drop { $0 != "dump" }.dropFirst().first.flatMap { Int(String($0).trimmingCharacters(in: .punctuationCharacters)) },
                                    "\(secondUpload.output)")
        #expect(try cli.run(["wait", String(secondId)] + server).status == 0)
        let similar = try cli.run(["similar", String(dumpId)] + server)
        #expect(similar.output.contains("dump \(secondId)") && similar.output.contains("same culprit"), "\(similar.output) \(similar.error)")
        let similarToFile = try cli.run(["similar", second, "--json"] + server)
        #expect(similarToFile.output.contains("\"dumpId\" : \(dumpId)"), "a local file, analyzed first: \(similarToFile.output)")
        let clusters = try cli.run(["clusters"] + server)
        #expect(clusters.output.contains("0x3B_c0000005_CORRUPTION_VideoAccelerator.exe"), "\(clusters.output)")
        let clusterId = try #require(clusters.output.split(separator: "\n").dropFirst().first?.split(separator: " ").first.flatMap { Int($0) })
        let cluster = try cli.run(["cluster", String(clusterId)] + server)
        #expect(cluster.output.contains("2 dumps from 3 VMs") && cluster.output.contains("members:"), "\(cluster.output)")

        let migrate = try cli.run(["migrate", "--database", database])
        #expect(migrate.output.contains("nothing to do"), "the coordinator migrated on start: \(migrate.output)")
        let reprocess = try cli.run(["reprocess", "--database", database])
        #expect(reprocess.output.contains("queued 0 dumps"), "the dump has a job for this analyzer version: \(reprocess.output)")
        let recluster = try cli.run(["recluster", "--database", database])
        #expect(recluster.output.contains("every stored report has a cluster"), "\(recluster.output) \(recluster.error)")
        let reclusterAll = try cli.run(["recluster", "--all", "--json", "--database", database])
        #expect(reclusterAll.output.contains("\"placed\" : 2"), "\(reclusterAll.output) \(reclusterAll.error)")
        #expect(try cli.run(["clusters"] + server).output == clusters.output, "placing the same reports again changes no cluster")
        let statusJSON = try cli.run(["status", "--json"] + server)
        #expect(statusJSON.output.contains("\"done\" : 2"))

        worker.process.terminate()
        coordinator.process.terminate()
        worker.process.waitUntilExit()
        coordinator.process.waitUntilExit()
        #expect(worker.process.terminationStatus == 0 && worker.output.contains("worker drained"))
        #expect(coordinator.process.terminationStatus == 0, "graceful shutdown on SIGTERM: \(coordinator.output)")
    }

    @Test func anInterruptedDemoStopsItsPostgreSQL() throws {
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let kept = folder + "/demo"
        if getuid() == 0 {
            // As root the server runs as postgres, which cannot enter a folder only root may.
            let refused = try cli.run(["demo", "--keep", kept])
            #expect(refused.status != 0 && refused.error.contains("the postgres user cannot reach"), "\(refused.error)")
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder)
        }
        let demo = try ServiceProcess(["demo", "--vms", "60", "--verbose", "--keep", kept], log: folder + "/demo.log")
        // The coordinator starts after the PostgreSQL and its interrupt handler.
        #expect(demo.waitFor("coordinator listening"), "\(demo.output)")
        demo.signal(SIGINT)
        demo.process.waitUntilExit()
        #expect(demo.process.terminationStatus == 128 + SIGINT)
        #expect(demo.output.contains("interrupted: PostgreSQL stopped, demo folder kept"), "\(demo.output)")
        #expect(!FileManager.default.fileExists(atPath: kept + "/postgres/data/postmaster.pid"), "no server left running")
    }

    @Test func demoRunsTheFleetEndToEnd() throws {
        let result = try cli.run(["demo", "--vms", "5", "--memory-gib", "1"])
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("What the fleet found"))
        #expect(result.output.contains("failed 0"))
        #expect(result.output.contains("known as dump 1, no second analysis"))
        let perCause = result.output.components(separatedBy: "\n").filter { $0.contains(" of ") && $0.contains(" in 0x") }
        #expect(!perCause.isEmpty)
        for line in perCause {
            let numbers = line.split(separator: ":").last!.split(separator: " ").compactMap { Int($0) }
            #expect(numbers.count >= 2 && numbers[0] == numbers[1], "every dump of a cause lands in its bucket: \(line)")
        }
        #expect(result.output.contains("demo folder removed"))
    }
}
