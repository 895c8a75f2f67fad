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
    /// Attempts at sending the bytes before giving up.
    public var attempts = 5
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
        var lastError: (any Error)?
        for attempt in 1...attempts {
            let offset = status.received ?? 0
            let chunks = CompressedFileChunks(path: file, skip: offset) { done in
                progress(Progress(file: file, phase: .sending, done: done, total: size))
            }
            do {
                status = try await client.append(session: session, offset: offset, body: chunks)
                return try await client.finish(session: session)
            } catch let failure as FleetClient.Failure where failure.status == 409 && failure.received != nil {
                status.received = failure.received  // someone else moved the session on: go on from there
                lastError = failure
            } catch let failure as FleetClient.Failure where failure.status != 0 {
                throw failure  // the server refused: retrying sends the same bytes again
            } catch {
                lastError = error
                try await Task.sleep(for: .milliseconds(200 * attempt))
                status = try await client.session(session)
            }
        }
        throw lastError ?? FleetClient.Failure(status: 0, message: "upload of \(file) did not finish")
    }
}
