import ArgumentParser
import Foundation
import Logging

/// Where the database is. Empty means libpq's own defaults, so the usual PGHOST, PGPORT,
/// PGUSER, PGPASSWORD and PGDATABASE variables work as they do for psql.
struct DatabaseOptions: ParsableArguments {
    @Option(name: .customLong("database"),
            help: ArgumentHelp("PostgreSQL connection string or URL (postgresql://user@host/db).", discussion: "Default: $DUMPFLEET_DATABASE, else libpq's PG* variables."))
    var connection: String = ProcessInfo.processInfo.environment["DUMPFLEET_DATABASE"] ?? ""
}

/// Which coordinator to talk to, and the bearer token to show it.
struct ServerOptions: ParsableArguments {
    @Option(help: "Coordinator URL (default: $DUMPFLEET_SERVER, else http://127.0.0.1:8080).")
    var server: String = ProcessInfo.processInfo.environment["DUMPFLEET_SERVER"] ?? "http://127.0.0.1:8080"

    @Option(help: "Bearer token (default: $DUMPFLEET_TOKEN).")
    var token: String = ProcessInfo.processInfo.environment["DUMPFLEET_TOKEN"] ?? ""

    func validate() throws {
        guard server.hasPrefix("http://") || server.hasPrefix("https://") else { throw ValidationError("--server must be an http:// or https:// URL") }
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
