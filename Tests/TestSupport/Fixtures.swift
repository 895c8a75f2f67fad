import DumpFile
import Foundation
import DumpFormat
import DumpForge
#if canImport(Glibc)
import Glibc
#endif

/// Shared helpers for the test targets: forged dumps as byte sources or sparse files, and the
/// real dumps in ../shared/fixtures when the checkout has them.
public enum Fixtures {
    /// A forged dump held in memory (for dumps of a few MiB).
    public static func source(_ dump: ForgedDump) -> ByteSource { ByteSource(copying: dump.contiguousBytes()) }

    /// A small forged dump of `kind` with the standard contents, in memory. Full and bitmap-full
    /// dumps of a 256 MiB machine stay under 300 MiB of zeros.
    public static func standard(_ kind: DumpDescription.DumpKind, seed: UInt64 = 1) -> (ForgedDump, ByteSource) {
        var description = DumpDescription.standard(kind: kind, layoutSeed: seed)
        description.memory = [0x1..<0x9F, 0x100..<0x8000]  // 128 MiB with the low-memory hole
        let dump = Forge.dump(description)
        return (dump, source(dump))
    }

    /// Writes `dump` as a sparse file in a fresh temporary folder and maps it; `discard(path)`
    /// removes both when the test is done (the mapping stays valid until the source goes).
    public static func mapped(_ dump: ForgedDump, name: String = "forged.dmp") throws -> (path: String, source: ByteSource) {
        let path = temporaryFolder() + "/" + name
        try MappedFile.writeSparse(path, size: dump.size, chunks: dump.chunks.map { ($0.offset, $0.bytes) })
        return (path, try MappedFile.open(path))
    }

    public static func discard(_ path: String) {
        unlink(path)
        rmdir(String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]))
    }

    public static func temporaryFolder() -> String {
        var template = Array("/tmp/dumpfleet-test-XXXXXX".utf8CString)
        let folder = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        return folder
    }

    /// The repository's root folder.
    public static let repository = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")

    /// ../shared/<sub> beside the repository, or nil on a clone without it.
    public static func sharedPath(_ sub: String) -> String? {
        let path = repository + "/../shared/" + sub
        return access(path, F_OK) == 0 ? path : nil
    }

    /// ../shared/fixtures/real beside the repository, or nil on a clone without it.
    public static var realDumpsFolder: String? { sharedPath("fixtures/real") }

    /// A file of Tests/Fixtures/compiled: the image a real compiler built, and its notes.
    public static func compiled(_ name: String) -> String { repository + "/Tests/Fixtures/compiled/" + name }
}

/// A reproducible random generator for randomized tests, seeded from the clock unless told.
/// A clock seed is printed on stderr the moment it is drawn, so that a test that crashes the
/// whole run still leaves it behind; `DUMPFLEET_TEST_SEED=N` replays it.
public struct TestRandom {
    private var generator: SeededRandom
    public let seed: UInt64

    public init(seed: UInt64? = nil, test: String = #function) {
        if let seed {
            self.seed = seed
        } else if let replay = ProcessInfo.processInfo.environment["DUMPFLEET_TEST_SEED"].flatMap({ UInt64($0) }) {
            self.seed = replay
        } else {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            self.seed = UInt64(now.tv_nsec) ^ UInt64(now.tv_sec) << 20
            FileHandle.standardError.write(Data("note: \(test) draws random cases with seed \(self.seed) (DUMPFLEET_TEST_SEED=\(self.seed) replays them)\n".utf8))
        }
        generator = SeededRandom(seed: self.seed)
    }

    public mutating func next() -> UInt64 { generator.next() }
    public mutating func below(_ bound: UInt64) -> UInt64 { generator.below(bound) }
}

extension Fixtures {
    /// The real dump `name` from ../shared/fixtures/real, mapped, or nil where it is absent.
    public static func realDump(_ name: String) throws -> ByteSource? {
        guard let folder = realDumpsFolder else {
            print("note: ../shared/fixtures/real is absent; skipping the real-dump checks for \(name)")
            return nil
        }
        return try MappedFile.open(folder + "/" + name)
    }
}
