import BlobStore
import FleetAPI
import Foundation
import Hummingbird
import Store

/// The read side: queue overview, dumps, jobs, reports, blob download for workers, and the
/// unauthenticated health and metrics endpoints.
struct QueryRoutes: Sendable {
    let work: BlockingWork
    let catalog: Catalog
    let blobs: BlobStore
    let metrics: CoordinatorMetrics

    func add(to group: RouterGroup<CoordinatorContext>) {
        group.get("status", use: status)
        group.get("dumps/:id", use: dump)
        group.get("dumps/:id/report", use: report)
        group.get("jobs/:id", use: job)
        group.get("blobs/:hash", use: blob)
    }

    func addPublic(to router: Router<CoordinatorContext>) {
        router.get("healthz", use: health)
        router.get("metrics", use: prometheus)
    }

    @Sendable func health(_ request: Request, context: CoordinatorContext) async throws -> Response {
        do {
            let version = try await work.database { db in try Migrations.currentVersion(db) }
            return JSONBody.response(Health(status: "ok", database: "ok", schemaVersion: version))
        } catch {
            return JSONBody.response(Health(status: "degraded", database: "\(error)", schemaVersion: nil), status: .serviceUnavailable)
        }
    }

    @Sendable func prometheus(_ request: Request, context: CoordinatorContext) async throws -> Response {
        if let queue = try? await work.database({ [catalog] db in try catalog.status(on: db) }) {
            metrics.setQueue(jobs: queue.jobs, lagSeconds: queue.oldestQueuedSeconds, dumps: queue.dumps)
        }
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
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
        guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber,
              let input = FileHandle(forReadingAtPath: path) else {
            throw APIFailure(.notFound, "no blob \(contentHash)")
        }
        let reader = BlobReader(handle: input)
        return Response(status: .ok, headers: [.contentType: "application/x-lz4"],
                        body: .init(contentLength: size.intValue) { [work] writer in
            defer { reader.close() }
            while let chunk = try await work.run({ try reader.next() }) {
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
