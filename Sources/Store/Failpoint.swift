import Foundation

/// Named points where a test can make a process stop, to kill or freeze it at exactly that
/// moment: `DUMPFLEET_FAILPOINT=NAME[:SECONDS]` makes the process print `failpoint NAME reached`
/// on stderr when it gets there, then sleep SECONDS (forever without). The worker's points are
/// `after-claim`, `during-analysis` and `before-commit` (results written, not yet committed);
/// the coordinator's is `verify` (an upload's bytes are about to be checked, on the thread
/// pool that does that). Unset, a failpoint costs one comparison.
public enum Failpoint {
    static let armed: (name: String, seconds: Double?)? = {
        guard let value = ProcessInfo.processInfo.environment["DUMPFLEET_FAILPOINT"], !value.isEmpty else { return nil }
        let parts = value.split(separator: ":", maxSplits: 1)
        return (String(parts[0]), parts.count > 1 ? Double(parts[1]) : nil)
    }()

    /// Stops here when the failpoint `name` is armed; `subject` says what was at hand (a job, an upload).
    public static func reach(_ name: String, _ subject: String) {
        guard let armed, armed.name == name else { return }
        FileHandle.standardError.write(Data("failpoint \(name) reached (\(subject))\n".utf8))
        if let seconds = armed.seconds {
            Thread.sleep(forTimeInterval: seconds)
        } else {
            while true { Thread.sleep(forTimeInterval: 3600) }
        }
    }
}
