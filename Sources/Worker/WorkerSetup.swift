import BlobStore
import FleetClient
import Foundation

/// What a worker needs besides the database, checked before it claims anything and again
/// while it is paused: a scratch folder it can write to, and the blobs (the coordinator taking
/// its token, or the blob folder being there).
struct WorkerSetup: Sendable {
    let configuration: WorkerConfiguration
    let scratch: String

    /// Bytes written to the scratch folder to prove it takes some.
    static let probeBytes = 64 << 10

    /// What is wrong, or nil when everything works. `refusesToken` is set when the coordinator
    /// refused the token (no waiting fixes that: an operator must). `needsFreeBytes` is the
    /// scratch space the job that found the disk full needs: until that much is free, the
    /// disk is still too full for it.
    func problem(needsFreeBytes: UInt64? = nil) -> (description: String, refusesToken: Bool)? {
        if let needed = needsFreeBytes {
            var status = statvfs()
            if statvfs(scratch, &status) == 0 {
                let free = UInt64(status.f_bavail) * UInt64(status.f_frsize)
                // A dump's size is an upper bound (its zeros stay holes in the sparse file), and
                // may exceed the whole disk: then wait for most of the disk to be free, and let
                // the job count against itself if it still does not fit (JobQueue.giveBackLimit).
                let wanted = min(needed, UInt64(status.f_blocks) * UInt64(status.f_frsize) / 10 * 9)
                if free < wanted { return ("the scratch disk has \(free >> 20) MiB free; the last job needs up to \(wanted >> 20) MiB", false) }
            }
        }
        let probe = "\(scratch)/.setup-probe"
        defer { unlink(probe) }
        let fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return ("cannot write to the scratch folder \(scratch): \(String(cString: strerror(errno)))", false) }
        let zeros = [UInt8](repeating: 0, count: Self.probeBytes)
        let written = zeros.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        let writeError = errno
        close(fd)
        guard written == Self.probeBytes else {
            return ("cannot write to the scratch folder \(scratch): \(written < 0 ? String(cString: strerror(writeError)) : "short write")", false)
        }
        switch configuration.blobs {
        case .directory(let root):
            if let problem = Self.blobFolderProblem(root) { return (problem, false) }
        case .coordinator(let url, let token):
            do {
                _ = try AsyncBridge.wait { try await FleetClient(server: url, token: token).whoami() }
            } catch let failure as FleetClient.Failure where failure.status == 401 || failure.status == 403 {
                return ("the coordinator at \(url) refuses this worker's token (HTTP \(failure.status)): check --token", true)
            } catch {
                return ("cannot reach the coordinator at \(url): \(error)", false)
            }
        }
        return nil
    }

    /// What is wrong with the blob folder `root`, or nil: it must be readable and look like the
    /// store the coordinator made (a wrong path, or a mount point with nothing mounted, does not).
    static func blobFolderProblem(_ root: String) -> String? {
        guard access(root, R_OK | X_OK) == 0 else { return "cannot read the blob folder \(root): \(String(cString: strerror(errno)))" }
        guard BlobStore.looksLikeStore(root) else { return "\(root) is not a blob store (no tmp/ folder): a wrong --blobs, or a mount that is not there" }
        return nil
    }
}
