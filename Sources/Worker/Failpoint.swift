import Foundation

/// Named points where a test can make a worker stop, to kill or freeze it at exactly that
/// moment: `DUMPFLEET_FAILPOINT=NAME[:SECONDS]` makes the worker print `failpoint NAME reached`
/// on stderr when it gets there, then sleep SECONDS (forever without). The points are
/// `after-claim`, `during-analysis` and `before-commit` (results written, not yet committed).
/// Unset, a failpoint costs one comparison.
enum Failpoint {
    static let armed: (name: String, seconds: Double?)? = {
        guard let value = ProcessInfo.processInfo.environment["DUMPFLEET_FAILPOINT"], !value.isEmpty else { return nil }
        let parts = value.split(separator: ":", maxSplits: 1)
        return (String(parts[0]), parts.count > 1 ? Double(parts[1]) : nil)
    }()

    static func reach(_ name: String, job: Int64) {
        guard let armed, armed.name == name else { return }
        FileHandle.standardError.write(Data("failpoint \(name) reached (job \(job))\n".utf8))
        if let seconds = armed.seconds {
            Thread.sleep(forTimeInterval: seconds)
        } else {
            while true { Thread.sleep(forTimeInterval: 3600) }
        }
    }
}
