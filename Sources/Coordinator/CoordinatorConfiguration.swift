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
    /// How often expired leases are returned to the queue.
    public var reapIntervalSeconds: Double = 5
    /// Database connections shared by the request handlers.
    public var databaseConnections = 8

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
            let secret = String(words.last!)
            guard secret.count >= 16 else { throw ConfigurationError(description: "tokens file line \(index + 1): a token needs at least 16 characters") }
            tokens.append(AccessToken(name: words.count == 2 ? String(words[0]) : "token-\(tokens.count + 1)", secret: secret))
        }
        return tokens
    }
}

public struct ConfigurationError: Error, CustomStringConvertible {
    public var description: String
}
