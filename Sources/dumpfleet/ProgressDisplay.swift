import Foundation
import FleetClient

/// Upload progress on stderr: a redrawn bar (bytes, rate, ETA) on a terminal, a plain line
/// every 10 seconds otherwise, so logs of scripted runs stay readable.
final class ProgressDisplay: @unchecked Sendable {
    private let lock = NSLock()
    private let terminal = isatty(2) == 1
    private var phase: Uploader.Phase?
    private var file = ""
    private var started = Date()
    private var lastDrawn = Date.distantPast
    private var drewBar = false

    func update(_ progress: Uploader.Progress) {
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        if progress.phase != phase || progress.file != file {
            finishLine()
            phase = progress.phase
            file = progress.file
            started = now
            lastDrawn = .distantPast
        }
        guard now.timeIntervalSince(lastDrawn) >= (terminal ? 0.1 : 10) else { return }
        lastDrawn = now
        let elapsed = max(now.timeIntervalSince(started), 0.001)
        let rate = Double(progress.done) / elapsed
        let name = URL(fileURLWithPath: progress.file).lastPathComponent
        var line = "\(name): \(progress.phase.rawValue) \(Self.bytes(progress.done))"
        if progress.total > 0 {
            let fraction = min(Double(progress.done) / Double(progress.total), 1)
            let eta = rate > 0 ? Double(progress.total - min(progress.done, progress.total)) / rate : 0
            let width = 24
            let filled = Int(fraction * Double(width))
            line = "\(name): \(progress.phase.rawValue) [\(String(repeating: "=", count: filled))\(String(repeating: " ", count: width - filled))] "
                + "\(Self.bytes(progress.done))/\(Self.bytes(progress.total)) \(Self.bytes(UInt64(rate)))/s ETA \(Int(eta.rounded())) s"
        } else {
            line += " \(Self.bytes(UInt64(rate)))/s"
        }
        if terminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            drewBar = true
        } else {
            warn(line)
        }
    }

    /// Ends a bar line so the next output starts on a line of its own.
    func finish() {
        lock.lock()
        finishLine()
        phase = nil
        lock.unlock()
    }

    private func finishLine() {
        if drewBar { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        drewBar = false
    }

    static func bytes(_ count: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }
}
