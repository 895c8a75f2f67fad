import ArgumentParser
import FleetAPI
import Foundation

extension Capture {
    /// `capture VM --qmp SOCKET --stream`: the dump goes from QEMU through a pipe into a plain
    /// upload (`QMPStreamer`); nothing is written here, so there is no free-space check.
    func captureStreaming(_ vm: String, socket: String, host: String, sender: UploadSender) async throws {
        var result = CaptureResult(vm: vm, host: host, format: format.rawValue, crash: crash, streamed: true)
        let fileName = "\(vm)-\(Self.timestamp()).\(format.fileExtension)"
        let status: UploadStatus
        do {
            let dumper = try QMPDumper(socket: socket, vm: vm)
            let memory = try dumper.guestMemory()
            result.guestMemory = memory
            warn("\(vm): \(ProgressDisplay.bytes(memory)) of guest RAM, streamed to \(sender.client.server) as QEMU writes it")
            let started = Date()
            result.startedAt = ISO8601DateFormatter().string(from: started)
            let streamer = QMPStreamer(dumper: dumper, client: sender.client, display: sender.display)
            let streamed = try await streamer.stream(format: format, crash: crash, vm: vm, host: host, tags: tags.labels, fileName: fileName)
            result.dumpSeconds = streamed.dumpSeconds
            result.uploadSeconds = Date().timeIntervalSince(started)
            result.size = streamed.size
            status = streamed.status
            result.status = status
        } catch {
            sender.display.finish()
            result.error = "\(error)"
            try report(result, failure: "dumpfleet: capture \(vm): \(error)")
            throw ExitCode(1)
        }
        try report(result, failure: nil, success: UploadSender.summary(file: fileName, status: status) + " (\(vm) on \(host)); streamed, no file written")
    }
}
