import BlobStore
import Coordinator
import DumpFile
import DumpForge
import FleetClient
import Foundation
import Store
import TestSupport

func run(_ command: String) -> Double {
    let started = now()
    let status = system(command)
    if status != 0 { print("   `\(command)` exited \(status)") }
    return now() - started
}

/// The upload section: a sparse dump and one with data in every page through the real HTTP
/// path, against `lz4 -c` on the same files, warm and from a dropped page cache.
func uploadBenchmark() async throws {
    print("== upload: a \(uploadGiB) GiB full dump (sparse) over loopback")
    var description = DumpDescription.timerListCorruption(kind: .full, layoutSeed: 11)
    description.memory = DumpDescription.vmMemory(gibibytes: uploadGiB)
    let forged = DumpForge.Forge.dump(description)
    let path = scratch + "/big.dmp"
    try MappedFile.writeSparse(path, size: forged.size, chunks: forged.chunks.map { ($0.offset, $0.bytes) })
    let size = Double(forged.size)
    _ = run("cat \(path) > /dev/null")  // warm the page cache for both contenders alike
    let lz4 = run("lz4 -q -c \(path) > /dev/null")
    print(String(format: "   lz4 -c FILE > /dev/null:             %6.2f s  %7.0f MB/s", lz4, size / lz4 / 1e6))
    let hashStarted = now()
    let hashIO = Measure.ProcessIO.now()
    _ = try ContentHasher.ofFile(path)
    let hashing = now() - hashStarted
    let hashRead = Measure.ProcessIO.now() - hashIO
    print(String(format: "   content hash alone (all cores):      %6.2f s  %7.0f MB/s  (read %.0f MiB: holes are skipped with SEEK_DATA, never read)",
                 hashing, size / hashing / 1e6, Double(hashRead.requested) / 1_048_576))

    let compressStarted = now()
    var compressedBytes = 0
    for try await chunk in CompressedFileChunks(path: path, skip: 0, progress: { _ in }) { compressedBytes += chunk.readableBytes }
    let compressing = now() - compressStarted
    print(String(format: "   client's LZ4 stream alone:           %6.2f s  %7.0f MB/s", compressing, size / compressing / 1e6))

    let token = "bench-token-0123456789abcdef"
    var configuration = CoordinatorConfiguration(database: database, blobRoot: scratch + "/blobs", tokens: [AccessToken(name: "bench", secret: token)],
                                                 analyzerVersion: 1)
    configuration.port = 0
    let coordinator = try await Coordinator(configuration: configuration, logger: quiet).start()
    let sending = SendingClock()
    let uploader = Uploader(client: FleetClient(server: coordinator.url, token: token)) { if $0.phase == .sending { sending.mark() } }
    let started = now()
    let status = try await uploader.upload(file: path, vm: "bench", host: nil, tags: [:])
    let finished = now()
    let total = finished - started
    let hashPhase = (sending.started ?? finished) - started
    let sendPhase = finished - (sending.started ?? finished)
    print(String(format: "   upload, whole command:               %6.2f s  %7.0f MB/s  (%.0f%% of lz4's rate)", total, size / total / 1e6, 100 * lz4 / total))
    print(String(format: "     hashing for the dedup check:       %6.2f s", hashPhase))
    print(String(format: "     compress + send + server verify:   %6.2f s  %7.0f MB/s  (%.0f%% of lz4's rate)", sendPhase, size / sendPhase / 1e6, 100 * lz4 / sendPhase))
    let blob = try BlobStore(root: scratch + "/blobs").path(of: try ContentHasher.ofFile(path).hash).path
    let stored = (try FileManager.default.attributesOfItem(atPath: blob)[.size] as? NSNumber)?.doubleValue ?? 0
    print(String(format: "   stored as dump %lld: %.1f MiB compressed (ratio %.0f)", status.dumpId ?? 0, stored / 1_048_576, size / max(stored, 1)))
    let verifyStarted = now()
    let blobFile = open(blob, O_RDONLY | O_CLOEXEC)
    try FrameVerifier(expectedSize: forged.size).advance(blobFile, upTo: UInt64(stored))
    close(blobFile)
    let verifying = now() - verifyStarted
    print(String(format: "   server's decode + content hash alone: %6.2f s  %7.0f MB/s", verifying, size / verifying / 1e6))

    // The same size with data in every page (no holes, no zero pages): each page that was a
    // hole or zeros gets 2 KiB of random bytes and 2 KiB of zeros, so LZ4 halves it about as it
    // halves real memory. Warm: the file was just written. Cold: the page cache dropped first.
    let dense = scratch + "/dense.dmp"
    try Measure.writeEveryPage(copying: path, to: dense)
    _ = run("cat \(dense) > /dev/null")
    let denseLZ4 = run("lz4 -q -c \(dense) > /dev/null")
    var denseStarted = now()
    _ = try ContentHasher.ofFile(dense)
    let denseHash = now() - denseStarted
    denseStarted = now()
    _ = try await uploader.upload(file: dense, vm: "bench-dense", host: nil, tags: [:])
    let denseTotal = now() - denseStarted
    print(String(format: "   every page data, warm: lz4 -c %.2f s (%.0f MB/s); hash alone %.2f s (%.0f MB/s); upload %.2f s, %.0f MB/s (%.0f%% of lz4's rate)",
                 denseLZ4, size / denseLZ4 / 1e6, denseHash, size / denseHash / 1e6, denseTotal, size / denseTotal / 1e6, 100 * denseLZ4 / denseTotal))
    // Where that upload's time goes: the client's stream and the server's check, each alone.
    denseStarted = now()
    for try await _ in CompressedFileChunks(path: dense, skip: 0, progress: { _ in }) {}
    let denseCompressing = now() - denseStarted
    let denseBlob = try BlobStore(root: scratch + "/blobs").path(of: try ContentHasher.ofFile(dense).hash).path
    let denseStored = (try FileManager.default.attributesOfItem(atPath: denseBlob)[.size] as? NSNumber)?.uint64Value ?? 0
    denseStarted = now()
    let denseBlobFile = open(denseBlob, O_RDONLY | O_CLOEXEC)
    try FrameVerifier(expectedSize: forged.size).advance(denseBlobFile, upTo: denseStored)
    close(denseBlobFile)
    let denseVerifying = now() - denseStarted
    print(String(format: "     alone: client's LZ4 stream %.2f s (%.0f MB/s); server's decode + content hash %.2f s (%.0f MB/s); stored %.0f MiB (ratio %.1f)",
                 denseCompressing, size / denseCompressing / 1e6, denseVerifying, size / denseVerifying / 1e6,
                 Double(denseStored) / 1_048_576, size / Double(max(denseStored, 1))))
    if Measure.dropPageCache() {
        let coldLZ4 = run("lz4 -q -c \(dense) > /dev/null")
        _ = Measure.dropPageCache()
        var before = Measure.ProcessIO.now()
        denseStarted = now()
        _ = try ContentHasher.ofFile(dense)
        let coldHash = now() - denseStarted
        let hashRead = Measure.ProcessIO.now() - before
        // One byte changed, so the coordinator does not know it and the whole file is sent.
        _ = run("printf x | dd of=\(dense) bs=1 seek=\(forged.size - 1) conv=notrunc status=none")
        _ = Measure.dropPageCache()
        before = Measure.ProcessIO.now()
        denseStarted = now()
        _ = try await uploader.upload(file: dense, vm: "bench-dense-cold", host: nil, tags: [:])
        let coldTotal = now() - denseStarted
        let uploadRead = Measure.ProcessIO.now() - before
        print(String(format: "   every page data, cold: lz4 -c %.2f s (%.0f MB/s); hash alone %.2f s (%.0f MB/s, %.0f MiB from disk); upload %.2f s, %.0f MB/s (%.0f MiB from disk)",
                     coldLZ4, size / coldLZ4 / 1e6, coldHash, size / coldHash / 1e6, Double(hashRead.fromStorage) / 1_048_576,
                     coldTotal, size / coldTotal / 1e6, Double(uploadRead.fromStorage) / 1_048_576))
    } else {
        print("   every page data, cold: skipped (dropping the page cache needs root)")
    }
    try FileManager.default.removeItem(atPath: dense)
    await coordinator.stop()
}

/// When the upload's sending phase began.
final class SendingClock: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Double?

    func mark() {
        lock.lock()
        if first == nil { first = now() }
        lock.unlock()
    }

    var started: Double? {
        lock.lock()
        defer { lock.unlock() }
        return first
    }
}

