import BlobStore
import Crypto
import Foundation
import Testing

@Suite struct BlobStoreTests {
    static func folder() -> String {
        let path = NSTemporaryDirectory() + "dumpfleet-blobs-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// 40 MiB shaped like a dump: zero pages, pseudo-random pages, repeated text; written a
    /// page at a time.
    static func dumpLikeFile(in folder: String) throws -> (path: String, sha256: String) {
        let path = folder + "/input.dmp"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? output.close() }
        var hasher = SHA256()
        let zeros = [UInt8](repeating: 0, count: 4096)
        let textPage = Array(String(repeating: "\\SystemRoot\\system32\\drivers\\nvlddmkm.sys ", count: 120).utf8.prefix(4096))
        let noisePage = (0..<4096).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 7) }
        for page in 0..<(10 * 1024) {
            let bytes = page % 7 == 0 ? noisePage : page % 7 == 3 ? textPage : zeros
            hasher.update(data: bytes)
            try output.write(contentsOf: bytes)
        }
        return (path, hasher.finalize().map { String(format: "%02x", $0) }.joined())
    }

    @Test func storeThenExtractRoundTripsAsASparseFile() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let store = try BlobStore(root: folder + "/blobs")
        let (input, sha256) = try Self.dumpLikeFile(in: folder)
        let stored = try store.store(file: input)
        #expect(stored.sha256 == sha256)
        #expect(stored.size == 40 << 20)
        let blob = try store.path(of: sha256).path
        let compressed = try FileManager.default.attributesOfItem(atPath: blob)[.size] as! UInt64
        #expect(compressed < 12 << 20, "zero pages compress away")
        #expect(try store.store(file: input, expected: sha256).sha256 == sha256, "storing again deduplicates")

        let output = folder + "/scratch.dmp"
        #expect(try store.extract(sha256, to: output) == 40 << 20)
        #expect(FileManager.default.contents(atPath: output) == FileManager.default.contents(atPath: input))
        var status = stat()
        stat(output, &status)
        #expect(status.st_blocks * 512 < 20 << 20, "zero pages are holes in the scratch file")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder + "/blobs/tmp").isEmpty)
    }

    @Test func aHashMismatchKeepsNothing() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let store = try BlobStore(root: folder)
        let wrong = String(repeating: "ab", count: 32)
        let chunks = Chunks([[UInt8](repeating: 7, count: 1000)])
        let error = #expect(throws: BlobStore.Failure.self) { try store.store(expected: wrong, chunks.next) }
        #expect(error?.description.contains("hash mismatch") == true)
        #expect(!store.contains(wrong))
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder + "/tmp").isEmpty)
    }

    @Test func hostileNamesAreRefused() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let store = try BlobStore(root: folder)
        for name in ["../../etc/passwd", String(repeating: "A", count: 64), "", String(repeating: "0", count: 63) + "/"] {
            #expect(throws: BlobStore.Failure.self) { try store.path(of: name) }
        }
    }

    @Test func aTruncatedBlobIsDetected() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let store = try BlobStore(root: folder)
        let chunks = Chunks([(0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761) }])
        let stored = try store.store(chunks.next)
        let blob = try store.path(of: stored.sha256).path
        let bytes = FileManager.default.contents(atPath: blob)!
        _ = FileManager.default.createFile(atPath: blob, contents: bytes.prefix(bytes.count / 2))
        #expect(throws: BlobStore.Failure.self) { try store.extract(stored.sha256, to: folder + "/out") }
    }
}

/// Hands out chunks one at a time, then nil.
final class Chunks {
    private var remaining: [[UInt8]]
    init(_ chunks: [[UInt8]]) { remaining = chunks.reversed() }
    func next() -> [UInt8]? { remaining.popLast() }
}
