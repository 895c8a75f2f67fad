import Foundation
import FleetClient

/// Upload (and capture) progress on stderr: a redrawn bar (bytes, rate, ETA) on a terminal, a
/// plain line every 10 seconds otherwise, so logs of scripted runs stay readable.
final class ProgressDisplay: @unchecked Sendable {
    private let lock = NSLock()
    private let terminal = isatty(2) == 1
    private var phase: String?
    private var file = ""
    private var started = Date()
    private var lastDrawn = Date.distantPast
    private var drewBar = false

    func update(_ progress: Uploader.Progress) {
        update(file: progress.file, phase: progress.phase.rawValue, done: progress.done, total: progress.total)
    }

    /// `phase` names the step (`hashing`, `sending`, `dumping`); a new step or file starts a new
    /// line and a new rate.
    func update(file: String, phase: String, done: UInt64, total: UInt64) {
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        if phase != self.phase || file != self.file {
            finishLine()
            self.phase = phase
            self.file = file
            started = now
            lastDrawn = .distantPast
        }
        guard now.timeIntervalSince(lastDrawn) >= (terminal ? 0.1 : 10) else { return }
        lastDrawn = now
        let elapsed = max(now.timeIntervalSince(started), 0.001)
        let rate = Double(done) / elapsed
        let name = URL(fileURLWithPath: file).lastPathComponent
        var line = "\(name): \(phase) \(Self.bytes(done))"
        if total > 0 {
            let fraction = min(Double(done) / Double(total), 1)
            let eta = rate > 0 ? Double(total - min(done, total)) / rate : 0
            let width = 24
            let filled = Int(fraction * Double(width))
            line = "\(name): \(phase) [\(String(repeating: "=", count: filled))\(String(repeating: " ", count: width - filled))] "
                + "\(Self.bytes(done))/\(Self.bytes(total)) \(Self.bytes(UInt64(rate)))/s ETA \(Int(eta.rounded())) s"
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
