import BlobStore
import FleetAPI
import Foundation

/// Uploads one dump: hashes it, announces it (a dump the server has is recorded without
/// sending a byte), streams its LZ4 frame from where the server's session stands, and asks the
/// server to verify and store it. A dropped connection is retried from the server's offset;
/// an upload interrupted for good resumes when the same command runs again.
public struct Uploader: Sendable {
    public enum Phase: String, Sendable {
        case hashing, sending
    }

    /// Where an upload is, for progress displays.
    public struct Progress: Sendable {
        public var file: String
        public var phase: Phase
        public var done: UInt64
        public var total: UInt64
    }

    public let client: FleetClient
    /// Attempts at sending the bytes over a dropped connection before giving up.
    public var attempts = 5
    /// Seconds in all to wait when the server says to try again later (another connection
    /// still holds the upload, too many uploads are arriving at once).
    public var patience = 300.0
    public let progress: @Sendable (Progress) -> Void

    public init(client: FleetClient, progress: @escaping @Sendable (Progress) -> Void = { _ in }) {
        self.client = client
        self.progress = progress
    }

    public func upload(file: String, vm: String, host: String?, tags: [String: String]) async throws -> UploadStatus {
        let fileSize = ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber)?.uint64Value ?? 0
        let (contentHash, size) = try ContentHasher.ofFile(file) { done in
            progress(Progress(file: file, phase: .hashing, done: done, total: fileSize))
        }
        let name = URL(fileURLWithPath: file).lastPathComponent
        var status = try await client.announce(UploadAnnouncement(contentHash: contentHash, size: size, vm: vm, host: host, tags: tags, fileName: name))
        guard status.state == .open, let session = status.uploadId else { return status }
        var failures = 0
        var waited = 0.0
        while true {
            let offset = status.received ?? 0
            let chunks = CompressedFileChunks(path: file, skip: offset) { done in
                progress(Progress(file: file, phase: .sending, done: done, total: size))
            }
            do {
                status = try await client.append(session: session, offset: offset, body: chunks)
                return try await client.finish(session: session)
            } catch let failure as FleetClient.Failure where failure.retryAfter != nil && failure.status != 507 && waited < patience {
                // Busy: wait as told, then go on from where the server stands.
                let delay = Double(min(max(failure.retryAfter ?? 1, 1), 30))
                waited += delay
                try await Task.sleep(for: .seconds(delay))
                status = try await client.session(session)
            } catch let failure as FleetClient.Failure where failure.status == 409 && failure.received != nil {
                // The server stands elsewhere (another connection moved the session on, or
                // finish found the frame incomplete): go on from there.
                status.received = failure.received
                failures += 1
                if failures >= attempts { throw failure }
            } catch let failure as FleetClient.Failure where failure.status != 0 {
                throw failure  // the server refused: retrying sends the same bytes again
            } catch {
                failures += 1
                if failures >= attempts { throw error }
                try await Task.sleep(for: .milliseconds(200 * failures))
                status = try await client.session(session)
            }
        }
    }
}
