import Foundation

/// Captures through a QMP socket: `query-dump-guest-memory-capability` for the format,
/// `query-memory-size-summary` for the RAM, the core file handed over with `getfd`, then
/// `dump-guest-memory` detached and `query-dump` polled for progress; `quit` for `--crash`.
/// `capture --stream` hands it a pipe instead of a file (`QMPStreamer`).
struct QMPDumper: GuestDumper, Sendable {
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
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw CaptureFailure(description: "cannot create \(path): \(String(cString: strerror(errno)))") }
        var finished = false
        defer { if !finished { unlink(path) } }
        do {
            defer { close(fd) }  // QEMU holds its own copy from here
            try start(writingTo: fd, format: format)
        }
        while true {
            switch try state() {
            case .completed(let total):
                progress(total, total)
                finished = true
                if crash { try qmp.execute("quit") }
                return
            case .failed(let reason):
                throw CaptureFailure(description: "QEMU's dump-guest-memory failed: \(reason)")
            case .active(let done, let total):
                progress(done, total)
                usleep(200_000)
            }
        }
    }

    /// Checks that QEMU writes `format`, hands it `fd` (a file or a pipe; the caller closes its
    /// own copy) and starts `dump-guest-memory` detached: QEMU writes front to back, in ELF
    /// or, for kdump formats, the flattened format (QEMU before 8.2), which a pipe can carry.
    func start(writingTo fd: Int32, format: CoreFormat) throws {
        let formats = (try qmp.execute("query-dump-guest-memory-capability") as? [String: Any])?["formats"] as? [String] ?? []
        guard formats.contains(format.rawValue) else {
            throw CaptureFailure(description: "this QEMU cannot write \(format.rawValue) (it offers \(formats.joined(separator: ", "))): choose another --format")
        }
        let name = "dumpfleet-\(getpid())"
        try qmp.execute("getfd", ["fdname": name], passing: fd)
        try qmp.execute("dump-guest-memory", ["paging": false, "protocol": "fd:\(name)", "detach": true, "format": format.rawValue])
    }

    /// Where a detached dump stands (`query-dump`).
    enum DumpState {
        case active(done: UInt64, total: UInt64)
        case completed(total: UInt64)
        /// QEMU's reason, from its DUMP_COMPLETED event.
        case failed(String)
    }

    func state() throws -> DumpState {
        let state = try qmp.execute("query-dump") as? [String: Any] ?? [:]
        let done = (state["completed"] as? NSNumber)?.uint64Value ?? 0
        let total = (state["total"] as? NSNumber)?.uint64Value ?? 0
        switch state["status"] as? String {
        case "completed": return .completed(total: total)
        case "failed": return .failed(qmp.event("DUMP_COMPLETED")?["error"] as? String ?? "no reason given")
        default: return .active(done: done, total: total)
        }
    }
}
