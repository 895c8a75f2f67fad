/// How a coordinator runs: where it listens, its database and blob store, who may call it.
public struct CoordinatorConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// 0 picks a free port (tests, the demo); `Coordinator.start` reports the one bound.
    public var port = 8080
    /// A libpq connection string or URL.
    public var database: String
    /// The blob store's folder (local disk or a shared mount the workers may read directly).
    public var blobRoot: String
    /// Bearer tokens accepted by the /v1 API, each with the name uploads are recorded under.
    public var tokens: [AccessToken]
    /// The largest dump accepted, uncompressed.
    public var maxUploadBytes: UInt64 = 64 << 30
    /// The analyzer version new dumps are queued for.
    public var analyzerVersion: Int
    /// How often expired leases are returned to the queue (and idle upload sessions expired).
    public var reapIntervalSeconds: Double = 5
    /// Database connections shared by the request handlers.
    public var databaseConnections = 8
    /// Threads that write, decode and hash upload bytes (0: one per core).
    public var computeThreads = 0

    // Limits (deploy/OPERATIONS.md, "Limits"):
    /// How long a connection may stay silent (while a request arrives, or between requests)
    /// before it is closed. A PATCH whose client vanished lets its session go after this long.
    public var idleTimeoutSeconds: Double = 30
    /// Connections served at once (0: as many as the open-files limit leaves room for).
    public var maxConnections = 0
    /// Connections from one address at once (0: no limit). Behind a proxy every client has the
    /// proxy's address: raise it there.
    public var maxConnectionsPerAddress = 64
    /// PATCHes streaming at once; more are answered 503 with Retry-After.
    public var maxUploadsInProgress = 64
    /// Open upload sessions one token may hold, and the bytes they may announce in all.
    public var maxSessionsPerToken = 256
    public var maxSessionBytesPerToken: UInt64 = 2 << 40
    /// An upload session nothing arrives for in this long expires, and its bytes are deleted.
    public var sessionIdleSeconds: Double = 24 * 3600
    /// Free space kept on the blob store's disk: uploads that would eat into it get 507.
    public var minFreeBytes: UInt64 = 512 << 20
    /// How often the queue gauges of /metrics are read from the database.
    public var metricsRefreshSeconds: Double = 15

    public init(database: String, blobRoot: String, tokens: [AccessToken], analyzerVersion: Int) {
        self.database = database
        self.blobRoot = blobRoot
        self.tokens = tokens
        self.analyzerVersion = analyzerVersion
    }
}

/// A bearer token and whose it is (`uploaded_by` in the uploads table).
public struct AccessToken: Sendable, Equatable {
    public var name: String
    public var secret: String

    public init(name: String, secret: String) {
        self.name = name
        self.secret = secret
    }

    /// Reads a tokens file: one token per line, as `NAME TOKEN` or a bare `TOKEN` (named
    /// "token-N"); blank lines and lines starting with # are skipped.
    public static func parse(file text: String) throws -> [AccessToken] {
        var tokens: [AccessToken] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.isEmpty || words[0].hasPrefix("#") { continue }
            guard words.count <= 2 else { throw ConfigurationError(description: "tokens file line \(index + 1): expected NAME TOKEN or TOKEN") }
            let token = AccessToken(name: words.count == 2 ? String(words[0]) : "token-\(tokens.count + 1)", secret: String(words.last!))
            do { try token.validate() } catch let error as ConfigurationError {
                throw ConfigurationError(description: "tokens file line \(index + 1): \(error.description)")
            }
            tokens.append(token)
        }
        return tokens
    }

    /// Characters a token needs at least: 16 random ones are 80 bits and more (`openssl rand
    /// -hex 24` gives 48).
    public static let minimumLength = 16

    /// Throws unless the secret could be a real token: long enough, and not one of the samples
    /// in this repository's deployment files (a compose file that fell back to its sample token
    /// once left a fleet open to anyone who read the file).
    public func validate() throws {
        guard secret.count >= Self.minimumLength else {
            throw ConfigurationError(description: "the token \"\(name)\" has \(secret.count) characters; a token needs at least \(Self.minimumLength) (try: openssl rand -hex 24)")
        }
        let lowered = secret.lowercased()
        if ["example", "replace-me", "change-me", "changeme"].contains(where: { lowered.contains($0) }) {
            throw ConfigurationError(description: "the token \"\(name)\" is a sample from the documentation; make a real one (openssl rand -hex 24)")
        }
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public var description: String
}
