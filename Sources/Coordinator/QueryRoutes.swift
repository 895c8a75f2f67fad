import BlobStore
import FleetAPI
import Foundation
import Hummingbird
import Logging
import Store

/// The read side: queue overview, dumps, jobs, reports, blob download for workers, and the
/// unauthenticated health and metrics endpoints, which say nothing about the database beyond
/// whether it answers and cost it nothing when scraped.
struct QueryRoutes: Sendable {
    let work: BlockingWork
    let catalog: Catalog
    let blobs: BlobStore
    let metrics: CoordinatorMetrics
    let logger: Logger
    let databaseDown = Flag()

    func add(to group: RouterGroup<CoordinatorContext>) {
        group.get("status", use: status)
        group.get("whoami") { _, context in JSONBody.response(Caller(token: context.caller ?? "")) }
        group.get("dumps/:id", use: dump)
        group.get("dumps/:id/uploads", use: uploads)
        group.get("dumps/:id/report", use: report)
        group.get("jobs/:id", use: job)
        group.get("blobs/:hash", use: blob)
    }

    func addPublic(to router: Router<CoordinatorContext>) {
        router.get("healthz", use: health)
        router.get("metrics", use: prometheus)
    }

    /// 200 when the database answers, else 503 "unavailable"; the reason goes to the log, once
    /// each time the database goes away.
    @Sendable func health(_ request: Request, context: CoordinatorContext) async throws -> Response {
        do {
            let version = try await work.health(timeout: 5) { db in try Migrations.currentVersion(db) }
            if databaseDown.change(to: false) { logger.notice("health: the database answers again") }
            return JSONBody.response(Health(status: "ok", database: "ok", schemaVersion: version))
        } catch {
            if databaseDown.change(to: true) { logger.warning("health: the database does not answer", metadata: ["error": "\(error)"]) }
            return JSONBody.response(Health(status: "degraded", database: "unavailable", schemaVersion: nil), status: .serviceUnavailable)
        }
    }

    @Sendable func prometheus(_ request: Request, context: CoordinatorContext) async throws -> Response {
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                        body: .init(byteBuffer: ByteBuffer(bytes: metrics.registry.emitToBuffer())))
    }

    @Sendable func status(_ request: Request, context: CoordinatorContext) async throws -> Response {
        JSONBody.response(try await work.database { [catalog] db in try catalog.status(on: db) })
    }

    @Sendable func dump(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let id = try Self.id(context)
        guard let dump = try await work.database({ [catalog] db in try catalog.dump(id: id, on: db) }) else {
            throw APIFailure(.notFound, "no dump \(id)")
        }
        return JSONBody.response(dump)
    }

    /// `?after=UPLOAD_ID&limit=N` (N at most 1000, default 100).
    @Sendable func uploads(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let id = try Self.id(context)
        let after = try Self.number(request, "after", default: 0, in: 0...Int64.max)
        let limit = Int(try Self.number(request, "limit", default: 100, in: 1...1000))
        let page = try await work.database { [catalog] db -> [UploadRecord]? in
            guard try catalog.dump(id: id, uploadLimit: 0, on: db) != nil else { return nil }
            return try catalog.uploads(ofDump: id, after: after, limit: limit, on: db)
        }
        guard let page else { throw APIFailure(.notFound, "no dump \(id)") }
        return JSONBody.response(UploadPage(uploads: page, next: page.count == limit ? page.last?.id : nil))
    }

    /// A whole-number query parameter within `range`, or `fallback` when absent.
    static func number(_ request: Request, _ name: String, default fallback: Int64, in range: ClosedRange<Int64>) throws -> Int64 {
        guard let text = request.uri.queryParameters.get(name) else { return fallback }
        guard let value = Int64(text), range.contains(value) else {
            throw APIFailure(.badRequest, "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    @Sendable func report(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let id = try Self.id(context)
        guard let report = try await work.database({ [catalog] db in try catalog.report(dumpId: id, on: db) }) else {
            throw APIFailure(.notFound, "dump \(id) has no report (yet)")
        }
        return JSONBody.response(rawJSON: report)
    }

    @Sendable func job(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let id = try Self.id(context)
        guard let job = try await work.database({ [catalog] db in try catalog.job(id: id, on: db) }) else {
            throw APIFailure(.notFound, "no job \(id)")
        }
        return JSONBody.response(job)
    }

    /// Streams a blob (the LZ4 frame as stored) to a worker.
    @Sendable func blob(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let contentHash = context.parameters.get("hash") ?? ""
        let path: String
        do { path = try blobs.path(of: contentHash).path } catch { throw APIFailure(.badRequest, "\(error)") }
        if try await work.database({ [catalog] db in try catalog.isBlobDamaged(contentHash: contentHash, on: db) }) {
            throw APIFailure(.gone, "the stored copy of this dump was found damaged; the next upload of the dump replaces it")
        }
        // 404 says the file is not there, and a worker takes it as the stored copy gone; any
        // other failure (out of descriptors, an I/O error) is the coordinator's, for now.
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw APIFailure(.notFound, "no blob \(contentHash)") }
            throw APIFailure(.serviceUnavailable, "the blob cannot be read now: \(String(cString: strerror(errno)))", retryAfter: 5)
        }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            close(fd)
            throw APIFailure(.serviceUnavailable, "the blob cannot be read now", retryAfter: 5)
        }
        let size = Int(status.st_size)
        let input = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let reader = BlobReader(handle: input)
        return Response(status: .ok, headers: [.contentType: "application/x-lz4"],
                        body: .init(contentLength: size) { [work] writer in
            defer { reader.close() }
            while let chunk = try await work.compute({ try reader.next() }) {
                try await writer.write(ByteBuffer(bytes: chunk))
            }
            try await writer.finish(nil)
        })
    }

    static func id(_ context: CoordinatorContext) throws -> Int64 {
        guard let text = context.parameters.get("id"), let id = Int64(text), id > 0 else {
            throw APIFailure(.badRequest, "not an id: \"\((context.parameters.get("id") ?? "").prefix(40))\"")
        }
        return id
    }
}

/// A blob file read in 1 MiB pieces.
final class BlobReader: @unchecked Sendable {
    let handle: FileHandle
    init(handle: FileHandle) { self.handle = handle }

    func next() throws -> Data? {
        let data = try handle.read(upToCount: 1 << 20) ?? Data()
        return data.isEmpty ? nil : data
    }

    func close() { try? handle.close() }
}
