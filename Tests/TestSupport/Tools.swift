import Foundation

/// Programs the tests use as independent parts (the `lz4` tool, Chromium). scripts/setup
/// installs them; a test that finds one missing skips with a note, except under CI=true, where
/// the setup ran and a missing tool is a failure the test reports.
public enum Tools {
    /// The program `name` on PATH, or nil.
    public static func find(_ name: String) -> String? {
        for folder in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(folder)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// Whether this run is CI's (CI=true), where scripts/setup installed every tool.
    public static var isCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// Runs a program to its end; its exit status and standard output.
    public static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: Data) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, data)
    }
}
