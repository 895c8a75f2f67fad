import Foundation

/// A long-running `dumpfleet` process (coordinator, worker) for tests that signal, kill or
/// freeze it. Its stdout and stderr go to a file the test reads, not to a pipe that could fill.
public final class ServiceProcess {
    public let process = Process()
    public let log: String

    /// Runs `dumpfleet` (or `executable`) with `arguments`.
    public init(_ arguments: [String], executable: String = ServiceProcess.executable, environment: [String: String] = [:], log: String) throws {
        self.log = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = FileHandle(forWritingAtPath: log)
        process.standardError = output
        process.standardOutput = output
        try process.run()
    }

    deinit {
        if process.isRunning { killAndWait() }
    }

    public var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// Runs `dumpfleet` with `arguments` to its end; its exit status and output (stdout and
    /// stderr together).
    /// A command that has not ended after `timeout` seconds is killed and reported as status -1.
    public static func run(_ arguments: [String], environment: [String: String] = [:], log: String, timeout: Double = 120) throws -> (status: Int32, output: String) {
        let command = try ServiceProcess(arguments, environment: environment, log: log)
        guard command.waitForExit(timeout: timeout) else { return (-1, command.output + "\n(killed after \(timeout) s)") }
        return (command.process.terminationStatus, command.output)
    }

    /// Waits until the log contains `text`; false after `timeout` seconds.
    public func waitFor(_ text: String, timeout: Double = 60) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return false
    }

    public func signal(_ number: Int32) { kill(process.processIdentifier, number) }

    /// Waits up to `timeout` seconds for the process to end; false (and the process killed)
    /// when it did not, so a test that fails does not hang.
    public func waitForExit(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        guard process.isRunning else {
            process.waitUntilExit()
            return true
        }
        killAndWait()
        return false
    }

    public func killAndWait() {
        signal(SIGKILL)
        process.waitUntilExit()
    }

    /// The built `dumpfleet`, found beside the test bundle in the build folder.
    public static var executable: String {
        var candidate = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while candidate.path != "/" {
            let path = candidate.appendingPathComponent("dumpfleet").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
            candidate.deleteLastPathComponent()
        }
        return "dumpfleet"
    }
}
