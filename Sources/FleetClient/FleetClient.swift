import AsyncHTTPClient
import FleetAPI
import Foundation
import NIOCore

/// The coordinator's API from the client side (deploy/API.md): uploads, status queries and
/// blob downloads, each request carrying the bearer token.
public struct FleetClient: Sendable {
    /// An answer that was not a success, with the server's message.
    public struct Failure: Error, CustomStringConvertible {
        public var status: Int
        public var message: String
        /// For an upload request: where the upload really is.
        public var received: UInt64?
        /// The server's `Retry-After`: trying again after this many seconds can help.
        public var retryAfter: Int?
        public var description: String { status == 0 ? message : "\(message) (HTTP \(status))" }

        public init(status: Int, message: String, received: UInt64? = nil, retryAfter: Int? = nil) {
            self.status = status
            self.message = message
            self.received = received
            self.retryAfter = retryAfter
        }
    }

    /// The coordinator's base URL, e.g. http://coordinator:8080 (no trailing slash).
    public let server: String
    public let token: String
    let http: HTTPClient

    public init(server: String, token: String) {
        var trimmed = server
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.server = trimmed
        self.token = token
        http = HTTPClient.shared
    }

    // MARK: uploads

    public func announce(_ announcement: UploadAnnouncement) async throws -> UploadStatus {
        try await send("POST", "/v1/uploads", json: announcement)
    }

    public func session(_ id: String) async throws -> UploadStatus {
        try await send("GET", "/v1/uploads/\(id)")
    }

    /// Appends `body` (the next compressed bytes) to an upload session at `offset`.
    public func append<Body: AsyncSequence & Sendable>(session id: String, offset: UInt64, body: Body) async throws -> UploadStatus
    where Body.Element == ByteBuffer {
        var request = makeRequest("PATCH", "/v1/uploads/\(id)")
        request.headers.add(name: UploadHeaders.offset, value: String(offset))
        request.headers.add(name: "Content-Type", value: "application/x-lz4")
        request.body = .stream(body, length: .unknown)
        return try await decode(try await http.execute(request, timeout: .hours(24)))
    }

    public func finish(session id: String) async throws -> UploadStatus {
        try await send("POST", "/v1/uploads/\(id)/finish", timeout: .hours(1))
    }

    /// Sends a dump as it is produced, as the chunked body of a plain upload (`PUT /v1/plain`):
    /// the coordinator hashes and compresses it as it arrives and stores it once the body is
    /// whole, or answers `known` for a dump it has. A `body` that throws aborts the request
    /// before its last chunk, so the coordinator stores nothing.
    public func putPlain<Body: AsyncSequence & Sendable>(body: Body, vm: String, host: String?, tags: [String: String], fileName: String?) async throws -> UploadStatus
    where Body.Element == ByteBuffer {
        var query = [("vm", vm)]
        if let host { query.append(("host", host)) }
        query += tags.sorted { $0.key < $1.key }.map { ("tag", "\($0.key)=\($0.value)") }
        if let fileName { query.append(("file", fileName)) }
        let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        let encoded = query.map { "\($0)=\($1.addingPercentEncoding(withAllowedCharacters: unreserved) ?? "")" }
        var request = makeRequest("PUT", "/v1/plain?" + encoded.joined(separator: "&"))
        request.headers.add(name: "Content-Type", value: "application/octet-stream")
        request.body = .stream(body, length: .unknown)
        return try await decode(try await http.execute(request, timeout: .hours(24)))
    }

    // MARK: reading

    public func status() async throws -> QueueStatus { try await send("GET", "/v1/status") }
    /// The name of the token, as the coordinator knows it (a cheap check that it accepts the token).
    /// A coordinator that does not answer fails it after `timeout` (connection attempts go on
    /// until then).
    public func whoami(timeout: TimeAmount = .seconds(60)) async throws -> Caller { try await send("GET", "/v1/whoami", timeout: timeout) }
    public func dump(_ id: Int64) async throws -> DumpStatus { try await send("GET", "/v1/dumps/\(id)") }
    public func job(_ id: Int64) async throws -> JobStatus { try await send("GET", "/v1/jobs/\(id)") }

    // MARK: similarity and clusters

    public func similar(toDump id: Int64, top: Int) async throws -> [SimilarCrash] { try await send("GET", "/v1/similar/\(id)?top=\(top)") }

    /// Crashes like one analyzed here: `signature` is the report's signature object.
    public func similar(toSignature signature: some Encodable, top: Int) async throws -> [SimilarCrash] {
        try await send("POST", "/v1/similar?top=\(top)", json: signature)
    }

    public func clusters(since: String?) async throws -> [ClusterSummary] {
        try await send("GET", "/v1/clusters" + (since.map { "?since=\($0)" } ?? ""))
    }

    public func cluster(_ id: Int64) async throws -> ClusterDetail { try await send("GET", "/v1/clusters/\(id)") }

    public func merge(cluster id: Int64, into target: Int64) async throws -> ClusterDetail {
        try await send("POST", "/v1/clusters/\(id)/merge", json: ClusterMerge(into: target))
    }

    public func split(cluster id: Int64, dumps: [Int64]) async throws -> ClusterDetail {
        try await send("POST", "/v1/clusters/\(id)/split", json: ClusterSplit(dumps: dumps))
    }

    /// A dump's analyze report, as the JSON text the worker stored.
    public func report(dumpId: Int64) async throws -> String {
        let response = try await http.execute(makeRequest("GET", "/v1/dumps/\(dumpId)/report"), timeout: .seconds(60))
        let body = try await response.body.collect(upTo: 64 << 20)
        guard response.status.code == 200 else { throw Self.failure(status: Int(response.status.code), body: body) }
        return String(buffer: body)
    }

    /// Streams a blob (an LZ4 frame) into `path`; returns the bytes written.
    public func download(blob contentHash: String, to path: String) async throws -> UInt64 {
        let response = try await http.execute(makeRequest("GET", "/v1/blobs/\(contentHash)"), timeout: .hours(24))
        guard response.status.code == 200 else {
            throw Self.failure(status: Int(response.status.code), body: try await response.body.collect(upTo: 1 << 20))
        }
        guard let output = FileHandle(forWritingAtPath: path) ?? (FileManager.default.createFile(atPath: path, contents: nil) ? FileHandle(forWritingAtPath: path) : nil) else {
            throw WriteFailure(description: "cannot create \(path)", code: nil)
        }
        defer { try? output.close() }
        try output.truncate(atOffset: 0)
        var written: UInt64 = 0
        for try await buffer in response.body {
            do {
                try output.write(contentsOf: Data(buffer.readableBytesView))
            } catch {
                let posix = (error as NSError).domain == NSPOSIXErrorDomain ? Int32((error as NSError).code) : nil
                throw WriteFailure(description: "cannot write \(path): \(posix.map { String(cString: strerror($0)) } ?? "\(error)")", code: posix)
            }
            written += UInt64(buffer.readableBytes)
        }
        if let expected = response.headers.first(name: "Content-Length").flatMap({ UInt64($0) }), written != expected {
            throw Failure(status: 0, message: "the download of blob \(contentHash) ended after \(written) of \(expected) bytes")
        }
        return written
    }

    /// Writing a download to local disk failed (a full scratch disk, say): the client's own
    /// trouble, not the server's.
    public struct WriteFailure: Error, CustomStringConvertible {
        public var description: String
        /// The errno, when the system gave one.
        public var code: Int32?
        public var isDiskFull: Bool { code == ENOSPC || code == EDQUOT }
    }

    // MARK: plumbing

    func makeRequest(_ method: String, _ path: String) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: server + path)
        request.method = .RAW(value: method)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        return request
    }

    func send<Answer: Decodable>(_ method: String, _ path: String, timeout: TimeAmount = .seconds(60)) async throws -> Answer {
        try await decode(try await http.execute(makeRequest(method, path), timeout: timeout))
    }

    func send<Answer: Decodable>(_ method: String, _ path: String, json: some Encodable) async throws -> Answer {
        var request = makeRequest(method, path)
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(json)))
        return try await decode(try await http.execute(request, timeout: .seconds(60)))
    }

    func decode<Answer: Decodable>(_ response: HTTPClientResponse) async throws -> Answer {
        let body = try await response.body.collect(upTo: 16 << 20)
        guard (200..<300).contains(Int(response.status.code)) else {
            var failure = Self.failure(status: Int(response.status.code), body: body)
            failure.retryAfter = response.headers.first(name: "Retry-After").flatMap { Int($0) }
            throw failure
        }
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(body.readableBytesView))
        } catch {
            throw Failure(status: Int(response.status.code), message: "unexpected answer from the coordinator: \(String(buffer: body).prefix(200))")
        }
    }

    static func failure(status: Int, body: ByteBuffer) -> Failure {
        if let error = try? JSONDecoder().decode(APIError.self, from: Data(body.readableBytesView)) {
            return Failure(status: status, message: error.error, received: error.received)
        }
        return Failure(status: status, message: String(buffer: body).prefix(200).description)
    }
}
