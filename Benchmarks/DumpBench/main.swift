// Benchmarks for the format and memory layers, printed as numbers (not asserted):
//   swift run -c release DumpBench [GiB [dense GiB]]
// Forges a full dump and a bitmap dump of a GiB-sized machine (default 16) as sparse files, and
// the same dumps of a smaller machine (default 4) with data in every page (no holes, no zero
// pages, see Measure.writeEveryPage). For each: open+index time and memory, and random VA
// translations per second with and without the translation cache; then `analyze` of a hung
// 32-CPU VM. Cold runs drop the page cache first (root only) and report the dump pages they
// brought in (resident pages of the file, readahead included). Peak memory is reset after
// each forge, so it counts the measured work only.
import DumpFile
import DumpFormat
import DumpAnalysis
import DumpForge
import DumpMemory
import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func cpuSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
func ms(_ seconds: Double) -> String { String(format: "%.3f", seconds * 1000) }

let arguments = CommandLine.arguments.dropFirst().compactMap { UInt64($0) }
let gib = arguments.first ?? 16
let denseGiB = arguments.dropFirst().first ?? 4
let folder = "/tmp/dumpfleet-bench"
mkdir(folder, 0o755)
let canDropCache = Measure.dropPageCache()
print("DumpBench: forged machines written to \(folder): \(gib) GiB sparse, \(denseGiB) GiB with every page data;"
      + (canDropCache ? " cold runs drop the page cache" : " not root, so no cold runs (the page cache cannot be dropped)"))

/// Writes the dump `description` describes; with `dense`, rewrites it with data in every page.
/// Returns the path and the VAs to translate (random points in the kernel's own mappings), and
/// drops the forged state before anything is measured.
func forge(_ description: DumpDescription, name: String, dense: Bool) throws -> (path: String, vas: [UInt64], size: UInt64) {
    let path = "\(folder)/\(name).dmp"
    let started = now()
    let forged = Forge.dump(description)
    try MappedFile.writeSparse(path, size: forged.size, chunks: forged.chunks.map { ($0.offset, $0.bytes) })
    if dense {
        try Measure.writeEveryPage(copying: path, to: path + ".dense")
        rename(path + ".dense", path)
    }
    let mappings = forged.kernel.mappings.filter { $0.directoryTableBase == forged.kernel.directoryTableBase }
    var random = SeededRandom(seed: 1)
    let vas = (0..<1_000_000).map { _ -> UInt64 in
        let mapping = mappings[Int(random.next() % UInt64(mappings.count))]
        return mapping.va + random.next() % mapping.size
    }
    print("\n[\(name)] forged and written in \(String(format: "%.1f", now() - started)) s (\(forged.size >> 20) MiB file\(dense ? ", every page data" : ", sparse"))")
    return (path, vas, forged.size)
}

/// Open+index and translations of one dump file.
func measureMemoryLayer(path: String, vas: [UInt64]) throws {
    _ = Measure.resetPeakMemory()
    // Open + index: map the file, parse the header, build the page index, find KDBG. Memory is
    // measured on the first open, before the allocator has freed blocks to reuse.
    let cold = Measure.dropPageCache()
    let anonBefore = Measure.status("RssAnon")
    var started = now()
    let dump = try KernelDump(source: MappedFile.open(path))
    let first = now() - started
    let anonGrowth = Measure.status("RssAnon") - anonBefore
    let openPages = Measure.residentPages(of: path)
    var times: [Double] = []
    for _ in 0..<21 {
        started = now()
        let again = try KernelDump(source: MappedFile.open(path))
        times.append(now() - started)
        precondition(again.debuggerData.data != nil)
    }
    print("  open+index: first \(ms(first)) ms\(cold ? " from a dropped page cache, reading \(openPages) pages of the dump" : ""), "
          + "median \(ms(median(times))) ms over \(times.count) more; index \(dump.physical!.indexByteCount) bytes; RSS +\(anonGrowth) KiB anonymous")

    // Uncached: no translation cache, so every lookup walks the page tables (4 levels for 4 KiB
    // pages). The first 10,000 run after dropping the page cache, so their table pages come from disk.
    var checksum: UInt64 = 0
    let walker = X64AddressSpace(physical: dump.physical!, directoryTableBase: dump.header.directoryTableBase, cacheSlots: 0)
    if Measure.dropPageCache() {
        started = now()
        for va in vas.prefix(10_000) { if case .success(let pa) = walker.translate(va) { checksum &+= pa } }
        let rate = 10_000 / (now() - started)
        print("  10,000 translations right after dropping the page cache: \(String(format: "%.0f", rate))/s, reading \(Measure.residentPages(of: path)) pages of the dump")
    }
    started = now()
    for va in vas { if case .success(let pa) = walker.translate(va) { checksum &+= pa } }
    let uncached = Double(vas.count) / (now() - started)
    // Cached: 512 pages over and over, all hits after the first round.
    let cachedSpace = X64AddressSpace(physical: dump.physical!, directoryTableBase: dump.header.directoryTableBase)
    let hot = Array(vas.prefix(512))
    started = now()
    for _ in 0..<4000 {
        for va in hot { if case .success(let pa) = cachedSpace.translate(va) { checksum &+= pa } }
    }
    let cached = Double(4000 * hot.count) / (now() - started)
    print("  translations, warm: \(String(format: "%.2f", uncached / 1e6))M/s walking the tables (no cache), "
          + "\(String(format: "%.2f", cached / 1e6))M/s cached (one core)   [checksum \(checksum & 0xFFFF)]")
    print("  peak RSS of the measurement: \(Measure.status("VmHWM") / 1024) MiB (forge excluded)")
}

for (name, kind) in [("full", DumpDescription.DumpKind.full), ("bitmap", .bitmapFull)] {
    for (size, dense) in [(gib, false), (denseGiB, true)] {
        let file = try forge(.standard(kind: kind, gibibytes: size, layoutSeed: 7), name: "\(name)-\(size)g\(dense ? "-dense" : "")", dense: dense)
        try measureMemoryLayer(path: file.path, vas: file.vas)
        unlink(file.path)
    }
}

// analyze: a hung 32-CPU VM (the NMI scenario) running 200 processes of 10 threads, as a full
// dump and as a complete bitmap dump of the same memory. Every CPU's and every thread's stack is
// walked, on 1 and on 2 threads; first once from a dropped page cache, then warm.
for (name, kind) in [("full", DumpDescription.DumpKind.full), ("bitmap", .bitmapFull)] {
    for (size, dense) in [(gib, false), (denseGiB, true)] {
        var description = DumpDescription.spinLockHang(kind: kind, layoutSeed: 11)
        description.processors = 32
        description.memory = DumpDescription.vmMemory(gibibytes: size)
        for process in 0..<200 {
            let pid = UInt64(0x4000 + 4 * process)
            description.processes.append(ProcessDescription(processId: pid, parentId: 0xF10, imageName: "worker\(process).exe",
                                                            threads: (0..<10).map { DumpDescription.waiting(pid * 16 + UInt64($0) * 4) }))
        }
        let file = try forge(description, name: "analyze-\(name)-\(size)g\(dense ? "-dense" : "")", dense: dense)
        _ = Measure.resetPeakMemory()
        var line = "  analyze, 32 CPUs, 2,000 threads:"
        if Measure.dropPageCache() {
            let wall = now()
            let report = CrashAnalyzer(parallelism: 1).analyze(try KernelDump(source: MappedFile.open(file.path)))
            line += " cold \(String(format: "%.1f", (now() - wall) * 1000)) ms reading \(Measure.residentPages(of: file.path)) dump pages (\(report.failureBucketId));"
        }
        for jobs in [1, 2] {
            var walls: [Double] = []
            var cpus: [Double] = []
            for _ in 0..<7 {
                let wall = now()
                let cpu = cpuSeconds()
                _ = CrashAnalyzer(parallelism: jobs).analyze(try KernelDump(source: MappedFile.open(file.path)))
                walls.append(now() - wall)
                cpus.append(cpuSeconds() - cpu)
            }
            line += " warm, jobs \(jobs): \(String(format: "%.1f", median(walls) * 1000)) ms wall, \(String(format: "%.1f", median(cpus) * 1000)) ms CPU;"
        }
        print(line)
        print("  peak RSS of the analyses: \(Measure.status("VmHWM") / 1024) MiB (forge excluded)")
        unlink(file.path)
    }
}
