import Foundation

/// A `dumpfleet coordinator` process on a loopback port it picks itself, for the tests that
/// treat it as an outsider would: raw sockets, a low open-files limit, its memory, descriptors
/// and CPU time read from /proc while it is under attack.
public final class CoordinatorProcess {
    public let service: ServiceProcess
    public let port: Int
    public var url: String { "http://127.0.0.1:\(port)" }
    public var pid: Int32 { service.process.processIdentifier }

    /// Starts the coordinator on `database` with its blobs in `blobs`, accepting `tokens`
    /// (NAME TOKEN lines); `arguments` add flags. With `openFiles`, it runs under that
    /// RLIMIT_NOFILE (soft and hard), as `ulimit -n` sets it.
    public init(database: String, blobs: String, tokens: [(name: String, secret: String)], folder: String, arguments: [String] = [],
                port: Int = 0, openFiles: Int? = nil, environment: [String: String] = [:], name: String = "coordinator") throws {
        let tokensFile = "\(folder)/\(name).tokens"
        try tokens.map { "\($0.name) \($0.secret)\n" }.joined().write(toFile: tokensFile, atomically: true, encoding: .utf8)
        let command = ["coordinator", "--database", database, "--port", String(port), "--blobs", blobs, "--tokens-file", tokensFile] + arguments
        if let openFiles {
            let quoted = ([ServiceProcess.executable] + command).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
            service = try ServiceProcess(["-c", "ulimit -n \(openFiles) && exec " + quoted.joined(separator: " ")], executable: "/bin/sh",
                                         environment: environment, log: "\(folder)/\(name).log")
        } else {
            service = try ServiceProcess(command, environment: environment, log: "\(folder)/\(name).log")
        }
        guard service.waitFor("coordinator listening", timeout: 60), let port = Self.port(in: service.output) else {
            service.killAndWait()
            throw Failure(description: "the coordinator did not start: \(service.output.suffix(3000))")
        }
        self.port = port
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    static func port(in log: String) -> Int? {
        guard let line = log.split(separator: "\n").first(where: { $0.contains("coordinator listening") }),
              let range = line.range(of: #"127\.0\.0\.1:[0-9]+"#, options: .regularExpression) else { return nil }
        return Int(line[range].split(separator: ":").last!)
    }

    /// SIGTERM, then waits for the process to end (SIGKILL after 30 s); its exit status.
    @discardableResult
    public func stop() -> Int32 {
        service.signal(SIGTERM)
        _ = service.waitForExit(timeout: 30)
        return service.process.terminationStatus
    }

    /// The value of the series `name` (with its labels, as written) on the coordinator's
    /// /metrics; 0 when absent.
    public func metric(_ name: String) throws -> Double {
        let text = try RawHTTP.exchange(port: port, "GET", "/metrics").body
        return text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last!) } ?? 0
    }

    /// Resident memory, from /proc.
    public var residentBytes: UInt64 { ProcessFacts.residentBytes(pid) }
    /// Peak resident memory since the process started, from /proc.
    public var peakResidentBytes: UInt64 { ProcessFacts.peakResidentBytes(pid) }
    /// Open file descriptors, from /proc.
    public var openDescriptors: Int { ProcessFacts.openDescriptors(pid) }
    /// CPU time used so far (user and system), from /proc.
    public var cpuSeconds: Double { ProcessFacts.cpuSeconds(pid) }
}

/// What /proc says of a process.
public enum ProcessFacts {
    public static func residentBytes(_ pid: Int32) -> UInt64 { statusBytes(pid, "VmRSS") }

    /// The most the process has had resident since it started (VmHWM).
    public static func peakResidentBytes(_ pid: Int32) -> UInt64 { statusBytes(pid, "VmHWM") }

    static func statusBytes(_ pid: Int32, _ field: String) -> UInt64 {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }),
              let kibibytes = line.split(separator: " ").dropFirst().first.flatMap({ UInt64($0) }) else { return 0 }
        return kibibytes << 10
    }

    public static func openDescriptors(_ pid: Int32) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count
    }

    public static func cpuSeconds(_ pid: Int32) -> Double {
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        // The command name, in parentheses, may hold spaces: count fields after its ")".
        guard let end = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
