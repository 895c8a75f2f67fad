/// The bodies of the coordinator's upload API (deploy/API.md has the whole protocol).
///
/// An upload is three steps. The client announces the dump by its content hash and size; the server
/// answers `known` when it has the dump already (the new upload and VM are recorded, no bytes
/// move) or opens a session and says how many compressed bytes it holds. The client then
/// appends the dump's LZ4 frame from that offset (`PATCH` with `Upload-Offset`), and finally
/// asks the server to verify and store it. A client that was interrupted announces again and
/// gets the same session back with the offset to go on from.

/// `POST /v1/uploads`
public struct UploadAnnouncement: Codable, Sendable, Equatable {
    public var contentHash: String
    /// Uncompressed bytes.
    public var size: UInt64
    public var vm: String
    public var host: String?
    public var tags: [String: String]
    public var fileName: String?

    public init(contentHash: String, size: UInt64, vm: String, host: String? = nil, tags: [String: String] = [:], fileName: String? = nil) {
        self.contentHash = contentHash
        self.size = size
        self.vm = vm
        self.host = host
        self.tags = tags
        self.fileName = fileName
    }

    enum CodingKeys: String, CodingKey {
        case contentHash, size, vm, host, tags, fileName
    }

    /// `tags` may be left out (deploy/API.md says so), as may `host` and `fileName`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        contentHash = try container.decode(String.self, forKey: .contentHash)
        size = try container.decode(UInt64.self, forKey: .size)
        vm = try container.decode(String.self, forKey: .vm)
        host = try container.decodeIfPresent(String.self, forKey: .host)
        tags = try container.decodeIfPresent([String: String].self, forKey: .tags) ?? [:]
        fileName = try container.decodeIfPresent(String.self, forKey: .fileName)
    }
}

/// The answer to an announcement, to a `PATCH`, to `finish` and to a plain upload (`PUT /v1/plain`).
public struct UploadStatus: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        /// The server holds this dump already; the upload was recorded against it.
        case known
        /// A session waits for bytes from `received` on.
        case open
        /// The bytes verified and the dump is stored and queued.
        case stored
    }

    public var state: State
    public var uploadId: String?
    /// Compressed bytes the session holds.
    public var received: UInt64?
    public var dumpId: Int64?
    public var jobId: Int64?

    public init(state: State, uploadId: String? = nil, received: UInt64? = nil, dumpId: Int64? = nil, jobId: Int64? = nil) {
        self.state = state
        self.uploadId = uploadId
        self.received = received
        self.dumpId = dumpId
        self.jobId = jobId
    }
}

/// Every error the API returns: `{"error": "..."}` with an HTTP status that says the kind.
public struct APIError: Codable, Sendable, Error, CustomStringConvertible {
    public var error: String
    /// For a `PATCH` at the wrong offset: where the session really is.
    public var received: UInt64?

    public init(error: String, received: UInt64? = nil) {
        self.error = error
        self.received = received
    }

    public var description: String { error }
}

/// Header names of the upload protocol.
public enum UploadHeaders {
    /// The compressed offset a `PATCH` body starts at; it must equal what the session holds.
    public static let offset = "Upload-Offset"
}
