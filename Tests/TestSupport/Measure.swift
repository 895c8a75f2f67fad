import Foundation
import DumpForge
#if canImport(Glibc)
import Glibc
#endif

/// What the benchmarks report besides time: the page cache (dropped for cold runs), bytes a
/// process read, and how much of a file is resident, so a number says what it measured.
public enum Measure {
    /// Writes back dirty pages and empties the kernel's page cache (root only), so the next
    /// reads come from the disk; false where it could not.
    public static func dropPageCache() -> Bool {
        sync()
        guard let file = fopen("/proc/sys/vm/drop_caches", "w") else { return false }
        defer { fclose(file) }
        return fputs("3\n", file) >= 0
    }

    /// /proc/self/io: bytes this process asked read(2) and friends for (`rchar`, cached or
    /// not; mapped pages are not counted) and bytes fetched from storage for it (`read_bytes`).
    public struct ProcessIO {
        public var requested: UInt64
        public var fromStorage: UInt64

        public static func now() -> ProcessIO {
            var io = ProcessIO(requested: 0, fromStorage: 0)
            guard let text = try? String(contentsOfFile: "/proc/self/io", encoding: .utf8) else { return io }
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
                guard parts.count == 2, let value = UInt64(parts[1]) else { continue }
                if parts[0] == "rchar" { io.requested = value }
                if parts[0] == "read_bytes" { io.fromStorage = value }
            }
            return io
        }

        public static func - (after: ProcessIO, before: ProcessIO) -> ProcessIO {
            ProcessIO(requested: after.requested &- before.requested, fromStorage: after.fromStorage &- before.fromStorage)
        }
    }

    /// How many of the file's 4 KiB pages are in the page cache now (mincore on a fresh
    /// mapping); after a dropped cache, the pages an operation read, readahead included.
    public static func residentPages(of path: String) -> Int {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0 else { return 0 }
        let length = Int(info.st_size)
        guard let base = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0), base != MAP_FAILED else { return 0 }
        defer { munmap(base, length) }
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        var vector = [UInt8](repeating: 0, count: (length + pageSize - 1) / pageSize)
        guard mincore(base, length, &vector) == 0 else { return 0 }
        return vector.reduce(0) { $0 + Int($1 & 1) }
    }
}

/// glibc's malloc_trim (malloc.h, which the Glibc module does not bring in).
@_silgen_name("malloc_trim") private func mallocTrim(_ pad: Int) -> Int32

extension Measure {
    /// Returns freed heap to the system and resets the peak resident size (VmHWM) to the
    /// current one (Linux 4.0+), so a later peak is the measured work's and not the forge's.
    public static func resetPeakMemory() -> Bool {
        _ = mallocTrim(0)
        guard let file = fopen("/proc/self/clear_refs", "w") else { return false }
        defer { fclose(file) }
        return fputs("5\n", file) >= 0
    }

    /// A field of /proc/self/status in KiB (VmRSS, VmHWM, RssAnon, RssFile ...).
    public static func status(_ field: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        return 0
    }

    /// Writes `source` again at `destination` with data in every page, for benchmarks that
    /// must not profit from holes or zero pages: each page that is a hole or zeros in the
    /// source gets 2 KiB of seeded random bytes and 2 KiB of zeros (LZ4 halves it, about as it
    /// halves real memory); the others are copied.
    public static func writeEveryPage(copying source: String, to destination: String) throws {
        guard let input = FileHandle(forReadingAtPath: source) else { throw CocoaError(.fileReadNoSuchFile) }
        FileManager.default.createFile(atPath: destination, contents: nil)
        guard let output = FileHandle(forWritingAtPath: destination) else { throw CocoaError(.fileWriteUnknown) }
        defer { try? input.close(); try? output.close() }
        var random = SeededRandom(seed: 5)
        while let block = try input.read(upToCount: 1 << 20), !block.isEmpty {
            var bytes = [UInt8](block)
            for page in stride(from: 0, to: bytes.count, by: 4096) where bytes[page..<min(page + 4096, bytes.count)].allSatisfy({ $0 == 0 }) {
                for word in stride(from: page, to: min(page + 2048, bytes.count), by: 8) {
                    let value = random.next()
                    for byte in 0..<min(8, bytes.count - word) { bytes[word + byte] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(byte))) }
                }
            }
            try output.write(contentsOf: bytes)
        }
    }
}
