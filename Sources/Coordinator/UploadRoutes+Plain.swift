import BlobStore
import FleetAPI
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `PUT /v1/plain` (and `PUT /v1/plain/FILE`): a dump as a plain HTTP body, the way
/// `curl.exe --upload-file C:\Windows\MEMORY.DMP` sends one from a Windows desktop with nothing
/// installed (deploy/API.md, "Plain uploads"; the labels are in `PlainUploadLabels`).
///
/// The session protocol's client hashes and compresses; here the coordinator does both as the
/// body streams in, through a `BlobWriter` into the store's `tmp/` folder, so that it holds no
/// more than a megabyte of the body and an LZ4 block whatever the dump's size. Nothing is
/// stored until the body is complete: its first 8 KiB must begin like a dump before a byte is
/// written, a body that ends early or breaks a limit drops the writer (which deletes its file),
/// and only a whole body gets a blob's name and the dump's rows. The content hash is the one
/// the session protocol announces, so a dump sent both ways is one dump: one the store has
/// already is recorded against the new VM and answered `known`.
extension UploadRoutes {
    /// Body bytes gathered before they go to a compute thread together: a connection delivers
    /// pieces of up to 64 KiB, and one hop per piece would cost more than the hashing of zeros.
    static let plainBatchBytes = 1 << 20

    @Sendable func putPlain(_ request: Request, context: CoordinatorContext) async throws -> Response {
        var announcement = try PlainUploadLabels.announcement(request, context)
        // Refusals that need no body come first: curl sends `Expect: 100-continue` and waits
        // a second before the body, so these reach it before it sends a byte.
        let declared = request.headers[.contentLength].flatMap { UInt64($0) }
        if let declared, declared > limits.maxUploadBytes { throw tooLarge(declared) }
        guard active.startStreaming(limit: limits.uploadsInProgress) else {
            throw APIFailure(.serviceUnavailable, "\(limits.uploadsInProgress) uploads are arriving already; try again shortly", retryAfter: 5)
        }
        defer { active.stopStreaming() }
        try checkDiskSpace(received: nil)

        var start: [UInt8] = []
        var written: BlobWriter?
        let writer: BlobWriter
        var batch: [ByteBuffer] = []
        var batched = 0
        var total: UInt64 = 0
        var unchecked: UInt64 = 0
        var body = request.body.makeAsyncIterator()
        let started = ContinuousClock.now
        do {
            while let buffer = try await Self.next(&body) {
                total += UInt64(buffer.readableBytes)
                guard total <= limits.maxUploadBytes else { throw tooLarge(total) }
                guard !Self.isTooSlow(received: total, since: started) else {
                    throw APIFailure(.requestTimeout, "the dump arrives slower than \(Int(Self.minimumBytesPerSecond)) bytes a second")
                }
                if start.count < UploadValidation.dumpStartBytes {
                    start += buffer.readableBytesView.prefix(UploadValidation.dumpStartBytes - start.count)
                    if start.count == UploadValidation.dumpStartBytes { try UploadValidation.checkDumpStart(start) }
                }
                batch.append(buffer)
                batched += buffer.readableBytes
                // A batch is larger than the dump's start, so that was checked before this writes.
                if batched >= Self.plainBatchBytes {
                    unchecked += UInt64(batched)
                    let checkDisk = unchecked >= Self.diskCheckInterval
                    if checkDisk { unchecked = 0 }
                    written = try await write(batch, into: written, checkDisk: checkDisk)
                    batch = []
                    batched = 0
                }
            }
            if start.count < UploadValidation.dumpStartBytes {
                guard total > 0 else { throw APIFailure(.badRequest, "the body is empty: send the dump as the body (curl --upload-file FILE URL)") }
                try UploadValidation.checkDumpStart(start)
            }
            // Hummingbird ends a body at its Content-Length, and a connection that closes before
            // it throws in `next`; checked here all the same, as a cut body taken for whole
            // would be stored as a cut dump.
            if let declared, declared != total { throw APIFailure(.badRequest, "the body has \(total) bytes, not the \(declared) of its Content-Length") }
            writer = try await write(batch, into: written, checkDisk: true)
        } catch is BodyEnded {
            logger.info("plain upload connection ended early", metadata: ["vm": "\(announcement.vm)", "received": "\(total)"])
            throw APIFailure(.badRequest, "the request body ended after \(total) bytes; nothing was stored")
        } catch let failure as AppendingFile.Failure {
            throw diskFailure(failure, received: nil)
        } catch let failure as APIFailure where failure.status == .contentTooLarge || failure.status == .unprocessableContent {
            metrics.uploadsRejected.increment()
            logger.warning("plain upload rejected", metadata: ["vm": "\(announcement.vm)", "reason": "\(failure.body.error)"])
            throw failure
        }
        announcement.contentHash = try await work.compute { try writer.finish() }
        announcement.size = total
        let replaced = try await moveIntoStore(contentHash: announcement.contentHash) { [blobs] damaged in
            try blobs.publish(writer, replacing: damaged)
        }
        let status = try await work.database { [catalog, announcement, caller = context.caller] db in
            try catalog.storePlainUpload(announcement, uploadedBy: caller, replaced: replaced, on: db)
        }
        (status.state == .known ? metrics.uploadsKnown : metrics.uploadsStored).increment()
        logger.info(status.state == .known ? "plain upload of a known dump recorded" : "dump stored from a plain upload",
                    metadata: ["dump": "\(status.dumpId ?? 0)", "job": "\(status.jobId ?? 0)", "vm": "\(announcement.vm)", "bytes": "\(total)"])
        return Self.plainAnswer(status, to: request)
    }

    /// Hashes and compresses `pieces` on a compute thread, into `writer` or, for the first
    /// pieces, a new one; with `checkDisk`, looks at the free space first (507 at the reserve).
    func write(_ pieces: [ByteBuffer], into writer: BlobWriter?, checkDisk: Bool) async throws -> BlobWriter {
        let count = pieces.reduce(0) { $0 + $1.readableBytes }
        let writer = try await work.compute { [self] in
            if checkDisk { try checkDiskSpace(received: nil) }
            let writer = try writer ?? blobs.writer()
            for piece in pieces { try piece.withUnsafeReadableBytes { try writer.write($0) } }
            return writer
        }
        metrics.plainUploadBytes.increment(by: Int64(count))
        return writer
    }

    func tooLarge(_ bytes: UInt64) -> APIFailure {
        APIFailure(.contentTooLarge, "the dump is \(bytes) bytes or more; this coordinator accepts at most \(limits.maxUploadBytes) (--max-upload-gib)")
    }

    /// `201` with the status when the dump is new, `200` when the store had it; as JSON, or as
    /// one line for a client that asks for text (a console user).
    static func plainAnswer(_ status: UploadStatus, to request: Request) -> Response {
        let code: HTTPResponse.Status = status.state == .known ? .ok : .created
        guard PlainText.isWanted(by: request) else { return JSONBody.response(status, status: code) }
        let dump = "dump \(status.dumpId ?? 0)", job = status.jobId.map { " (job \($0))" } ?? ""
        return PlainText.response(status.state == .known ? "\(dump) was stored already; this upload of it is recorded\(job)"
                                                         : "\(dump) stored and queued for analysis\(job)", status: code)
    }
}
