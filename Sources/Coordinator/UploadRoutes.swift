import BlobStore
import FleetAPI
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Store
import Synchronization

/// The upload protocol (deploy/API.md): announce, append the LZ4 frame in one or more PATCHes,
/// finish. The compressed bytes gather in the blob store's incoming folder, named by the session
/// id, and are decoded and hashed as they arrive; `finish` checks size and hash and renames them
/// into the store, so nothing unverified ever has a blob's name.
struct UploadRoutes: Sendable {
    let work: BlockingWork
    let catalog: Catalog
    let blobs: BlobStore
    let maxUploadBytes: UInt64
    let metrics: CoordinatorMetrics
    let busy = SessionLocks()
    let verifiers = LiveVerifiers()
    let logger: Logger

    func add(to group: RouterGroup<CoordinatorContext>) {
        group.post("uploads", use: announce)
        group.get("uploads/:id", use: show)
        group.patch("uploads/:id", use: append)
        group.post("uploads/:id/finish", use: finish)
    }

    @Sendable func announce(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let announcement = try await APIFailure.decode(UploadAnnouncement.self, request, context)
        try validate(announcement)
        let caller = context.caller
        let status = try await work.database { [catalog] db in try catalog.announce(announcement, uploadedBy: caller, on: db) }
        if status.state == .known {
            metrics.uploadsKnown.increment()
            logger.info("upload of a known dump recorded", metadata: ["dump": "\(status.dumpId ?? 0)", "vm": "\(announcement.vm)"])
            return JSONBody.response(status)
        }
        guard let id = status.uploadId else { throw APIFailure(.internalServerError, "no session id") }
        let received = try receivedBytes(session: id)
        return JSONBody.response(UploadStatus(state: .open, uploadId: id, received: received), status: received == 0 ? .created : .ok)
    }

    @Sendable func show(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let session = try await openSession(context)
        return JSONBody.response(UploadStatus(state: .open, uploadId: session.id, received: try receivedBytes(session: session.id)))
    }

    /// Appends the body at `Upload-Offset`, which must be where the session is. Bytes that
    /// arrived before a dropped connection stay: the client resumes after them.
    @Sendable func append(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let session = try await openSession(context)
        guard let offsetText = request.headers[HTTPField.Name(UploadHeaders.offset)!], let offset = UInt64(offsetText) else {
            throw APIFailure(.badRequest, "a PATCH needs an \(UploadHeaders.offset) header")
        }
        guard busy.take(session.id) else { throw APIFailure(.conflict, "another connection is writing this upload") }
        defer { busy.release(session.id) }
        let path = try blobs.incomingPath(session: session.id)
        let received = try receivedBytes(session: session.id)
        guard offset == received else {
            throw APIFailure(.conflict, "the upload is at byte \(received), not \(offset)", received: received)
        }
        // An LZ4 frame is at most a little larger than its content (incompressible blocks are
        // stored raw with a 4-byte header per 4 MiB block); allow that much and no more.
        let limit = session.announcement.size + session.announcement.size / 128 + (1 << 20)
        // Verify as the bytes arrive, picking up where the last connection left off.
        let verifier = try await work.run { [verifiers] in
            let verifier = try verifiers.take(session.id).flatMap { $0.consumed <= received ? $0 : nil }
                ?? FrameVerifier(expectedSize: session.announcement.size)
            try verifier.catchUp(from: path, upTo: received)
            return verifier
        }
        let file = try AppendingFile(path: path)
        defer { file.close() }
        var total = received
        do {
            for try await buffer in request.body {
                total += UInt64(buffer.readableBytes)
                guard total <= limit else {
                    throw APIFailure(.contentTooLarge, "the upload is larger than its announced \(session.announcement.size) bytes allow")
                }
                try buffer.withUnsafeReadableBytes { try file.write($0) }
                metrics.uploadBytes.increment(by: Int64(buffer.readableBytes))
                try await work.run { try buffer.withUnsafeReadableBytes { try verifier.feed($0) } }
            }
        } catch let failure as FrameVerifier.Overflow {
            try await refuse(session, path: path, APIFailure(.contentTooLarge, "upload rejected: \(failure)"))
        } catch let failure as BlobStore.Failure {
            try await refuse(session, path: path, APIFailure(.unprocessableContent, "upload rejected: \(failure)"))
        } catch let failure as LZ4Error {
            try await refuse(session, path: path, APIFailure(.unprocessableContent, "upload rejected: \(failure)"))
        } catch let failure as APIFailure where failure.status == .contentTooLarge {
            try await refuse(session, path: path, failure)
        } catch {
            verifiers.put(session.id, verifier)  // the connection dropped: what arrived is verified and kept
            throw error
        }
        verifiers.put(session.id, verifier)
        return JSONBody.response(UploadStatus(state: .open, uploadId: session.id, received: total))
    }

    /// Checks the bytes (decoded size and SHA-256 must match the announcement; the PATCHes
    /// verified them as they came, so this is quick), moves them into the store and records
    /// dump, upload and job. A mismatch removes the bytes and closes the session with the reason.
    @Sendable func finish(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let session = try await openSession(context)
        guard busy.take(session.id) else { throw APIFailure(.conflict, "another connection is writing this upload") }
        defer { busy.release(session.id) }
        let path = try blobs.incomingPath(session: session.id)
        let announced = session.announcement
        let verifier = verifiers.take(session.id)
        do {
            try await work.run { [blobs] in try blobs.adopt(compressedFile: path, contentHash: announced.contentHash, size: announced.size, verifier: verifier) }
        } catch {
            try await refuse(session, path: path, APIFailure(.unprocessableContent, "upload rejected: \(error)"))
        }
        let status = try await work.database { [catalog] db in try catalog.finish(session, on: db) }
        metrics.uploadsStored.increment()
        logger.info("dump stored", metadata: ["dump": "\(status.dumpId ?? 0)", "job": "\(status.jobId ?? 0)", "vm": "\(announced.vm)", "bytes": "\(announced.size)"])
        return JSONBody.response(status)
    }

    // MARK: helpers

    /// Closes a session for good: its bytes are deleted and the reason kept. Always throws.
    func refuse(_ session: Catalog.Session, path: String, _ failure: APIFailure) async throws -> Never {
        try? FileManager.default.removeItem(atPath: path)
        _ = verifiers.take(session.id)
        let message = failure.body.error
        _ = try? await work.database { [catalog] db in try catalog.reject(sessionId: session.id, error: message, on: db) }
        metrics.uploadsRejected.increment()
        logger.warning("upload rejected", metadata: ["session": "\(session.id)", "vm": "\(session.announcement.vm)", "reason": "\(message)"])
        throw failure
    }

    func openSession(_ context: CoordinatorContext) async throws -> Catalog.Session {
        let id = context.parameters.get("id") ?? ""
        guard UUID(uuidString: id) != nil else { throw APIFailure(.badRequest, "not an upload session id: \"\(id.prefix(80))\"") }
        guard let session = try await work.database({ [catalog] db in try catalog.openSession(id: id, on: db) }) else {
            throw APIFailure(.notFound, "no open upload session \(id) (finished, rejected or never announced: announce again)")
        }
        return session
    }

    func receivedBytes(session id: String) throws -> UInt64 {
        let path = try blobs.incomingPath(session: id)
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        return (attributes?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    func validate(_ announcement: UploadAnnouncement) throws {
        do { try BlobStore.validate(announcement.contentHash) } catch { throw APIFailure(.badRequest, "\(error)") }
        guard announcement.size > 0 else { throw APIFailure(.badRequest, "an empty file is not a dump") }
        guard announcement.size <= maxUploadBytes else {
            metrics.uploadsRejected.increment()
            throw APIFailure(.contentTooLarge, "the dump is \(announcement.size) bytes; this coordinator accepts at most \(maxUploadBytes)")
        }
        try Self.checkName(announcement.vm, what: "vm", allowEmpty: false)
        try Self.checkName(announcement.host ?? "", what: "host", allowEmpty: true)
        try Self.checkName(announcement.fileName ?? "", what: "fileName", allowEmpty: true)
        guard announcement.tags.count <= 32 else { throw APIFailure(.badRequest, "at most 32 tags") }
        for (key, value) in announcement.tags {
            try Self.checkName(key, what: "tag name", allowEmpty: false)
            try Self.checkName(value, what: "tag value", allowEmpty: true)
        }
    }

    /// Names are labels, never paths: at most 255 characters, no control characters.
    static func checkName(_ text: String, what: String, allowEmpty: Bool) throws {
        guard allowEmpty || !text.isEmpty else { throw APIFailure(.badRequest, "\(what) is empty") }
        guard text.count <= 255, !text.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw APIFailure(.badRequest, "\(what) must be at most 255 characters without control characters")
        }
    }
}

/// Upload sessions a connection is writing or finishing right now: one at a time per session.
final class SessionLocks: Sendable {
    private let taken = Mutex<Set<String>>([])

    func take(_ id: String) -> Bool { taken.withLock { $0.insert(id).inserted } }
    func release(_ id: String) { _ = taken.withLock { $0.remove(id) } }
}

/// The verifiers of uploads in progress, by session, so the next PATCH or the finish goes on
/// where the last request stopped. Bounded: a session whose verifier was dropped is verified
/// from its file instead.
final class LiveVerifiers: Sendable {
    private let verifiers = Mutex<[String: FrameVerifier]>([:])
    static let limit = 64

    func take(_ id: String) -> FrameVerifier? { verifiers.withLock { $0.removeValue(forKey: id) } }

    func put(_ id: String, _ verifier: FrameVerifier) {
        verifiers.withLock { table in
            if table.count >= Self.limit, let victim = table.keys.first { table.removeValue(forKey: victim) }
            table[id] = verifier
        }
    }
}

/// A file opened for appending, written with write(2).
final class AppendingFile: @unchecked Sendable {
    private let fd: Int32
    let path: String

    init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw APIFailure(.internalServerError, "cannot open \(path): \(String(cString: strerror(errno)))") }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let result = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            guard result > 0 else { throw APIFailure(.internalServerError, "cannot write \(path): \(String(cString: strerror(errno)))") }
            done += result
        }
    }

    func close() { Glibc.close(fd) }
}
