import DumpAnalysis
import DumpFormat
import DumpFile
import DumpForge
import DumpMemory
import Foundation
import Testing
import TestSupport

/// Genuine QEMU captures: Debian's qemu-system-x86 (software emulation, no KVM) runs a guest
/// whose RAM is a file the forge wrote in guest-physical layout (`-object memory-backend-file`),
/// its vCPUs never started (`-S`), and `dump-guest-memory` over QMP writes an ELF core and a
/// kdump-zlib file (flattened, as QEMU writes kdump-*; makedumpfile -R rebuilds it in place, a
/// second real layout of the same container). The vCPUs
/// hold reset state (QEMU 7.2 then writes EM_386 with 32-bit NT_PRSTATUS notes), so nothing in
/// the notes leads to Windows: the page tables and the kernel must be found by scanning.
@Suite struct RealQEMUCaptureTests {
    /// QEMU's QMP on its standard input and output: one JSON command per line, answered by a
    /// line holding "return" (events are skipped).
    final class QMP {
        let process = Process()
        let input = Pipe(), output = Pipe()
        var buffer = Data()

        init(qemu: String, arguments: [String]) throws {
            process.executableURL = URL(fileURLWithPath: qemu)
            process.arguments = arguments + ["-qmp", "stdio"]
            process.standardInput = input
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            _ = try line()  // the greeting
        }

        func line() throws -> String {
            while true {
                if let end = buffer.firstIndex(of: 0x0A) {
                    let text = String(decoding: buffer[buffer.startIndex..<end], as: UTF8.self)
                    buffer.removeSubrange(buffer.startIndex...end)
                    return text
                }
                let more = output.fileHandleForReading.availableData
                guard !more.isEmpty else { throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "QEMU closed QMP"]) }
                buffer += more
            }
        }

        @discardableResult
        func execute(_ command: String) throws -> String {
            input.fileHandleForWriting.write(Data((command + "\n").utf8))
            while true {
                let reply = try line()
                if reply.contains("\"return\"") || reply.contains("\"error\"") { return reply }
            }
        }

        func stop() {
            _ = try? execute(#"{"execute": "quit"}"#)
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
    }

    @Test func capturesQEMUWroteAreReadWithoutTheGuestsHelp() throws {
        guard let qemu = Tools.find("qemu-system-x86_64") else {
            if Tools.isCI { Issue.record("qemu-system-x86_64 is missing: scripts/setup installs Debian's qemu-system-x86") } else {
                print("note: qemu-system-x86_64 not found (Debian's qemu-system-x86), skipping the capture by a real QEMU")
            }
            return
        }
        var description = DumpDescription.spinLockHang(kind: .full, layoutSeed: 41)
        description.memory = [0x1..<0x9F, 0x100..<0x8000]  // 128 MiB, the hole below 1 MiB left to the firmware
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let ram = Forge.guestRAM(description)
        try MappedFile.writeSparse(folder + "/ram.img", size: ram.size, chunks: ram.chunks.map { ($0.offset, $0.bytes) })

        let qmp = try QMP(qemu: qemu, arguments: [
            "-S", "-nodefaults", "-display", "none", "-serial", "none", "-monitor", "none", "-smp", "2", "-m", "128M",
            "-object", "memory-backend-file,id=ram,size=128M,mem-path=\(folder)/ram.img,share=on", "-machine", "pc,memory-backend=ram",
        ])
        defer { qmp.stop() }
        #expect(try qmp.execute(#"{"execute": "qmp_capabilities"}"#).contains("return"))
        let dumped = try qmp.execute(#"{"execute": "dump-guest-memory", "arguments": {"paging": false, "protocol": "file:\#(folder)/core.elf"}}"#)
        try #require(dumped.contains("\"return\""), "\(dumped)")

        let source = try MappedFile.open(folder + "/core.elf")
        let core = try ElfCore(parsing: source)
        print("QEMU core: machine \(core.machine), \(core.segments.count) segments, \(core.cpus.count) vCPUs \(core.cpus.map(\.sources)), notes \(core.notes)")
        #expect(core.cpus.count == 2 && core.cpus.allSatisfy { !$0.is64Bit }, "vCPUs in reset state")
        let dump = try KernelDump(source: source)
        let capture = try #require(dump.capture)
        #expect(capture.directoryTableBaseSource.hasPrefix("a scan of physical memory"), "\(capture.directoryTableBaseSource)")
        #expect(capture.kernelBase == ram.kernel.kernelBase && dump.debuggerData.data != nil, "\(dump.notes)")
        let report = CrashAnalyzer(parallelism: 1).analyze(dump)
        let full = CrashAnalyzer(parallelism: 1).analyze(try KernelDump(source: Fixtures.source(Forge.dump(description))))
        #expect(report.processes.map(\.name) == full.processes.map(\.name) && report.modules.map(\.name) == full.modules.map(\.name))
        #expect(report.failureBucketId.hasPrefix("LIVE_"), "\(report.failureBucketId)")
        #expect(DumpInspector.inspect(dump).completeness.verdict == "hypervisor capture")

        // The same memory as kdump-zlib: every page compressed on its own, zero pages shared.
        let kdumped = try qmp.execute(#"{"execute": "dump-guest-memory", "arguments": {"paging": false, "format": "kdump-zlib", "protocol": "file:\#(folder)/core.kdump"}}"#)
        try #require(kdumped.contains("\"return\""), "\(kdumped)")
        var layouts = [("flattened", folder + "/core.kdump")]
        if let makedumpfile = Tools.find("makedumpfile") {
            let rebuilt = Process()
            rebuilt.executableURL = URL(fileURLWithPath: makedumpfile)
            rebuilt.arguments = ["-R", folder + "/core.kdump.raw"]
            rebuilt.standardInput = try FileHandle(forReadingFrom: URL(fileURLWithPath: folder + "/core.kdump"))
            rebuilt.standardOutput = FileHandle.nullDevice
            try rebuilt.run()
            rebuilt.waitUntilExit()
            #expect(rebuilt.terminationStatus == 0)
            layouts.append(("in place", folder + "/core.kdump.raw"))
        } else if Tools.isCI {
            Issue.record("makedumpfile is missing: scripts/setup installs it")
        } else {
            print("note: makedumpfile not found, skipping the kdump file rebuilt in place")
        }
        for (layout, path) in layouts {
            let compressed = try KernelDump(source: MappedFile.open(path))
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0
            print("QEMU kdump-zlib (\(layout)): \(size) bytes for 128 MiB, \(compressed.physical?.storedPages ?? 0) pages, \(compressed.capture?.container ?? "-")")
            #expect(compressed.capture?.container.contains("kdump") == true && compressed.capture?.kernelBase == ram.kernel.kernelBase, "\(layout): \(compressed.notes)")
            #expect(compressed.capture?.container.contains("flattened") == (layout == "flattened"))
            #expect(size < ram.size / 4, "zero pages take no room")
            let fromKdump = CrashAnalyzer(parallelism: 1).analyze(compressed)
            #expect(fromKdump.processes.map(\.name) == report.processes.map(\.name) && fromKdump.modules.map(\.name) == report.modules.map(\.name), "\(layout)")
            #expect(fromKdump.failureBucketId == report.failureBucketId && fromKdump.signature == report.signature, "\(layout)")
            // Every stored page reads as the ELF core's copy of it.
            let elfMemory = try #require(dump.physical), kdumpMemory = try #require(compressed.physical)
            for pfn in stride(from: UInt64(0x100), to: 0x8000, by: 0x1F7) {
                #expect(try kdumpMemory.read(physical: pfn << 12, count: 0x1000) == elfMemory.read(physical: pfn << 12, count: 0x1000), "PFN 0x\(String(pfn, radix: 16))")
            }
        }
    }
}
