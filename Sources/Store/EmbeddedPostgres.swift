import Foundation

/// A private PostgreSQL server in a scratch folder, for `dumpfleet demo` and the tests: initdb,
/// then pg_ctl start with a Unix socket only (no TCP port to collide with), fsync off unless
/// asked to be durable.
///
/// PostgreSQL refuses to run as root; as root the data and socket folders are given to the
/// `postgres` user and the server binaries run through `runuser -u postgres --`.
public final class EmbeddedPostgres: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let folder: String
    public var socketFolder: String { folder + "/socket" }
    public var dataFolder: String { folder + "/data" }
    /// A libpq connection string for the server's `postgres` database.
    public var connectionString: String { "host=\(socketFolder) user=postgres dbname=postgres" }
    private var running = false
    private let interruption = NSLock()
    private var interruptedBySignal = false
    /// A signal arrived and `stopOnInterrupt`'s handler is stopping the server and will end the
    /// process; work that fails for want of the server meanwhile should wait for that.
    public var interrupted: Bool { interruption.withLock { interruptedBySignal } }

    /// Where Debian keeps the server binaries; overridable with DUMPFLEET_PG_BIN.
    public static var binaries: String {
        ProcessInfo.processInfo.environment["DUMPFLEET_PG_BIN"] ?? "/usr/lib/postgresql/15/bin"
    }

    /// Whether commits survive a crash of the machine. Scratch servers need not, and run
    /// several times faster without flushing; a benchmark of the queue measures both.
    public enum Durability: Sendable {
        /// fsync, synchronous_commit and full_page_writes off.
        case scratch
        /// PostgreSQL's defaults: every commit flushed to disk.
        case durable
    }

    public let durability: Durability

    public init(folder: String? = nil, durability: Durability = .scratch) {
        self.folder = folder ?? NSTemporaryDirectory() + "dumpfleet-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        self.durability = durability
    }

    /// The server's command-line settings (pg_ctl -o).
    private var serverOptions: String {
        let flushing = durability == .scratch ? " -c fsync=off -c synchronous_commit=off -c full_page_writes=off" : ""
        return "-k \(socketFolder) -c listen_addresses=\(flushing) -c max_connections=200"
    }

    /// Creates the cluster and starts the server; returns once it accepts connections.
    public func start() throws {
        guard FileManager.default.isExecutableFile(atPath: Self.binaries + "/initdb") else {
            throw Failure(description: "PostgreSQL server binaries are not in \(Self.binaries) (install the postgresql package, or set DUMPFLEET_PG_BIN)")
        }
        let asRoot = getuid() == 0
        for path in [folder, dataFolder, socketFolder] {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            if asRoot { try run("/bin/chown", ["postgres:postgres", path]) }
        }
        // The server's user must also be able to pass through every parent folder; one that
        // only root may enter (a home folder, a mkdtemp folder) would fail later, in initdb.
        if asRoot, (try? run("/usr/sbin/runuser", ["-u", "postgres", "--", "/usr/bin/test", "-w", dataFolder])) == nil {
            throw Failure(description: "the postgres user cannot reach \(folder): a parent folder is closed to other users "
                          + "(PostgreSQL refuses to run as root, so it runs as postgres); choose a folder under /tmp")
        }
        try server("initdb", ["-D", dataFolder, "--auth=trust", "--username=postgres", "--no-sync", "--encoding=UTF8", "--locale=C"])
        try server("pg_ctl", ["-D", dataFolder, "-l", folder + "/server.log", "-w", "-t", "60", "start",
                              "-o", serverOptions])
        running = true
    }

    /// Stops the server (fast shutdown) and removes its folder.
    public func stop() {
        guard running else { return }
        running = false
        try? server("pg_ctl", ["-D", dataFolder, "-m", "fast", "-w", "stop"])
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// Stops the server when the process gets SIGINT or SIGTERM, runs `cleanup`, and exits
    /// with 128 + the signal: a demo or benchmark stopped with Ctrl-C leaves no server behind.
    /// Keep the returned sources alive for as long as that should hold.
    public func stopOnInterrupt(then cleanup: @escaping @Sendable () -> Void = {}) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [self] in
                interruption.withLock { interruptedBySignal = true }
                stop()
                cleanup()
                exit(128 + number)
            }
            source.resume()
            return source
        }
    }

    /// Restarts the server, for tests of reconnection.
    public func restart() throws {
        try server("pg_ctl", ["-D", dataFolder, "-m", "fast", "-w", "-t", "60", "restart",
                              "-o", serverOptions])
    }

    deinit { stop() }

    func server(_ tool: String, _ arguments: [String]) throws {
        let path = Self.binaries + "/" + tool
        if getuid() == 0 {
            try run("/usr/sbin/runuser", ["-u", "postgres", "--", path] + arguments)
        } else {
            try run(path, arguments)
        }
    }

    /// Runs a program to completion with posix_spawn and waitpid: Foundation's Process waits
    /// through a run loop, which can starve when every cooperative thread is blocked. Output goes
    /// to a file, not a pipe: `pg_ctl start` leaves the server running with the same output, and
    /// a pipe would never reach end-of-file.
    func run(_ executable: String, _ arguments: [String]) throws {
        let outputPath = folder + "/\(URL(fileURLWithPath: executable).lastPathComponent).out"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else { throw Failure(description: "cannot run \(executable): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1, errno == EINTR {}
        let exited = status & 0x7F == 0
        let code = (status >> 8) & 0xFF
        guard exited, code == 0 else {
            let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            let log = (try? String(contentsOfFile: folder + "/server.log", encoding: .utf8)).map { "\nserver log:\n" + $0.suffix(2000) } ?? ""
            throw Failure(description: "\(URL(fileURLWithPath: executable).lastPathComponent) \(arguments.first ?? "") failed (status \(exited ? code : -1)): \(text.suffix(2000))\(log)")
        }
    }
}
