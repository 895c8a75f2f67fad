import Foundation
import Testing
import TestSupport

/// `dumpfleet capture` on a KVM host, against real parts: Debian's QEMU (software emulation)
/// running a guest whose RAM is a forged machine, a coordinator on a private PostgreSQL, and a
/// worker that analyzes what arrives.
@Suite struct CaptureCommandTests {
    let cli = CLITests()
    let token = "capture-test-token-0123456789"

    /// A QEMU whose guest RAM is a forged 1 GiB machine (never started: `-S`), with QMP on a
    /// unix socket and a name, as a KVM host runs a desktop.
    final class Guest {
        let process = Process()
        let socket: String

        init(qemu: String, ram: String, name: String, folder: String) throws {
            socket = folder + "/qmp.sock"
            process.executableURL = URL(fileURLWithPath: qemu)
            process.arguments = [
                "-S", "-nodefaults", "-display", "none", "-serial", "none", "-monitor", "none", "-m", "1G", "-name", name,
                "-object", "memory-backend-file,id=ram,size=1G,mem-path=\(ram),share=on", "-machine", "pc,memory-backend=ram",
                "-qmp", "unix:\(socket),server=on,wait=off",
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(20)
            while !FileManager.default.fileExists(atPath: socket) && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        }

        deinit {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
    }

    func qemu() -> String? {
        if let qemu = Tools.find("qemu-system-x86_64") { return qemu }
        if Tools.isCI { Issue.record("qemu-system-x86_64 is missing: scripts/setup installs Debian's qemu-system-x86") } else {
            print("note: qemu-system-x86_64 not found (Debian's qemu-system-x86), skipping dumpfleet capture against a real QEMU")
        }
        return nil
    }

    /// What both real-guest capture tests run against: a real QEMU guest (vdi-w10-0147) whose
    /// 1 GiB of RAM is a forged hung machine, a coordinator with its own PostgreSQL, a worker,
    /// and an empty folder for cores.
    struct GuestFleet {
        let coordinator: CoordinatorProcess
        let server: [String]
        let worker: ServiceProcess
        let guest: Guest
        let cores: String

        init(qemu: String, folder: String, in suite: CaptureCommandTests) throws {
            #expect(try suite.cli.run(["forge", "--kind", "raw", "--scenario", "spinlock-hang", "--memory-gib", "1", folder + "/ram.img"]).status == 0)
            let database = try TestDatabase.fresh(migrated: false)
            coordinator = try CoordinatorProcess(database: database, blobs: folder + "/blobs", tokens: [("kvm-host", suite.token)], folder: folder)
            server = ["--server", coordinator.url, "--token", suite.token]
            worker = try ServiceProcess(["worker", "--database", database, "--scratch", folder + "/scratch", "--poll", "0.5"] + server, log: folder + "/worker.log")
            guest = try Guest(qemu: qemu, ram: folder + "/ram.img", name: "vdi-w10-0147", folder: folder)
            cores = folder + "/cores"
            try FileManager.default.createDirectory(atPath: cores, withIntermediateDirectories: true)
        }
    }

    @Test func captureDumpsARealGuestUploadsItAndAWorkerReadsIt() throws {
        guard let qemu = qemu() else { return }
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let started = Date()
        let fleet = try GuestFleet(qemu: qemu, folder: folder, in: self)
        let (server, worker, guest, cores) = (fleet.server, fleet.worker, fleet.guest, fleet.cores)

        let capture = try cli.run(["capture", "vdi-w10-0147", "--qmp", guest.socket, "--directory", cores, "--host", "kvm-12", "--tag", "reason=hung", "--json"] + server)
        print("capture of a 1 GiB guest: \(String(format: "%.1f", Date().timeIntervalSince(started))) s since the forge began; stderr: \(capture.error)")
        #expect(capture.status == 0, "\(capture.error)")
        #expect(capture.error.contains("vdi-w10-0147: 1.0 GiB of guest RAM: the core needs up to that in \(cores)"), "\(capture.error)")
        #expect(capture.error.contains(": dumping "), "progress while QEMU writes: \(capture.error)")
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(capture.output.utf8)) as? [String: Any], "\(capture.output)")
        let status = answer["status"] as? [String: Any]
        let dumpId = try #require(status?["dumpId"] as? Int, "\(capture.output)")
        #expect(status?["state"] as? String == "stored")
        #expect(answer["guestMemory"] as? Int == 1 << 30 && (answer["size"] as? Int ?? 0) > 1 << 30, "\(capture.output)")
        #expect(answer["dumpSeconds"] is Double && answer["uploadSeconds"] is Double && answer["host"] as? String == "kvm-12")
        #expect(try FileManager.default.contentsOfDirectory(atPath: cores).isEmpty, "the core is removed once stored")
        #expect(guest.process.isRunning, "a live capture leaves the guest running")

        let waited = try cli.run(["wait", String(dumpId), "--timeout", "120"] + server)
        #expect(waited.status == 0 && waited.output.contains("LIVE_"), "\(waited.output) \(waited.error) \(worker.output.suffix(2000))")
        let shown = try cli.run(["show", String(dumpId)] + server)
        #expect(shown.output.contains("vdi-w10-0147 on kvm-12 by kvm-host [reason=hung]"), "\(shown.output)")

        let otherName = try cli.run(["capture", "vdi-w10-0200", "--qmp", guest.socket, "--directory", cores] + server)
        #expect(otherName.status == 1 && otherName.error.contains("belongs to VM \"vdi-w10-0147\", not \"vdi-w10-0200\""), "\(otherName.error)")

        // The guest never ran, so the second core is the same dump: recorded, not sent again.
        let crashed = try cli.run(["capture", "vdi-w10-0147", "--qmp", guest.socket, "--directory", cores, "--crash"] + server)
        #expect(crashed.status == 0 && crashed.output.contains("already stored as dump \(dumpId)"), "\(crashed.output) \(crashed.error)")
        let deadline = Date().addingTimeInterval(10)
        while guest.process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(!guest.process.isRunning, "--crash quits QEMU after the dump")
        print("capture test: \(String(format: "%.1f", Date().timeIntervalSince(started))) s in all")
    }

    /// `--stream`: QEMU writes into a pipe that is the body of a plain upload; nothing lands in
    /// --directory, a dump streamed twice is one dump, a refused stream stops QEMU's dump
    /// without stopping QEMU, and a kdump-zlib stream (flattened, as QEMU writes kdump-* to a
    /// pipe) is stored and analyzed too.
    @Test func captureStreamsARealGuestIntoTheCoordinator() throws {
        guard let qemu = qemu() else { return }
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let started = Date()
        let fleet = try GuestFleet(qemu: qemu, folder: folder, in: self)
        let (coordinator, server, worker, guest, cores) = (fleet.coordinator, fleet.server, fleet.worker, fleet.guest, fleet.cores)
        let capture = ["capture", "vdi-w10-0147", "--qmp", guest.socket, "--directory", cores, "--host", "kvm-12", "--stream"]
        func seconds(since start: Date) -> String { String(format: "%.1f s", Date().timeIntervalSince(start)) }

        var step = Date()
        let streamed = try cli.run(capture + ["--tag", "reason=hung", "--json"] + server)
        print("stream of a 1 GiB guest (ELF): \(seconds(since: step)); stderr: \(streamed.error)")
        #expect(streamed.status == 0, "\(streamed.error)")
        #expect(streamed.error.contains("vdi-w10-0147: 1.0 GiB of guest RAM, streamed to \(coordinator.url)"), "\(streamed.error)")
        #expect(streamed.error.contains(": streaming "), "progress while QEMU writes: \(streamed.error)")
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(streamed.output.utf8)) as? [String: Any], "\(streamed.output)")
        let status = answer["status"] as? [String: Any]
        let dumpId = try #require(status?["dumpId"] as? Int, "\(streamed.output)")
        #expect(status?["state"] as? String == "stored" && answer["streamed"] as? Bool == true, "\(streamed.output)")
        #expect(answer["guestMemory"] as? Int == 1 << 30 && (answer["size"] as? Int ?? 0) > 1 << 30, "\(streamed.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: cores).isEmpty, "nothing is written in --directory")
        #expect(guest.process.isRunning, "a live capture leaves the guest running")
        let waited = try cli.run(["wait", String(dumpId), "--timeout", "120"] + server)
        #expect(waited.status == 0 && waited.output.contains("LIVE_"), "\(waited.output) \(waited.error) \(worker.output.suffix(2000))")
        let shown = try cli.run(["show", String(dumpId)] + server)
        #expect(shown.output.contains("vdi-w10-0147 on kvm-12 by kvm-host [reason=hung]"), "\(shown.output)")

        step = Date()
        let again = try cli.run(capture + server)
        print("the same guest streamed again: \(seconds(since: step))")
        #expect(again.status == 0 && again.output.contains("already stored as dump \(dumpId)") && again.output.contains("streamed, no file written"),
                "\(again.output) \(again.error)")

        let wrongToken = try cli.run(capture + ["--server", coordinator.url, "--token", "not-the-capture-token-0123"])
        #expect(wrongToken.status == 1 && wrongToken.error.contains("cannot use the coordinator at \(coordinator.url)"), "\(wrongToken.error)")
        // A tag the coordinator refuses (it holds a zero-width space) is refused before the body,
        // while QEMU writes into the pipe already: the read end is closed, QEMU's dump fails.
        step = Date()
        let refused = try cli.run(capture + ["--tag", "reason=a\u{200B}b"] + server)
        print("refused stream: \(seconds(since: step)); stderr: \(refused.error)")
        #expect(refused.status == 1 && refused.error.contains("the stream to the coordinator failed: ") && refused.error.contains("nothing was stored"),
                "\(refused.error)")
        #expect(guest.process.isRunning)

        // QEMU was not left blocked on the pipe: it takes the next capture, a kdump-zlib stream.
        step = Date()
        let kdump = try cli.run(capture + ["--format", "kdump-zlib", "--crash", "--json"] + server)
        print("kdump-zlib stream: \(seconds(since: step)); \(kdump.output)")
        #expect(kdump.status == 0, "\(kdump.error)")
        let kdumpAnswer = try #require(try JSONSerialization.jsonObject(with: Data(kdump.output.utf8)) as? [String: Any], "\(kdump.output)")
        let kdumpId = try #require((kdumpAnswer["status"] as? [String: Any])?["dumpId"] as? Int, "\(kdump.output)")
        #expect(kdumpId != dumpId && (kdumpAnswer["status"] as? [String: Any])?["state"] as? String == "stored")
        #expect((kdumpAnswer["size"] as? Int ?? 0) < 256 << 20, "each page compressed: \(kdump.output)")
        let kdumpWaited = try cli.run(["wait", String(kdumpId), "--timeout", "120"] + server)
        #expect(kdumpWaited.status == 0 && kdumpWaited.output.contains("LIVE_"), "\(kdumpWaited.output) \(kdumpWaited.error) \(worker.output.suffix(2000))")
        let deadline = Date().addingTimeInterval(10)
        while guest.process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(!guest.process.isRunning, "--crash quits QEMU once the stream is stored")
        #expect(try FileManager.default.contentsOfDirectory(atPath: cores).isEmpty)
        print("stream test: \(seconds(since: started)) in all")
    }

    /// Through libvirt: a transient `type='qemu'` domain of 64 MiB, started paused, captured
    /// with `virsh dump --memory-only`. Needs libvirtd (Debian's libvirt-daemon-system, which
    /// scripts/setup installs): as root, the test starts virtlogd and libvirtd itself when none
    /// answers (they run without systemd) and stops what it started. Without them it says so
    /// and skips, except under CI=true, where that fails.
    @Test func captureThroughLibvirt() throws {
        let uri = "qemu:///system"
        func missing(_ why: String) {
            if Tools.isCI { Issue.record("\(why): scripts/setup installs libvirt-daemon-system and libvirt-clients") } else {
                print("note: \(why), skipping dumpfleet capture through virsh")
            }
        }
        guard let virsh = Tools.find("virsh") else { return missing("virsh is missing") }
        func answers() -> Bool { (try? Tools.run(virsh, ["-c", uri, "version"]).status) == 0 }
        var started: [String] = []
        defer {
            // Only the daemons this test started, by the pid files they wrote.
            for daemon in started {
                if let text = try? String(contentsOfFile: "/run/\(daemon).pid", encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)) { kill(pid, SIGTERM) }
            }
        }
        if !answers(), getuid() == 0 {
            for daemon in ["virtlogd", "libvirtd"] {
                let path = Tools.find(daemon) ?? "/usr/sbin/" + daemon  // sbin is not on every PATH
                // posix_spawn and waitpid, not Foundation's Process: its waitUntilExit missed the
                // exit of -d's first process (which exits once the daemon runs) and hung. The
                // daemon gets an empty signal mask: it would inherit this process's, which blocks
                // SIGTERM, and then never stop.
                guard FileManager.default.isExecutableFile(atPath: path) else { continue }
                var pid: pid_t = 0
                var argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), strdup("-d"), nil]
                defer { argv.forEach { free($0) } }
                var attributes = posix_spawnattr_t()
                posix_spawnattr_init(&attributes)
                defer { posix_spawnattr_destroy(&attributes) }
                var none = sigset_t()
                sigemptyset(&none)
                posix_spawnattr_setsigmask(&attributes, &none)
                posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
                guard posix_spawn(&pid, path, nil, &attributes, &argv, environ) == 0 else { continue }
                var status: Int32 = 0
                // Exit status 0: it started (one already running fails on its pid file, and is
                // not this test's to stop).
                if waitpid(pid, &status, 0) == pid, status == 0 { started.append(daemon) }
            }
            for _ in 0..<50 where !answers() { usleep(200_000) }
        }
        guard answers() else { return missing("no libvirtd answers at \(uri) (Debian's libvirt-daemon-system, run as root)") }
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let domain = "dumpfleet-capture-\(getpid())"
        try """
            <domain type='qemu'><name>\(domain)</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
            <os><type arch='x86_64' machine='pc'>hvm</type></os>
            <devices><video><model type='none'/></video><memballoon model='none'/></devices></domain>
            """.write(toFile: folder + "/domain.xml", atomically: true, encoding: .utf8)
        try #require(try Tools.run(virsh, ["-c", uri, "create", folder + "/domain.xml", "--paused"]).status == 0, "libvirt could not start \(domain)")
        defer { _ = try? Tools.run(virsh, ["-c", uri, "destroy", domain]) }
        let database = try TestDatabase.fresh(migrated: false)
        let coordinator = try CoordinatorProcess(database: database, blobs: folder + "/blobs", tokens: [("kvm-host", token)], folder: folder)
        let server = ["--server", coordinator.url, "--token", token, "--connect", uri, "--directory", folder]

        let capture = try cli.run(["capture", domain, "--host", "kvm-lv", "--json"] + server)
        #expect(capture.status == 0, "\(capture.error)")
        #expect(capture.output.contains("\"guestMemory\" : 67108864") && capture.output.contains("\"state\" : \"stored\""), "\(capture.output)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).allSatisfy { !$0.hasPrefix(domain) }, "the core is removed once stored")
        let missing = try cli.run(["capture", domain + "-nowhere"] + server)
        #expect(missing.status == 1 && missing.error.contains("failed to get domain '\(domain)-nowhere'"), "\(missing.error)")
        let crashed = try cli.run(["capture", domain, "--crash"] + server)
        #expect(crashed.status == 0 && crashed.output.contains("(\(domain) on "), "\(crashed.output) \(crashed.error)")
        #expect(try Tools.run(virsh, ["-c", uri, "domstate", domain]).status != 0, "--crash stops the transient domain, which then is gone")
    }

    @Test func watchUploadsCompleteCoresOnceEachAcrossRestarts() throws {
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let watched = folder + "/dump"
        try FileManager.default.createDirectory(atPath: watched, withIntermediateDirectories: true)
        let database = try TestDatabase.fresh(migrated: false)
        let coordinator = try CoordinatorProcess(database: database, blobs: folder + "/blobs", tokens: [("kvm-host", token)], folder: folder)
        let server = ["--server", coordinator.url, "--token", token]
        // libvirt's names for automatic dumps: ID-NAME-YYYY-MM-DD-HH:MM:SS.
        let names = ["1-vdi-a-2025-01-31-14:25:01", "2-vdi-b-2025-01-31-14:26:00", "3-vdi-c-2025-01-31-14:27:00", "4-vdi-d-2025-01-31-14:28:00"]
        for (index, name) in names.enumerated() {
            let path = (index < 2 ? watched : folder) + "/" + name
            #expect(try cli.run(["forge", "--kind", "qemu-elf", "--memory-gib", "1", "--seed", String(index + 1), path]).status == 0)
        }
        // vdi-c is still being written: a prefix of its core, open for writing. vdi-d was cut
        // short: closed, but its ELF segments run past its end.
        func prefix(_ name: String) throws -> Data? { try FileHandle(forReadingFrom: URL(fileURLWithPath: folder + "/" + name)).read(upToCount: 8 << 20) }
        _ = FileManager.default.createFile(atPath: watched + "/" + names[2], contents: try prefix(names[2]))
        let writing = try #require(FileHandle(forWritingAtPath: watched + "/" + names[2]))
        _ = FileManager.default.createFile(atPath: watched + "/" + names[3], contents: try prefix(names[3]))
        try "not a core".write(toFile: watched + "/README", atomically: true, encoding: .utf8)
        // QEMU 7.2's kdump-zlib, as a pipe carries it: one complete, one without its end marker.
        let kdumps = ["5-vdi-e-2025-01-31-14:29:00", "6-vdi-f-2025-01-31-14:30:00"]
        for name in kdumps { #expect(try cli.run(["forge", "--kind", "qemu-kdump", "--memory-gib", "1", "--seed", "5", watched + "/" + name]).status == 0) }
        let cut = try #require(FileHandle(forUpdatingAtPath: watched + "/" + kdumps[1]))
        try cut.truncate(atOffset: try cut.seekToEnd() - 16)
        try cut.close()
        // The same file rebuilt in place by makedumpfile -R, then cut inside its page data.
        let inPlace = "7-vdi-g-2025-01-31-14:31:00"
        if let makedumpfile = Tools.find("makedumpfile") {
            #expect(try Tools.run("/bin/sh", ["-c", "\(makedumpfile) -R '\(folder)/\(inPlace)' < '\(watched)/\(kdumps[0])' >/dev/null 2>&1"]).status == 0)
            let rebuilt = try #require(FileHandle(forUpdatingAtPath: folder + "/" + inPlace))
            try rebuilt.truncate(atOffset: try rebuilt.seekToEnd() - 100)
            try rebuilt.close()
            #expect(rename(folder + "/" + inPlace, watched + "/" + inPlace) == 0)
        } else if Tools.isCI {
            Issue.record("makedumpfile is missing: scripts/setup installs it")
        }

        let watch = ["capture", "--watch", watched, "--once", "--interval", "1", "--host", "kvm-7"] + server
        let first = try cli.run(watch + ["--json"])
        #expect(first.status == 0, "\(first.error)")
        #expect(first.output.components(separatedBy: "\"dumpId\"").count == 4, "two ELF cores and a kdump file sent: \(first.output)")
        #expect(first.output.contains("\"vm\" : \"vdi-a\"") && first.output.contains("\"vm\" : \"vdi-b\"") && first.output.contains("\"vm\" : \"vdi-e\""), "\(first.output)")
        #expect(first.error.contains("\(kdumps[1]): the flattened kdump file lacks its end marker"), "\(first.error)")
        if Tools.find("makedumpfile") != nil {
            #expect(first.error.contains("\(inPlace): the kdump file ends before its last page"), "\(first.error)")
        }
        // By this process, or by a child another test started meanwhile, which inherited the
        // descriptor: the watcher names the first writer it finds.
        #expect(first.error.contains("\(names[2]): open for writing by process "), "\(first.error)")
        #expect(first.error.contains("\(names[3]): the ELF core ends before its last segment"), "\(first.error)")
        #expect(first.error.contains("README: not a memory core or dump, skipped"), "\(first.error)")

        let again = try cli.run(watch)
        #expect(again.status == 0 && again.output.isEmpty, "a second watcher sends nothing twice: \(again.output) \(again.error)")

        // vdi-c's core is complete now: the next look sends it alone, and removes it.
        try writing.close()
        #expect(rename(folder + "/" + names[2], watched + "/" + names[2]) == 0)
        let third = try cli.run(watch + ["--remove"])
        #expect(third.status == 0 && third.output.components(separatedBy: "stored as dump").count == 2, "\(third.output) \(third.error)")
        #expect(third.output.contains("(vdi-c on kvm-7); removed"), "\(third.output)")
        #expect(!FileManager.default.fileExists(atPath: watched + "/" + names[2]))
        #expect(FileManager.default.fileExists(atPath: watched + "/" + names[0]), "without --remove the cores stay")
        let dumpId = try #require(third.output.split(separator: " ").drop { $0 != "dump" }.dropFirst().first.flatMap { Int($0.trimmingCharacters(in: .punctuationCharacters)) })
        let shown = try cli.run(["show", String(dumpId)] + server)
        #expect(shown.output.contains("vdi-c on kvm-7 by kvm-host"), "\(shown.output)")
    }

    @Test func captureErrorsSayWhatIsWrong() throws {
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let noCoordinator = try cli.run(["capture", "vm", "--qmp", folder + "/none.sock", "--server", "http://127.0.0.1:\(Tools.freePort())", "--token", token])
        #expect(noCoordinator.status == 1 && noCoordinator.error.contains("cannot use the coordinator at http://127.0.0.1:"), "\(noCoordinator.error)")
        let help = try cli.run(["capture", "--help"])
        #expect(help.output.contains("Examples:") && help.output.contains("--watch /var/lib/libvirt/qemu/dump") && help.output.contains("--crash") && help.output.contains("--stream"))
        let usage = try cli.run(["capture", "--token", token])
        #expect(usage.status == 64 && usage.error.contains("give the VM to capture, or --watch DIR"), "\(usage.error)")
        let streamWithoutQMP = try cli.run(["capture", "vm", "--stream", "--token", token])
        #expect(streamWithoutQMP.status == 64 && streamWithoutQMP.error.contains("--stream needs --qmp"), "\(streamWithoutQMP.error)")

        let database = try TestDatabase.fresh(migrated: false)
        let coordinator = try CoordinatorProcess(database: database, blobs: folder + "/blobs", tokens: [("kvm-host", token)], folder: folder)
        let server = ["--server", coordinator.url, "--token", token, "--directory", folder]
        let missing = try cli.run(["capture", "vm", "--qmp", folder + "/none.sock"] + server)
        #expect(missing.status == 1 && missing.error.contains("no QMP socket at \(folder)/none.sock"), "\(missing.error)")
        try "".write(toFile: folder + "/plain", atomically: true, encoding: .utf8)
        let notASocket = try cli.run(["capture", "vm", "--qmp", folder + "/plain"] + server)
        #expect(notASocket.status == 1 && notASocket.error.contains("nothing listens on \(folder)/plain"), "\(notASocket.error)")

        let stranger = try Peer(path: folder + "/stranger.sock", lines: ["SSH-2.0-OpenSSH_9.2"])
        let notQMP = try cli.run(["capture", "vm", "--qmp", stranger.path] + server)
        #expect(notQMP.status == 1 && notQMP.error.contains("does not speak QMP: it wrote \"SSH-2.0-OpenSSH_9.2\""), "\(notQMP.error)")
        let refusing = try Peer(path: folder + "/refusing.sock", lines: [
            #"{"QMP": {"version": {}, "capabilities": []}}"#,
            #"{"error": {"class": "CommandNotFound", "desc": "The command qmp_capabilities has not been found"}}"#,
        ])
        let refused = try cli.run(["capture", "vm", "--qmp", refusing.path] + server)
        #expect(refused.status == 1 && refused.error.contains("QEMU refused qmp_capabilities: CommandNotFound: The command qmp_capabilities has not been found"),
                "\(refused.error)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).allSatisfy { !$0.hasPrefix("vm-") }, "no core left behind")
    }

    /// A unix socket that is not QEMU: it accepts one connection and writes `lines`, one after
    /// each line it reads (the first at once), as a peer that talks wrongly does.
    final class Peer {
        let path: String
        let fd: Int32

        init(path: String, lines: [String]) throws {
            self.path = path
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
            let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            try #require(bound == 0 && listen(fd, 1) == 0)
            let listener = fd
            Thread.detachNewThread {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { return }
                defer { close(connection) }
                var byte: UInt8 = 0
                for (index, line) in lines.enumerated() {
                    if index > 0 { while read(connection, &byte, 1) == 1 && byte != 0x0A {} }
                    _ = (line + "\n").withCString { write(connection, $0, strlen($0)) }
                }
                while read(connection, &byte, 1) == 1 {}
            }
        }

        deinit { close(fd) }
    }
}
