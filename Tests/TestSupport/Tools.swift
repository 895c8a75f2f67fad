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

    /// The first of `names` on PATH (as `command -v` finds it), or nil.
    public static func find(anyOf names: [String]) -> String? { names.lazy.compactMap(find).first }

    /// A TCP port on the loopback that was free a moment ago (bound to port 0, read, released),
    /// for servers that cannot report the port they bound.
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = in_addr_t(UInt32(0x7F00_0001).bigEndian)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
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
