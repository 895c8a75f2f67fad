import Foundation

/// A worker's own folder under the scratch root, where dumps are decompressed while analyzed.
/// The worker holds an flock(2) on a file inside it for as long as it lives; the kernel drops
/// that lock when the process dies, however it dies. At start, folders whose lock can be taken
/// belonged to workers that were killed (SIGKILL, the OOM killer) and are removed with the
/// multi-GB scratch files they may still hold. Several workers can share one scratch root.
final class ScratchFolder: @unchecked Sendable {
    let path: String
    private let lock: Int32

    init(root: String, workerId: String) throws {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        Self.removeAbandoned(in: root)
        let name = workerId.map { $0.isLetter || $0.isNumber ? $0 : "-" }
        // Locked under a name the sweep ignores, then renamed: a folder named worker-* is
        // always locked while its worker lives.
        let starting = "\(root)/starting-\(String(name))"
        try FileManager.default.createDirectory(atPath: starting, withIntermediateDirectories: true)
        lock = open(starting + "/.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
        guard lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            throw JobRunner.Failure(description: "cannot lock scratch folder \(starting): \(String(cString: strerror(errno)))")
        }
        path = "\(root)/worker-\(String(name))"
        guard rename(starting, path) == 0 else {
            throw JobRunner.Failure(description: "cannot create scratch folder \(path): \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
        close(lock)
    }

    /// Removes the folders of workers that died without cleaning up.
    static func removeAbandoned(in root: String) {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where entry.hasPrefix("worker-") {
            let folder = "\(root)/\(entry)"
            let probe = open(folder + "/.lock", O_RDWR | O_CLOEXEC)
            guard probe >= 0 else { continue }
            if flock(probe, LOCK_EX | LOCK_NB) == 0 { try? FileManager.default.removeItem(atPath: folder) }
            close(probe)
        }
    }
}
