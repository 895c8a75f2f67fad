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
    /// page at a time. Its content hash is computed here from the definition (SHA-256 over the
    /// SHA-256 of each 4 MiB block), independently of `ContentHasher`.
    static func dumpLikeFile(in folder: String, pages: Int = 10 * 1024, zeroBlocks: Set<Int> = []) throws -> (path: String, contentHash: String) {
        let path = folder + "/input.dmp"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? output.close() }
        var digests: [UInt8] = []
        var block = SHA256()
        let zeros = [UInt8](repeating: 0, count: 4096)
        let textPage = Array(String(repeating: "\\SystemRoot\\system32\\drivers\\nvlddmkm.sys ", count: 120).utf8.prefix(4096))
        let noisePage = (0..<4096).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 7) }
        for page in 0..<pages {
            let bytes = zeroBlocks.contains(page / 1024) ? zeros : page % 7 == 0 ? noisePage : page % 7 == 3 ? textPage : zeros
            block.update(data: bytes)
            try output.write(contentsOf: bytes)
            if page % 1024 == 1023 || page == pages - 1 {
                digests += block.finalize()
                block = SHA256()
            }
        }
        return (path, SHA256.hash(data: digests).map { String(format: "%02x", $0) }.joined())
    }

    @Test func theContentHashIsTheSameHoweverTheBytesArrive() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // 10 MiB and 3 pages: two whole blocks (the second all zeros) and a short last one.
        let (path, expected) = try Self.dumpLikeFile(in: folder, pages: 2563, zeroBlocks: [1])
        #expect(try ContentHasher.ofFile(path, threads: 1).hash == expected)
        #expect(try ContentHasher.ofFile(path, threads: 2).hash == expected)
        let bytes = [UInt8](FileManager.default.contents(atPath: path)!)
        for piece in [4095, 1 << 20, (4 << 20) + 7, bytes.count] {
            var hasher = ContentHasher()
            var offset = 0
            while offset < bytes.count {
                let end = min(offset + piece, bytes.count)
                bytes[offset..<end].withUnsafeBytes { hasher.update($0) }
                offset = end
            }
            #expect(hasher.finalize() == expected, "pieces of \(piece) bytes")
        }
        var empty = ContentHasher()
        #expect(empty.finalize() == SHA256.hash(data: [UInt8]()).map { String(format: "%02x", $0) }.joined())
    }

    @Test func storeThenExtractRoundTripsAsASparseFile() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let store = try BlobStore(root: folder + "/blobs")
        let (input, contentHash) = try Self.dumpLikeFile(in: folder)
        let stored = try store.store(file: input)
        #expect(stored.contentHash == contentHash)
        #expect(stored.size == 40 << 20)
        let blob = try store.path(of: contentHash).path
        let compressed = try FileManager.default.attributesOfItem(atPath: blob)[.size] as! UInt64
        #expect(compressed < 12 << 20, "zero pages compress away")
        #expect(try store.store(file: input, expected: contentHash).contentHash == contentHash, "storing again deduplicates")

        let output = folder + "/scratch.dmp"
        #expect(try store.extract(contentHash, to: output) == 40 << 20)
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

    /// A blob pushed in piece by piece hashes as the file does; a writer dropped unfinished, or
    /// finished but never published, leaves nothing; an abandoned file goes once it is old.
    @Test func aWriterKeepsNothingUnlessPublishedAndAbandonedWritesAreSwept() throws {
        let folder = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let store = try BlobStore(root: folder)
        let (input, contentHash) = try Self.dumpLikeFile(in: folder, pages: 3000)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: input)))
        func tmp() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: folder + "/tmp") }
        do {
            let dropped = try store.writer()
            try bytes[..<100_000].withUnsafeBytes { try dropped.write($0) }
            #expect(try tmp().count == 1)
        }
        do {
            let unpublished = try store.writer()
            try bytes.withUnsafeBytes { try unpublished.write($0) }
            #expect(try unpublished.finish() == contentHash)
        }
        #expect(try tmp().isEmpty)
        let writer = try store.writer()
        for start in stride(from: 0, to: bytes.count, by: 77_777) {
            try bytes[start..<min(start + 77_777, bytes.count)].withUnsafeBytes { try writer.write($0) }
        }
        #expect(try writer.finish() == contentHash && writer.size == UInt64(bytes.count))
        try store.publish(writer, replacing: false)
        #expect(try store.contains(contentHash) && tmp().isEmpty)

        let abandoned = folder + "/tmp/abandoned.partial", fresh = folder + "/tmp/fresh.partial"
        for path in [abandoned, fresh] { #expect(FileManager.default.createFile(atPath: path, contents: Data([1]))) }
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-7200)], ofItemAtPath: abandoned)
        #expect(store.removeAbandonedWrites(idleFor: 3600) == 1)
        #expect(try tmp() == ["fresh.partial"])
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
        let blob = try store.path(of: stored.contentHash).path
        let bytes = FileManager.default.contents(atPath: blob)!
        _ = FileManager.default.createFile(atPath: blob, contents: bytes.prefix(bytes.count / 2))
        #expect(throws: BlobStore.Damage.self) { try store.extract(stored.contentHash, to: folder + "/out") }
    }
}

/// Hands out chunks one at a time, then nil.
final class Chunks {
    private var remaining: [[UInt8]]
    init(_ chunks: [[UInt8]]) { remaining = chunks.reversed() }
    func next() -> [UInt8]? { remaining.popLast() }
}
