import ArgumentParser
import Foundation
import SymbolStore
import Logging

/// Where the database is. Empty means libpq's own defaults, so the usual PGHOST, PGPORT,
/// PGUSER, PGPASSWORD and PGDATABASE variables work as they do for psql.
///
/// The environment is read when the value is used, not as the option's default: `--help`
/// prints defaults, and a connection string may hold a password.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("database"),
            help: ArgumentHelp("PostgreSQL connection string or URL (postgresql://user@host/db).", discussion: "Default: $DUMPFLEET_DATABASE, else libpq's PG* variables."))
    var given: String?

    var connection: String { given ?? ProcessInfo.processInfo.environment["DUMPFLEET_DATABASE"] ?? "" }
}

/// Which coordinator to talk to, and the bearer token to show it.
struct ServerOptions: ParsableArguments {
    @Option(help: "Coordinator URL (default: $DUMPFLEET_SERVER, else http://127.0.0.1:8080).")
    var server: String = ProcessInfo.processInfo.environment["DUMPFLEET_SERVER"] ?? "http://127.0.0.1:8080"

    /// Like the database's, the token's default is read when used, so `--help` never shows it.
    @Option(name: .customLong("token"), help: "Bearer token (default: $DUMPFLEET_TOKEN).")
    var givenToken: String?

    var token: String { givenToken ?? ProcessInfo.processInfo.environment["DUMPFLEET_TOKEN"] ?? "" }

    func validate() throws {
        guard server.hasPrefix("http://") || server.hasPrefix("https://") else { throw ValidationError("--server must be an http:// or https:// URL") }
    }

    /// For commands that send dumps: the coordinator takes none without a token.
    func requireToken() throws {
        guard !token.isEmpty else { throw ValidationError("--token (or $DUMPFLEET_TOKEN) is required") }
    }
}

/// Logs for long-running commands: one line per event on stderr, `key=value` metadata.
enum FleetLogging {
    static func bootstrap(level: Logger.Level = .info) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = ProcessInfo.processInfo.environment["DUMPFLEET_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? level
            return handler
        }
    }
}

/// Prints to stderr.
func warn(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// A length of time on the command line: `90` or `90s` (seconds), `15m`, `24h`, `2d`.
struct Seconds: ExpressibleByArgument, CustomStringConvertible {
    var value: Double

    init(_ value: Double) { self.value = value }

    init?(argument: String) {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var text = Substring(argument)
        var unit = 1.0
        if let last = text.last, let factor = units[last] {
            unit = factor
            text = text.dropLast()
        }
        guard let number = Double(text), number.isFinite, number >= 0 else { return nil }
        value = number * unit
    }

    var description: String {
        for (unit, size) in [("d", 86400.0), ("h", 3600), ("m", 60)] where value >= size && value.truncatingRemainder(dividingBy: size) == 0 {
            return "\(Int(value / size))\(unit)"
        }
        return value == value.rounded() ? "\(Int(value))s" : "\(value)s"
    }
}

/// `--symbols DIR`, repeatable: a site's symbol store (symstore's `name.pdb/GUIDAGE/name.pdb`)
/// or Volatility ISF tables (`.json`, `.json.xz`).
struct SymbolOptions: ParsableArguments {
    @Option(name: .customLong("symbols"), help: ArgumentHelp(
        "A folder of symbol files, optional and offline (repeatable).",
        discussion: "PDBs in symstore's layout (ntkrnlmp.pdb/GUIDAGE/ntkrnlmp.pdb) or Volatility ISF tables (.json, .json.xz), found by "
            + "the PDB identity in each image's debug directory. With them, frames are named by function and a Windows build the offset "
            + "tables lack takes its offsets from the kernel's own types; signatures and buckets stay the same.",
        valueName: "dir"))
    var directories: [String] = []

    /// The directories as a symbol source; nil when none was given. Fails on a missing folder.
    func source() throws -> SymbolDirectories? {
        directories.isEmpty ? nil : try SymbolDirectories(directories)
    }
}
