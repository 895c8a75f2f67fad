// Benchmarks for the format and memory layers, printed as numbers (not asserted):
//   swift run -c release DumpBench [GiB]
// Forges a sparse full dump and a bitmap dump of the same machine, then measures open+index
// time and memory, and random VA translations per second with and without the translation cache.
import DumpFile
import DumpFormat
import DumpAnalysis
import DumpForge
import DumpMemory
import Foundation
#if canImport(Glibc)
import Glibc
#endif

func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// A field of /proc/self/status in KiB (RssAnon, RssFile, VmHWM ...).
func status(_ field: String) -> Int {
    guard let file = fopen("/proc/self/status", "r") else { return 0 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, 256, file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix(field + ":") { return Int(text.split(separator: " ").dropFirst().first ?? "0") ?? 0 }
    }
    return 0
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// Empties the kernel's page cache (root only) so the next reads come from disk; says whether it could.
func dropPageCache() -> Bool {
    sync()
    guard let file = fopen("/proc/sys/vm/drop_caches", "w") else { return false }
    defer { fclose(file) }
    return fputs("3\n", file) >= 0
}

let gib = CommandLine.arguments.count > 1 ? UInt64(CommandLine.arguments[1]) ?? 16 : 16
let folder = "/tmp/dumpfleet-bench"
mkdir(folder, 0o755)
print("DumpBench: a forged \(gib) GiB machine, written as sparse files in \(folder)")

for (name, kind) in [("full", DumpDescription.DumpKind.full), ("bitmap", .bitmapFull)] {
    let path = "\(folder)/\(name)-\(gib)g.dmp"
    var started = now()
    let forged = Forge.dump(.standard(kind: kind, gibibytes: gib, layoutSeed: 7))
    try MappedFile.writeSparse(path, size: forged.size, chunks: forged.chunks.map { ($0.offset, $0.bytes) })
    print("\n[\(name)] forged and written in \(String(format: "%.3f", now() - started)) s (\(forged.size >> 20) MiB file)")

    // Open + index: map the file, parse the header, build the page index, find KDBG. Memory is
    // measured on the first open, before the allocator has freed blocks to reuse.
    let cold = dropPageCache()
    let anonBefore = status("RssAnon")
    let fileBefore = status("RssFile")
    started = now()
    let dump = try KernelDump(source: MappedFile.open(path))
    let first = now() - started
    let anonGrowth = status("RssAnon") - anonBefore
    let fileGrowth = status("RssFile") - fileBefore
    var times: [Double] = []
    for _ in 0..<21 {
        started = now()
        let again = try KernelDump(source: MappedFile.open(path))
        times.append(now() - started)
        precondition(again.debuggerData.data != nil)
    }
    print("  open+index: first \(String(format: "%.3f", first * 1000)) ms\(cold ? " from a dropped page cache" : ""), median \(String(format: "%.3f", median(times) * 1000)) ms over \(times.count) more;"
          + " index \(dump.physical!.indexByteCount) bytes; RSS +\(anonGrowth) KiB anonymous, +\(fileGrowth) KiB of the mapping resident")

    // Translations: random VAs over every kernel mapping, each walk through the page tables.
    let mappings = forged.kernel.mappings.filter { $0.directoryTableBase == forged.kernel.directoryTableBase }
    var random = SeededRandom(seed: 1)
    let vas = (0..<1_000_000).map { _ -> UInt64 in
        let mapping = mappings[Int(random.next() % UInt64(mappings.count))]
        return mapping.va + random.next() % mapping.size
    }
    var checksum: UInt64 = 0
    // Uncached: no translation cache, so every lookup walks the page tables (4 levels for 4 KiB
    // pages). The first 10,000 run after dropping the page cache, so their table pages come from disk.
    let walker = X64AddressSpace(physical: dump.physical!, directoryTableBase: dump.header.directoryTableBase, cacheSlots: 0)
    let fromDisk = dropPageCache()
    started = now()
    for va in vas.prefix(10_000) { if case .success(let pa) = walker.translate(va) { checksum &+= pa } }
    let diskRate = 10_000 / (now() - started)
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
    if fromDisk { print("  translations right after dropping the page cache: \(String(format: "%.0f", diskRate))/s (table pages read from disk)") }
    print("  translations: \(String(format: "%.2f", uncached / 1e6))M/s walking the tables (no cache), "
          + "\(String(format: "%.2f", cached / 1e6))M/s cached (one core)   [checksum \(checksum & 0xFFFF)]")
    unlink(path)
}
// analyze: a hung 32-CPU VM (the NMI scenario) running 200 processes of 10 threads, as a full
// dump and as a complete bitmap dump of the same memory. Every CPU's and every thread's stack is
// walked, on 1 and on 2 threads.
func cpuSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
for (name, kind) in [("full", DumpDescription.DumpKind.full), ("bitmap", .bitmapFull)] {
    var description = DumpDescription.spinLockHang(kind: kind, layoutSeed: 11)
    description.processors = 32
    description.memory = DumpDescription.vmMemory(gibibytes: gib)
    for process in 0..<200 {
        let pid = UInt64(0x4000 + 4 * process)
        description.processes.append(ProcessDescription(processId: pid, parentId: 0xF10, imageName: "worker\(process).exe",
                                                        threads: (0..<10).map { DumpDescription.waiting(pid * 16 + UInt64($0) * 4) }))
    }
    let path = "\(folder)/analyze-\(name).dmp"
    let forged = Forge.dump(description)
    try MappedFile.writeSparse(path, size: forged.size, chunks: forged.chunks.map { ($0.offset, $0.bytes) })
    var line = "\n[analyze \(name), 32 CPUs, 2,000 threads]"
    for jobs in [1, 2] {
        var walls: [Double] = []
        var cpus: [Double] = []
        var bucket = ""
        for _ in 0..<7 {
            let wall = now()
            let cpu = cpuSeconds()
            let report = CrashAnalyzer(parallelism: jobs).analyze(try KernelDump(source: MappedFile.open(path)))
            walls.append(now() - wall)
            cpus.append(cpuSeconds() - cpu)
            bucket = report.failureBucketId
        }
        line += " jobs \(jobs): \(String(format: "%.1f", median(walls) * 1000)) ms wall, \(String(format: "%.1f", median(cpus) * 1000)) ms CPU (\(bucket));"
    }
    print(line)
    unlink(path)
}
print("\npeak RSS (VmHWM): \(status("VmHWM") / 1024) MiB")
