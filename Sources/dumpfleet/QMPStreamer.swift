import CMalloc
import FleetAPI
import FleetClient
import Foundation

/// `capture --stream`: QEMU writes the dump into a pipe (its write end handed over with
/// `getfd`), and the read end is the chunked body of a plain upload (`PUT /v1/plain`), so no
/// byte touches the host's disk. QEMU writes ELF front to back, and kdump formats flattened.
///
/// QEMU sets the dump's final state before it closes its end of the pipe, so the body's end
/// asks it: a dump that failed aborts the request, and the coordinator stores nothing of it.
/// The other way round, a request that failed closes the read end, and QEMU's next write
/// fails (EPIPE) instead of waiting on a full pipe: its dump ends as failed and the guest runs on.
struct QMPStreamer {
    let dumper: QMPDumper
    let client: FleetClient
    let display: ProgressDisplay

    struct Streamed {
        var status: UploadStatus
        var size: UInt64
        var dumpSeconds: Double
    }

    /// Streams the dump named `fileName` (shown in progress, recorded with the upload);
    /// with `crash`, quits QEMU once the coordinator has stored it (not before: a stream that
    /// failed leaves no copy, and the guest then is left as it was, to be captured again).
    func stream(format: CoreFormat, crash: Bool, vm: String, host: String, tags: [String: String], fileName: String) async throws -> Streamed {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { throw CaptureFailure(description: "cannot make a pipe: \(String(cString: strerror(errno)))") }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }  // (Glibc's module lacks pipe2)
        // 1 MiB instead of 64 KiB (F_SETPIPE_SZ; the unprivileged limit, fs.pipe-max-size):
        // fewer wake-ups for QEMU and the reader. Without it the pipe works as it is.
        _ = fcntl(ends[1], 1031, Int32(1 << 20))
        let dumper = self.dumper
        // Each read takes a fresh 1 MiB buffer, freed on another thread once sent. glibc serves
        // such blocks from its arenas after its mmap threshold has risen past them, and the
        // arenas kept growing: a 16 GiB stream peaked at 755 MiB. Blocks of 256 KiB and more
        // mapped and unmapped each time keep it flat (54 MiB for 4 GiB, measured).
        _ = mallopt(M_MMAP_THRESHOLD, 256 << 10)
        let body = PipeChunks(reading: ends[0]) { try await Self.finalState(of: dumper) }
        do {
            defer { close(ends[1]) }  // QEMU holds its own copy from here
            try dumper.start(writingTo: ends[1], format: format)
        }
        let started = Date()
        let upload = Task { [client] in
            defer { body.close() }
            return try await client.putPlain(body: body, vm: vm, host: host, tags: tags, fileName: fileName)
        }
        let state: QMPDumper.DumpState
        do {
            state = try await watch(fileName)
        } catch {
            upload.cancel()
            body.close()
            throw error
        }
        let dumpSeconds = Date().timeIntervalSince(started)
        let status: UploadStatus
        do {
            status = try await upload.value
        } catch {
            throw CaptureFailure(description: Self.failure(error, state: state) + "; nothing was stored"
                                 + (crash ? "; the VM was not stopped (--crash): capture it again" : ""))
        }
        if crash { try dumper.qmp.execute("quit") }
        return Streamed(status: status, size: body.bytesRead, dumpSeconds: dumpSeconds)
    }

    /// Which side stopped the stream: QEMU (its failure ended the body) or the request (its
    /// failure closed the pipe, and QEMU's dump failed for that).
    private static func failure(_ error: Error, state: QMPDumper.DumpState) -> String {
        guard case .failed(let reason) = state else { return "the stream to the coordinator failed: \(error)" }
        if error is CaptureFailure { return "\(error)" }
        return "the stream to the coordinator failed: \(error) (QEMU's dump stopped with it: \(reason))"
    }

    /// Shows QEMU's progress until its dump has ended, and returns how it ended.
    private func watch(_ fileName: String) async throws -> QMPDumper.DumpState {
        while true {
            let state = try dumper.state()
            switch state {
            case .active(let done, let total):
                display.update(file: fileName, phase: "streaming", done: done, total: total)
                try await Task.sleep(for: .milliseconds(200))
            case .completed(let total):
                display.update(file: fileName, phase: "streaming", done: total, total: total)
                display.finish()
                return state
            case .failed:
                display.finish()
                return state
            }
        }
    }

    /// At the end of the pipe: returns when QEMU's dump completed, throws when it failed (QEMU
    /// closes the pipe after it records either; a few tries allow for a QEMU that does it the
    /// other way round).
    private static func finalState(of dumper: QMPDumper) async throws {
        for _ in 0..<100 {
            switch try dumper.state() {
            case .completed: return
            case .failed(let reason): throw CaptureFailure(description: "QEMU's dump-guest-memory failed: \(reason)")
            case .active: try await Task.sleep(for: .milliseconds(50))
            }
        }
        throw CaptureFailure(description: "QEMU closed the pipe but its dump is still under way")
    }
}
