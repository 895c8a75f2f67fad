@testable import BlobStore
import Foundation
import Testing
import TestSupport

/// The upload verifier parses LZ4 frames itself (so that its state can be saved between
/// requests). Its oracles are not our own encoder: frames from the `lz4` tool in every layout
/// the format allows, and liblz4's LZ4F, which the workers decode with, on damaged frames.
@Suite struct FrameVerifierTests {
    /// lz4's options that change the frame's layout: block size (64 KiB to 4 MiB), linked or
    /// independent blocks, block checksums, content checksum, content size in the header.
    static let layouts: [[String]] = [[], ["-B4"], ["-B5", "-BD"], ["-B6", "-BX"], ["--no-frame-crc"], ["--content-size", "-BD"],
                                      ["-B4", "-BD", "-BX", "--content-size"], ["-9", "-BD"], ["-B4", "--no-frame-crc", "-BX"]]

    @Test func framesOfTheLZ4ToolVerifyInAnyPiecesAndAcrossCheckpoints() throws {
        guard let lz4 = Tools.find("lz4") else {
            #expect(!Tools.isCI, "lz4 is missing although scripts/setup installs it")
            print("note: the lz4 tool is not installed (scripts/setup installs it); skipping the check against its frames")
            return
        }
        let folder = BlobStoreTests.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // 10 MiB and 3 pages: hash blocks of text, noise and zeros, and a short last one.
        let (input, contentHash) = try BlobStoreTests.dumpLikeFile(in: folder, pages: 2563, zeroBlocks: [1])
        let size = UInt64(2563 * 4096)
        var random = TestRandom()
        for layout in Self.layouts {
            let frame = try Tools.run(lz4, ["-c", "-q"] + layout + [input])
            #expect(frame.status == 0)
            let bytes = [UInt8](frame.output)
            let part = folder + "/frame.part"
            _ = FileManager.default.createFile(atPath: part, contents: nil)
            let file = try AppendingFile(path: part)
            let fd = open(part, O_RDONLY)
            defer { close(fd) }
            var verifier = FrameVerifier(expectedSize: size)
            var written = 0
            var resumed = 0
            while written < bytes.count {
                let piece = Int(random.below(300_000)) + 1
                let end = min(bytes.count, written + piece)
                try bytes[written..<end].withUnsafeBytes { try file.write($0) }
                written = end
                try verifier.advance(fd, upTo: UInt64(written))
                // As a new request (or a restarted coordinator) would: from the saved checkpoint.
                if random.below(3) == 0 {
                    verifier = try #require(FrameVerifier(checkpoint: verifier.checkpoint(), expectedSize: size))
                    try verifier.advance(fd, upTo: UInt64(written))
                    resumed += 1
                }
            }
            #expect(throws: Never.self, "lz4 \(layout), resumed \(resumed) times (seed \(random.seed))") { try verifier.check(contentHash: contentHash) }
            #expect(verifier.consumed == UInt64(bytes.count))
            unlink(part)
        }
    }

    @Test func aDamagedFrameIsAcceptedExactlyWhenLZ4FDecodesIt() throws {
        let folder = BlobStoreTests.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (input, contentHash) = try BlobStoreTests.dumpLikeFile(in: folder, pages: 300)
        let size = UInt64(300 * 4096)
        var frames = [try Self.encoded(input)]
        if let lz4 = Tools.find("lz4") {
            frames.append([UInt8](try Tools.run(lz4, ["-c", "-q", "-B4", "-BD", "-BX", "--content-size", input]).output))
            frames.append([UInt8](try Tools.run(lz4, ["-c", "-q", "-B4", "--no-frame-crc", input]).output))
        }
        var random = TestRandom()
        var accepted = 0
        for round in 0..<240 {
            var damaged = frames[round % frames.count]
            switch random.below(5) {
            case 0: damaged[Int(random.below(UInt64(min(damaged.count, 32))))] ^= UInt8(1 << random.below(8))  // the header and first block
            case 1: damaged[Int(random.below(UInt64(damaged.count)))] ^= UInt8(1 << random.below(8))
            case 2: damaged.removeLast(Int(random.below(UInt64(damaged.count))) + 1)
            case 3: damaged += (0..<Int(random.below(16)) + 1).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            default:
                let at = Int(random.below(UInt64(damaged.count - 4)))
                damaged[at] = 0  // a block size word (or anything) zeroed
            }
            let path = folder + "/damaged-\(round).lz4"
            _ = FileManager.default.createFile(atPath: path, contents: Data(damaged))
            let ours = Result { () throws -> Void in
                let fd = open(path, O_RDONLY)
                defer { close(fd) }
                let verifier = FrameVerifier(expectedSize: size)
                try verifier.advance(fd, upTo: UInt64(damaged.count))
                try verifier.check(contentHash: contentHash)
            }
            let lz4f = Result { _ = try BlobStore.extract(blobAt: path, contentHash: contentHash, to: folder + "/out.dmp") }
            let weAccept = (try? ours.get()) != nil, lz4fAccepts = (try? lz4f.get()) != nil
            #expect(weAccept == lz4fAccepts, "round \(round) (seed \(random.seed)): ours \(ours), LZ4F \(lz4f)")
            if weAccept { accepted += 1 }
            unlink(path)
        }
        #expect(accepted < 240, "most damage is caught")
    }

    @Test func anUnfinishedFrameIsIncompleteAndTooMuchIsAnOverflow() throws {
        let folder = BlobStoreTests.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (input, contentHash) = try BlobStoreTests.dumpLikeFile(in: folder, pages: 1500)
        let frame = try Self.encoded(input)
        let fd = Self.file(holding: frame, at: folder + "/frame.lz4")
        defer { close(fd) }
        let cut = FrameVerifier(expectedSize: 1500 * 4096)
        try cut.advance(fd, upTo: UInt64(frame.count - 9))
        #expect(throws: FrameVerifier.Incomplete.self) { try cut.check(contentHash: contentHash) }
        let small = FrameVerifier(expectedSize: 1 << 20)
        #expect(throws: FrameVerifier.Overflow.self) { try small.advance(fd, upTo: UInt64(frame.count)) }
        let other = FrameVerifier(expectedSize: 1500 * 4096)
        try other.advance(fd, upTo: UInt64(frame.count))
        #expect(throws: FrameVerifier.Mismatch.self) { try other.check(contentHash: String(repeating: "0", count: 64)) }
    }

    /// Blocks shorter than the frame's block size come only last: a frame of short blocks would
    /// never reach a hash-block boundary, so no checkpoint could be saved, and each request
    /// would decode it again from the start.
    @Test func aShortBlockBeforeTheLastIsRefused() throws {
        let folder = BlobStoreTests.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (input, _) = try BlobStoreTests.dumpLikeFile(in: folder, pages: 10)
        let header = Array(try Self.encoded(input).prefix(7))  // magic, FLG, BD (4 MiB blocks), header checksum
        // Two stored blocks (the high bit of the size word), of 1 byte and of 16 bytes.
        let frame = header + [1, 0, 0, 0x80, 0x41] + [16, 0, 0, 0x80] + [UInt8](repeating: 0x42, count: 16)
        let fd = Self.file(holding: frame, at: folder + "/short.lz4")
        defer { close(fd) }
        let verifier = FrameVerifier(expectedSize: 17)
        let refused = #expect(throws: LZ4Error.self) { try verifier.advance(fd, upTo: UInt64(frame.count)) }
        #expect(refused?.description.contains("only the last may") == true, "\(String(describing: refused))")
        let single = FrameVerifier(expectedSize: 17)
        try single.advance(fd, upTo: UInt64(header.count + 5))
        #expect(single.size == 1, "one short block alone is fine: it may be the last")
    }

    @Test func aCheckpointThatIsTornOrForeignIsNotTrusted() throws {
        let folder = BlobStoreTests.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (input, _) = try BlobStoreTests.dumpLikeFile(in: folder, pages: 2100)
        let frame = try Self.encoded(input)
        let fd = Self.file(holding: frame, at: folder + "/frame.lz4")
        defer { close(fd) }
        let size = UInt64(2100 * 4096)
        let verifier = FrameVerifier(expectedSize: size)
        try verifier.advance(fd, upTo: UInt64(frame.count / 2))
        let saved = verifier.checkpoint()
        let resumed = try #require(FrameVerifier(checkpoint: saved, expectedSize: size))
        #expect(resumed.size == 4 << 20 && resumed.consumed > 0, "the checkpoint is at the last whole hash block")
        #expect(FrameVerifier(checkpoint: Array(saved.dropLast(5)), expectedSize: size) == nil)
        var flipped = saved
        flipped[20] ^= 1
        #expect(FrameVerifier(checkpoint: flipped, expectedSize: size) == nil)
        #expect(FrameVerifier(checkpoint: saved, expectedSize: size + 1) == nil, "a checkpoint of another announcement")
    }

    /// A file holding `bytes`, opened for reading (the caller closes it).
    static func file(holding bytes: [UInt8], at path: String) -> Int32 {
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return open(path, O_RDONLY)
    }

    /// The frame our own uploader sends (LZ4FrameEncoder: linked 4 MiB blocks, content checksum).
    static func encoded(_ path: String) throws -> [UInt8] {
        let encoder = try LZ4FrameEncoder()
        let data = [UInt8](FileManager.default.contents(atPath: path)!)
        var frame: [UInt8] = []
        var offset = 0
        while offset < data.count {
            let end = min(data.count, offset + (1 << 20))
            frame += try data[offset..<end].withUnsafeBytes { try encoder.compress($0) }
            offset = end
        }
        return frame + (try encoder.finish())
    }
}
