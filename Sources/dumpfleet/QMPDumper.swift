import Foundation

/// Captures through a QMP socket: `query-dump-guest-memory-capability` for the format,
/// `query-memory-size-summary` for the RAM, the core file handed over with `getfd`, then
/// `dump-guest-memory` detached and `query-dump` polled for progress; `quit` for `--crash`.
struct QMPDumper: GuestDumper {
    let qmp: QMPClient

    /// Connects; when QEMU was given a name (`-name`) and it is not `vm`, this is another
    /// guest's socket and nothing is captured.
    init(socket: String, vm: String) throws {
        qmp = try QMPClient(path: socket)
        if let name = (try qmp.execute("query-name") as? [String: Any])?["name"] as? String, name != vm {
            throw CaptureFailure(description: "the QMP socket \(socket) belongs to VM \"\(name)\", not \"\(vm)\"")
        }
    }

    func guestMemory() throws -> UInt64 {
        let summary = try qmp.execute("query-memory-size-summary") as? [String: Any]
        let base = (summary?["base-memory"] as? NSNumber)?.uint64Value ?? 0
        let plugged = (summary?["plugged-memory"] as? NSNumber)?.uint64Value ?? 0
        return base + plugged
    }

    func dump(to path: String, format: CoreFormat, crash: Bool, progress: (UInt64, UInt64) -> Void) throws {
        let formats = (try qmp.execute("query-dump-guest-memory-capability") as? [String: Any])?["formats"] as? [String] ?? []
        guard formats.contains(format.rawValue) else {
            throw CaptureFailure(description: "this QEMU cannot write \(format.rawValue) (it offers \(formats.joined(separator: ", "))): choose another --format")
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CaptureFailure(description: "cannot create \(path): \(String(cString: strerror(errno)))") }
        var finished = false
        defer { if !finished { unlink(path) } }
        let name = "dumpfleet-\(getpid())"
        do {
            defer { close(fd) }  // QEMU holds its own copy from here
            try qmp.execute("getfd", ["fdname": name], passing: fd)
        }
        try qmp.execute("dump-guest-memory", ["paging": false, "protocol": "fd:\(name)", "detach": true, "format": format.rawValue])
        while true {
            let state = try qmp.execute("query-dump") as? [String: Any] ?? [:]
            let done = (state["completed"] as? NSNumber)?.uint64Value ?? 0
            let total = (state["total"] as? NSNumber)?.uint64Value ?? 0
            switch state["status"] as? String {
            case "completed":
                progress(total, total)
                finished = true
                if crash { try qmp.execute("quit") }
                return
            case "failed":
                let reason = qmp.event("DUMP_COMPLETED")?["error"] as? String ?? "no reason given"
                throw CaptureFailure(description: "QEMU's dump-guest-memory failed: \(reason)")
            default:
                progress(done, total)
                usleep(200_000)
            }
        }
    }
}
