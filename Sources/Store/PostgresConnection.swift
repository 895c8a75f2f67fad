import CLibPQ
#if canImport(Glibc)
import Glibc
#endif

/// One libpq connection. Every value travels as a text bind parameter (`$1`, `$2`, ...), never
/// spliced into SQL. libpq is blocking: use a connection from one thread at a time, on a
/// thread you own (not the cooperative async pool).
public final class PostgresConnection: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible, Equatable {
        /// SQLSTATE, e.g. "40001" (serialization failure) or "08006" (connection failure).
        public var sqlState: String?
        public var message: String
        public var description: String { sqlState.map { "\(message) [SQLSTATE \($0)]" } ?? message }

        /// The server could not be reached or dropped the connection (class 08, or the
        /// server shutting down: 57P01 to 57P03), as opposed to a statement it refused.
        public var isConnectionFailure: Bool {
            guard let sqlState else { return false }
            return sqlState.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(sqlState)
        }
    }

    /// Rows of text values (nil for SQL NULL), in the order the query returned them.
    public struct Rows: Sendable {
        public var columns: [String]
        public var values: [[String?]]
        /// Rows an INSERT/UPDATE/DELETE touched.
        public var affected: Int

        public var count: Int { values.count }
        public subscript(row: Int, column: String) -> String? {
            guard let index = columns.firstIndex(of: column) else { return nil }
            return values[row][index]
        }
    }

    private var connection: OpaquePointer?
    private var prepared: [String: String] = [:]
    /// Statements that succeeded on this connection (the pool reads it to tell whether a body
    /// that failed had done anything before the connection broke).
    public private(set) var completedStatements = 0

    /// The connection string is never kept, printed or put in an error: it may hold a password.
    ///
    /// Unless the string says otherwise, a connection attempt gives up after 10 s and a server
    /// that stops answering (a network that drops packets rather than refusing them) is given
    /// up on after about a minute, instead of the operating system's two hours: a coordinator
    /// must not hang every request on a database that went silent.
    public init(_ connectionString: String) throws {
        var defaults: [(String, String)] = [("keepalives_idle", "30"), ("keepalives_interval", "10"), ("keepalives_count", "3"),
                                            ("tcp_user_timeout", "60000")]
        if getenv("PGCONNECT_TIMEOUT") == nil { defaults.append(("connect_timeout", "10")) }
        // Entries before an expanded dbname are defaults that the connection string overrides.
        let keywords = defaults.map(\.0) + ["dbname"], values = defaults.map(\.1) + [connectionString]
        connection = Self.withCStrings(keywords) { keywords in
            Self.withCStrings(values) { values in PQconnectdbParams(keywords, values, 1) }
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.redacted(Self.errorText(connection), connectionString: connectionString)
            PQfinish(connection)
            connection = nil
            throw Failure(sqlState: "08001", message: "cannot connect to PostgreSQL: \(message)")
        }
        // Server notices (and the FATAL a server sends as it shuts down) would go to stderr
        // by default; errors reach callers as thrown Failures instead.
        PQsetNoticeProcessor(connection, { _, _ in }, nil)
        _ = try execute("SET client_min_messages TO warning")
    }

    deinit { PQfinish(connection) }

    public var isHealthy: Bool { PQstatus(connection) == CONNECTION_OK }

    /// The server-side process id of this connection (for pg_terminate_backend in tests).
    public var backendProcessId: Int32 { PQbackendPID(connection) }

    /// Runs one statement with text parameters. Statements are prepared on first use and
    /// reused by name afterwards, so the server parses and plans each SQL text once per
    /// connection (a queue completion is a five-part statement: planning it every time cost
    /// more than running it).
    @discardableResult
    public func execute(_ sql: String, _ parameters: [String?] = []) throws -> Rows {
        let name = try preparedName(sql, parameterCount: parameters.count)
        let result = withTextParameters(parameters) { values in
            if let name { return PQexecPrepared(connection, name, Int32(parameters.count), values, nil, nil, 0) }
            return PQexecParams(connection, sql, Int32(parameters.count), nil, values, nil, nil, 0)
        }
        defer { PQclear(result) }
        let rows = try check(result)
        completedStatements += 1
        return rows
    }

    /// The prepared statement's name for `sql`, preparing it if new; nil once the cache is full.
    private func preparedName(_ sql: String, parameterCount: Int) throws -> String? {
        if let name = prepared[sql] { return name }
        guard prepared.count < Self.preparedLimit else { return nil }
        let name = "dumpfleet_\(prepared.count)"
        let result = PQprepare(connection, name, sql, Int32(parameterCount), nil)
        defer { PQclear(result) }
        _ = try check(result)
        prepared[sql] = name
        return name
    }

    /// Distinct statements kept prepared per connection; more run unprepared.
    static let preparedLimit = 256

    private func check(_ result: OpaquePointer?) throws -> Rows {
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK:
            return Self.rows(result)
        default:
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            let message = PQresultErrorMessage(result).map { String(cString: $0) } ?? Self.errorText(connection)
            throw Failure(sqlState: state ?? (isHealthy ? nil : "08006"), message: message.trimmingTrailingNewlines)
        }
    }

    /// Runs a script of several statements (no parameters: the simple query protocol), such as
    /// a migration file.
    public func executeScript(_ sql: String) throws {
        let result = PQexec(connection, sql)
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY else {
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            throw Failure(sqlState: state, message: (PQresultErrorMessage(result).map { String(cString: $0) } ?? Self.errorText(connection)).trimmingTrailingNewlines)
        }
    }

    /// Runs `body` in a transaction, committing on return and rolling back on a throw.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            _ = try? execute("ROLLBACK")
            throw error
        }
    }

    // MARK: LISTEN / NOTIFY

    /// The socket to poll(2) for notifications.
    public var socket: Int32 { PQsocket(connection) }

    /// Notifications received so far (channel, payload); call after the socket turned readable.
    public func notifications() throws -> [(channel: String, payload: String)] {
        guard PQconsumeInput(connection) == 1 else {
            throw Failure(sqlState: "08006", message: "connection lost: \(Self.errorText(connection))")
        }
        var received: [(String, String)] = []
        while let notify = PQnotifies(connection) {
            received.append((String(cString: notify.pointee.relname), String(cString: notify.pointee.extra)))
            PQfreemem(notify)
        }
        return received
    }

    /// Waits up to `milliseconds` for a notification (or data) on the socket.
    public func waitForNotification(milliseconds: Int32) throws -> [(channel: String, payload: String)] {
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        _ = poll(&descriptor, 1, milliseconds)
        return try notifications()
    }

    // MARK: helpers

    static func rows(_ result: OpaquePointer?) -> Rows {
        let columns = (0..<PQnfields(result)).map { String(cString: PQfname(result, $0)) }
        let values = (0..<PQntuples(result)).map { row in
            (0..<PQnfields(result)).map { column -> String? in
                PQgetisnull(result, row, column) == 1 ? nil : String(cString: PQgetvalue(result, row, column))
            }
        }
        let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
        return Rows(columns: columns, values: values, affected: affected)
    }

    /// libpq's connection error without anything of the connection string: libpq quotes the
    /// string's words when it cannot parse it, so a string it cannot parse gives no detail at
    /// all, and a password that appears in the text anyway is blanked.
    static func redacted(_ message: String, connectionString: String) -> String {
        var parseError: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(connectionString, &parseError) else {
            if let parseError { PQfreemem(parseError) }
            return "the connection string is not one libpq can parse (it is not shown: it may hold a password)"
        }
        defer { PQconninfoFree(options) }
        var secrets: [String] = []
        var socketFolders: [String] = []
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val, value.pointee != 0 {
                switch String(cString: keyword) {
                case "password": secrets.append(String(cString: value))
                // A host that is a folder is a Unix socket's: libpq names the socket file in
                // its messages, and a path of the server's stays out of the log.
                case "host" where value.pointee == UInt8(ascii: "/"): socketFolders += String(cString: value).split(separator: ",").map(String.init)
                default: break
                }
            }
            option += 1
        }
        var text = message
        for secret in secrets { text = text.replacingAll(secret, with: "********") }
        for folder in socketFolders { text = text.replacingAll(folder, with: "(socket folder)") }
        return text
    }

    static func errorText(_ connection: OpaquePointer?) -> String {
        PQerrorMessage(connection).map { String(cString: $0) }?.trimmingTrailingNewlines ?? "unknown libpq error"
    }

    /// Calls `body` with a NULL-terminated array of C strings, kept alive for the call.
    static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        let copies = strings.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        let pointers = copies.map { UnsafePointer($0) } + [nil]
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// Calls `body` with C strings for the parameters, kept alive for the call.
    private func withTextParameters<R>(_ parameters: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        let copies = parameters.map { $0.map { strdup($0) } ?? nil }
        defer { copies.forEach { free($0) } }
        return body(copies.map { $0.map { UnsafePointer($0) } })
    }
}

extension PostgresConnection {
    /// A PostgreSQL array literal (`{1,2,3}`) for a bind parameter cast to `bigint[]`.
    public static func arrayLiteral(_ values: [Int64]) -> String { "{" + values.map(String.init).joined(separator: ",") + "}" }

    /// A PostgreSQL array literal of strings, each quoted and escaped, for a `text[]` parameter.
    public static func arrayLiteral(_ values: [String]) -> String {
        var literal = "{"
        for (index, value) in values.enumerated() {
            if index > 0 { literal += "," }
            literal += "\""
            if value.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") }) {
                for character in value.unicodeScalars {
                    if character == "\\" || character == "\"" { literal += "\\" }
                    literal.unicodeScalars.append(character)
                }
            } else {
                literal += value
            }
            literal += "\""
        }
        return literal + "}"
    }
}

extension String {
    /// Every occurrence of `target` replaced (without Foundation, which this file does not use).
    func replacingAll(_ target: String, with replacement: String) -> String {
        let text = Array(utf8), pattern = Array(target.utf8)
        guard !pattern.isEmpty, text.count >= pattern.count else { return self }
        var result: [UInt8] = []
        var index = 0
        while index < text.count {
            if index + pattern.count <= text.count && text[index..<index + pattern.count].elementsEqual(pattern) {
                result += replacement.utf8
                index += pattern.count
            } else {
                result.append(text[index])
                index += 1
            }
        }
        return String(decoding: result, as: UTF8.self)
    }

    var trimmingTrailingNewlines: String {
        var text = self
        while text.last == "\n" || text.last == " " { text.removeLast() }
        return text
    }
}
