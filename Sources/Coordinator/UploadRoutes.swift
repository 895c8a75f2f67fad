import BlobStore
import FleetAPI
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Store

/// The upload protocol (deploy/API.md): announce, append the LZ4 frame in one or more PATCHes,
/// finish. The compressed bytes gather in the blob store's incoming folder (`IncomingUpload`),
/// named by the session id in its canonical (lower-case) form, and are checked as they arrive
/// (`FrameVerifier`, which saves where it got to). `finish` checks size and hash and moves them
/// into the store, so nothing unverified ever has a blob's name, and records them; a finish
/// whose record fails can be repeated, so an upload ends either recorded or resumable.
/// Plain uploads, a whole dump as one PUT body (`UploadRoutes+Plain.swift`), share the limits,
/// the disk checks and the move into the store.
struct UploadRoutes: Sendable {
    let work: BlockingWork
    let catalog: Catalog
    let blobs: BlobStore
    let limits: UploadLimits
    let metrics: CoordinatorMetrics
    let active: ActiveUploads
    let logger: Logger

    /// How far an upload may get past its last saved checkpoint: what a later request (or a
    /// restarted coordinator) has to read again at most, besides one hash block, in compressed
    /// bytes and in the bytes they decode to (a GiB of zeros compresses to 4 MiB).
    static let checkpointInterval: UInt64 = 64 << 20
    static let checkpointDecodedInterval: UInt64 = 1 << 30
    static let minimumBytesPerSecond = 1024.0
    /// Free disk space is looked at again after this many bytes of a PATCH.
    static let diskCheckInterval: UInt64 = 16 << 20

    func add(to group: RouterGroup<CoordinatorContext>) {
        group.post("uploads", use: announce)
        group.get("uploads/:id", use: show)
        group.patch("uploads/:id", use: append)
        group.post("uploads/:id/finish", use: finish)
        // `curl --upload-file FILE URL/` appends FILE's name to a URL that ends in a slash.
        group.put("plain", use: putPlain)
        group.put("plain/:fileName", use: putPlain)
    }

    @Sendable func announce(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let announcement = try await APIFailure.decode(UploadAnnouncement.self, request, context)
        try UploadValidation.check(announcement, maxUploadBytes: limits.maxUploadBytes)
        let (caller, quota, blobs) = (context.caller, limits.quota, self.blobs)
        // What the disk can still take beyond its reserve; a new session must fit in it beside
        // what the open ones were promised (a known dump writes nothing, so it always passes).
        let budget = blobs.freeBytes().map { $0 > limits.minFreeBytes ? $0 - limits.minFreeBytes : 0 }
        let status: UploadStatus
        do {
            status = try await work.database { [catalog] db in
                try catalog.announce(announcement, uploadedBy: caller, quota: quota, diskBudget: budget, blobIsPresent: { blobs.contains($0) }, on: db)
            }
        } catch let refusal as Catalog.Refusal {
            switch refusal.reason {
            case .conflict: throw APIFailure(.conflict, refusal.description)
            case .quota: throw APIFailure(.tooManyRequests, refusal.description)
            case .disk:
                metrics.diskFullRefusals.increment()
                throw APIFailure(.insufficientStorage, refusal.description, retryAfter: 60)
            }
        }
        if status.state == .known {
            metrics.uploadsKnown.increment()
            logger.info("upload of a known dump recorded", metadata: ["dump": "\(status.dumpId ?? 0)", "vm": "\(announcement.vm)"])
            return JSONBody.response(status)
        }
        guard let id = status.uploadId else { throw APIFailure(.internalServerError, "no session id") }
        let received = try blobs.incoming(session: id).received
        return JSONBody.response(UploadStatus(state: .open, uploadId: id, received: received), status: received == 0 ? .created : .ok)
    }

    @Sendable func show(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let session = try await openSession(try Self.sessionId(context))
        return JSONBody.response(UploadStatus(state: .open, uploadId: session.id, received: try blobs.incoming(session: session.id).received))
    }

    /// Appends the body at `Upload-Offset`, which must be where the session is. Bytes that
    /// arrived before a dropped connection stay: the client resumes after them.
    @Sendable func append(_ request: Request, context: CoordinatorContext) async throws -> Response {
        guard let offsetText = request.headers[HTTPField.Name(UploadHeaders.offset)!], let offset = UInt64(offsetText) else {
            throw APIFailure(.badRequest, "a PATCH needs an \(UploadHeaders.offset) header")
        }
        // The session is taken before it is looked up, so that it cannot be finished in between.
        let upload = try blobs.incoming(session: try Self.sessionId(context))
        guard active.take(upload.session) else { throw busy(upload) }
        defer { active.release(upload.session) }
        let session = try await openSession(upload.session)
        let received = upload.received
        guard offset == received else {
            throw APIFailure(.conflict, "the upload is at byte \(received), not \(offset)", received: received)
        }
        // Checked whole and moved into the store by a finish that could not record it: there is
        // nothing more to send, only the finish to repeat.
        if upload.isPublishing { return JSONBody.response(UploadStatus(state: .open, uploadId: session.id, received: received)) }
        guard active.startStreaming(limit: limits.uploadsInProgress) else {
            throw APIFailure(.serviceUnavailable, "\(limits.uploadsInProgress) uploads are arriving already; try again shortly",
                             received: received, retryAfter: 5)
        }
        defer { active.stopStreaming() }
        try checkDiskSpace(received: received)
        let verifier = try await resumeVerification(session, upload)
        // An LZ4 frame is at most a little larger than its content (incompressible blocks are
        // stored raw with a 4-byte header per 4 MiB block); allow that much and no more.
        let limit = session.announcement.size + session.announcement.size / 128 + (1 << 20)
        let file: AppendingFile
        do { file = try upload.appending() } catch let failure as AppendingFile.Failure { throw diskFailure(failure, received: upload.received) }
        var total = received
        var unsaved: UInt64 = 0
        var savedAtSize = verifier.size
        var unchecked: UInt64 = 0
        var body = request.body.makeAsyncIterator()
        let started = ContinuousClock.now
        do {
            while let buffer = try await Self.next(&body) {
                let count = UInt64(buffer.readableBytes)
                total += count
                guard !Self.isTooSlow(received: total - received, since: started) else {
                    throw APIFailure(.requestTimeout, "the upload arrives slower than \(Int(Self.minimumBytesPerSecond)) bytes a second; send the rest from byte \(total - count)")
                }
                guard total <= limit else {
                    throw APIFailure(.contentTooLarge, "the upload is larger than its announced \(session.announcement.size) bytes allow")
                }
                unchecked += count
                let checkDisk = unchecked >= Self.diskCheckInterval
                if checkDisk { unchecked = 0 }
                let end = total
                try await work.compute { [self] in
                    Failpoint.reach("verify", "upload \(session.id)")
                    if checkDisk { try checkDiskSpace(received: nil) }
                    try buffer.withUnsafeReadableBytes { try file.write($0) }
                    try verifier.advance(file.descriptor, upTo: end)
                }
                metrics.uploadBytes.increment(by: Int64(count))
                unsaved += count
                if unsaved >= Self.checkpointInterval || verifier.size - savedAtSize >= Self.checkpointDecodedInterval {
                    unsaved = 0
                    savedAtSize = verifier.size
                    try await save(verifier, upload, session: session.id, received: total)
                }
            }
        } catch let failure as FrameVerifier.Overflow {
            try await refuse(session, upload, APIFailure(.contentTooLarge, "upload rejected: \(failure)"))
        } catch let failure as LZ4Error {
            try await refuse(session, upload, APIFailure(.unprocessableContent, "upload rejected: \(failure)"))
        } catch let failure as APIFailure where failure.status == .contentTooLarge {
            try await refuse(session, upload, failure)
        } catch let failure as APIFailure where failure.status == .insufficientStorage || failure.status == .requestTimeout {
            try? await save(verifier, upload, session: session.id, received: upload.received)
            throw APIFailure(failure.status, failure.body.error, received: upload.received, retryAfter: failure.retryAfter)
        } catch is BodyEnded {
            try? await save(verifier, upload, session: session.id, received: upload.received)
            logger.info("upload connection ended early", metadata: ["session": "\(session.id)", "received": "\(upload.received)"])
            throw APIFailure(.badRequest, "the request body ended early; send the rest from byte \(upload.received)", received: upload.received)
        } catch {
            // The disk filled up, or the database failed: what arrived is checked and kept,
            // and the client resumes after it.
            try? await save(verifier, upload, session: session.id, received: upload.received)
            if let failure = error as? AppendingFile.Failure { throw diskFailure(failure, received: upload.received) }
            throw error
        }
        try await save(verifier, upload, session: session.id, received: total)
        return JSONBody.response(UploadStatus(state: .open, uploadId: session.id, received: total))
    }

    /// Checks the bytes (decoded size and content hash must match the announcement; the
    /// PATCHes checked them as they came, so this is quick), moves them into the store, and
    /// records dump, upload and job. Bytes that are not what was announced are deleted and the
    /// session closed with the reason; a frame that has not ended yet leaves the session open.
    /// If the record fails after the move, the session stays open and a second `finish`
    /// records the bytes already in the store (the `publishing` mark says they verified).
    @Sendable func finish(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let upload = try blobs.incoming(session: try Self.sessionId(context))
        guard active.take(upload.session) else { throw busy(upload) }
        defer { active.release(upload.session) }
        let session = try await openSession(upload.session)
        let announced = session.announcement
        if !upload.isPublishing {
            guard upload.hasBytes else {
                throw APIFailure(.conflict, "the upload holds no bytes yet: send the frame with PATCH first", received: 0)
            }
            let verifier = try await resumeVerification(session, upload)
            do {
                try verifier.check(contentHash: announced.contentHash)
            } catch let incomplete as FrameVerifier.Incomplete {
                try? await save(verifier, upload, session: session.id, received: upload.received)
                throw APIFailure(.conflict, "\(incomplete): send the rest first", received: upload.received)
            } catch {
                try await refuse(session, upload, APIFailure(.unprocessableContent, "upload rejected: \(error)"))
            }
            try await work.compute { try upload.markPublishing(length: verifier.consumed) }
        }
        var replaced = false
        if upload.hasBytes {
            replaced = try await moveIntoStore(contentHash: announced.contentHash) { [blobs] damaged in
                try blobs.publish(upload, contentHash: announced.contentHash, replacing: damaged)
            }
        } else if !blobs.contains(announced.contentHash) {
            // Verified and moved, then the stored file went away before it was recorded.
            upload.remove()
            throw APIFailure(.conflict, "the upload's bytes are gone from the store: send them again", received: 0)
        }
        let status = try await work.database { [catalog, replaced] db in try catalog.finish(session, replaced: replaced, on: db) }
        upload.remove()
        metrics.uploadsStored.increment()
        logger.info("dump stored", metadata: ["dump": "\(status.dumpId ?? 0)", "job": "\(status.jobId ?? 0)", "vm": "\(announced.vm)", "bytes": "\(announced.size)"])
        return JSONBody.response(status)
    }

    // MARK: helpers

    /// Moves verified bytes into the store under `contentHash` (`move` does, told whether the
    /// stored copy was found damaged and is to be replaced). Returns whether they replaced the
    /// stored copy, damaged or gone missing: the record then clears the mark and the dump's
    /// failed jobs run again.
    func moveIntoStore(contentHash: String, _ move: @escaping @Sendable (_ replacingDamaged: Bool) throws -> Void) async throws -> Bool {
        let damaged = try await work.database { [catalog] db in try catalog.isBlobDamaged(contentHash: contentHash, on: db) }
        let replaced = damaged || !blobs.contains(contentHash)
        try await work.compute { try move(damaged) }
        return replaced
    }

    /// A client that sends a byte now and then, just inside the idle timeout, would hold a
    /// streaming slot (and a session) for ever: past a minute, an upload must average a KiB a
    /// second.
    static func isTooSlow(received bytes: UInt64, since started: ContinuousClock.Instant) -> Bool {
        let elapsed = Double((ContinuousClock.now - started).components.seconds)
        return elapsed >= 60 && Double(bytes) < elapsed * minimumBytesPerSecond
    }

    /// The request body's next piece; the client going away (or being timed out) mid-body is
    /// `BodyEnded`, not an error of the coordinator's.
    static func next(_ body: inout RequestBody.AsyncIterator) async throws -> ByteBuffer? {
        do { return try await body.next() } catch { throw BodyEnded() }
    }

    struct BodyEnded: Error {}

    /// The session's verifier, taken up from its saved checkpoint and brought level with the
    /// file in slices (each at most one checkpoint interval, so other uploads' work interleaves).
    /// A frame found damaged here closes the session.
    func resumeVerification(_ session: Catalog.Session, _ upload: IncomingUpload) async throws -> FrameVerifier {
        let verifier = upload.verifier(expectedSize: session.announcement.size)
        do {
            var reread: UInt64 = 0
            while true {
                let read = try await work.compute { try upload.catchUp(verifier, budget: Self.checkpointInterval) }
                if read == 0 { break }
                reread += read
            }
            if reread > 0 {
                metrics.uploadBytesReverified.increment(by: Int64(reread))
                try await work.compute { try upload.save(verifier) }
            }
        } catch let failure as FrameVerifier.Overflow {
            try await refuse(session, upload, APIFailure(.contentTooLarge, "upload rejected: \(failure)"))
        } catch let failure as LZ4Error {
            try await refuse(session, upload, APIFailure(.unprocessableContent, "upload rejected: \(failure)"))
        }
        return verifier
    }

    func save(_ verifier: FrameVerifier, _ upload: IncomingUpload, session: String, received: UInt64) async throws {
        try await work.compute { try upload.save(verifier) }
        let decoded = verifier.size
        try await work.database { [catalog] db in try catalog.touch(sessionId: session, received: received, decoded: decoded, on: db) }
    }

    /// Closes a session for good: its bytes are deleted and the reason kept. Always throws.
    func refuse(_ session: Catalog.Session, _ upload: IncomingUpload, _ failure: APIFailure) async throws -> Never {
        upload.remove()
        let message = failure.body.error
        _ = try? await work.database { [catalog] db in try catalog.reject(sessionId: session.id, error: message, on: db) }
        metrics.uploadsRejected.increment()
        logger.warning("upload rejected", metadata: ["session": "\(session.id)", "vm": "\(session.announcement.vm)", "reason": "\(message)"])
        throw failure
    }

    func busy(_ upload: IncomingUpload) -> APIFailure {
        APIFailure(.conflict, "another connection is writing this upload (one that falls silent is dropped after \(Int(limits.idleTimeoutSeconds)) s)",
                   received: upload.received, retryAfter: 2)
    }

    /// Refuses (507) when the blob store's disk is down to its reserve; PATCHes keep what they
    /// received, and the client resumes when space returns.
    func checkDiskSpace(received: UInt64?) throws {
        guard let free = blobs.freeBytes(), free < limits.minFreeBytes else { return }
        metrics.diskFullRefusals.increment()
        throw APIFailure(.insufficientStorage, "the coordinator's disk is nearly full (\(free >> 20) MiB free, \(limits.minFreeBytes >> 20) MiB kept in reserve); try again later",
                         received: received, retryAfter: 60)
    }

    func diskFailure(_ failure: AppendingFile.Failure, received: UInt64?) -> APIFailure {
        guard failure.isDiskFull else { return APIFailure(.internalServerError, failure.description) }
        metrics.diskFullRefusals.increment()
        return APIFailure(.insufficientStorage, "the coordinator's disk is full; try again later", received: received, retryAfter: 60)
    }

    /// The session id of the request's path, in its canonical form (lower case, as PostgreSQL
    /// prints a uuid): locks, files and rows all go by it, whatever case the client wrote.
    static func sessionId(_ context: CoordinatorContext) throws -> String {
        let id = context.parameters.get("id") ?? ""
        guard let uuid = UUID(uuidString: id) else { throw APIFailure(.badRequest, "not an upload session id: \"\(id.prefix(80))\"") }
        return uuid.uuidString.lowercased()
    }

    func openSession(_ id: String) async throws -> Catalog.Session {
        guard let session = try await work.database({ [catalog] db in try catalog.openSession(id: id, on: db) }) else {
            throw APIFailure(.notFound, "no open upload session \(id) (finished, rejected, expired or never announced: announce again)")
        }
        return session
    }
}

/// What the coordinator accepts of uploads, and how much at once.
struct UploadLimits: Sendable {
    var maxUploadBytes: UInt64
    var quota: Catalog.UploadQuota
    var uploadsInProgress: Int
    var minFreeBytes: UInt64
    var idleTimeoutSeconds: Double
}
