import Foundation
import Testing
import TestSupport

/// Runs the built `dumpfleet` executable as a user would.
@Suite struct CLITests {
    static var executable: String { ServiceProcess.executable }

    struct Result {
        var status: Int32
        var output: String
        var error: String
    }

    func run(_ arguments: [String]) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = arguments
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, output: String(decoding: out, as: UTF8.self), error: String(decoding: err, as: UTF8.self))
    }

    @Test func forgeThenInspect() throws {
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/kernel.dmp"
        let forged = try run(["forge", "--kind", "bitmap-kernel", "--memory-gib", "2", "--bugcheck", "0x3B", path])
        #expect(forged.status == 0, "\(forged.error)")
        let text = try run(["inspect", path])
        #expect(text.status == 0)
        #expect(text.output.contains("0x0000003B SYSTEM_SERVICE_EXCEPTION"))
        #expect(text.output.contains("kernel memory only"))

        let json = try run(["inspect", "--json", path])
        #expect(json.status == 0)
        let document = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        let report = document?["report"] as? [String: Any]
        #expect(report?["dumpType"] as? Int == 6)
        #expect((report?["bugCheck"] as? [String: Any])?["name"] as? String == "SYSTEM_SERVICE_EXCEPTION")
        #expect((report?["debuggerData"] as? [String: Any])?["status"] as? String == "clear")
    }

    @Test func forgeThenAnalyze() throws {
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/timer.dmp"
        #expect(try run(["forge", "--scenario", "timer-corruption", "--kind", "bitmap-kernel", "--memory-gib", "2", path]).status == 0)
        let text = try run(["analyze", path])
        #expect(text.status == 0, "\(text.error)")
        for line in ["SYSTEM_SERVICE_EXCEPTION (0x3B)", "STACK_TEXT:", "EVIDENCE:", "FAILURE_BUCKET_ID: 0x3B_c0000005_CORRUPTION_VideoAccelerator.exe", "ADVICE:"] {
            #expect(text.output.contains(line), "missing \(line)")
        }
        let json = try run(["analyze", "--json", "--jobs", "1", path])
        let document = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        let report = document?["report"] as? [String: Any]
        #expect(report?["schemaVersion"] as? Int == 1)
        #expect((report?["culprit"] as? [String: Any])?["name"] as? String == "VideoAccelerator.exe")
        #expect(((report?["signature"] as? [String: Any])?["id"] as? String)?.count == 16)

        // A symbol folder: a missing one is refused at once; one without the dump's files says so.
        let missing = try run(["analyze", "--symbols", folder + "/no-such-folder", path])
        #expect(missing.status != 0 && missing.error.contains("the symbol directory \(folder)/no-such-folder does not exist"), "\(missing.error)")
        let empty = folder + "/symbols"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let withSymbols = try run(["analyze", "--json", "--symbols", empty, "--symbols", folder, path])
        let symbolReport = (try JSONSerialization.jsonObject(with: Data(withSymbols.output.utf8)) as? [String: Any])?["report"] as? [String: Any]
        #expect(symbolReport?["symbolFiles"] as? [String] == [] && report?["symbolFiles"] == nil)
        #expect(try run(["analyze", "--symbols", empty, path]).output.contains("SYMBOLS: none of the stacks' modules"))

        // Custom rules: blaming nt's timer code makes the kernel frame the culprit.
        let rules = folder + "/rules"
        try "skip nt\nblame nt!KiInsertTimerTable\n".write(toFile: rules, atomically: true, encoding: .utf8)
        let blamed = try run(["analyze", "--rules", rules, path])
        #expect(blamed.output.contains("FAILURE_BUCKET_ID: 0x3B_c0000005_nt+0x"), "\(blamed.output)")
        try "forgive nt\n".write(toFile: rules, atomically: true, encoding: .utf8)
        let bad = try run(["analyze", "--rules", rules, path])
        #expect(bad.status != 0)
        #expect(bad.error.contains("triage rules line 1"))
    }

    /// A hung VM as its KVM host captures it: inspect and analyze read the ELF core as they
    /// read a dump, and say where it came from.
    @Test func forgeAndReadAHypervisorCapture() throws {
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/hung.elf"
        #expect(try run(["forge", "--scenario", "spinlock-hang", "--kind", "qemu-elf", "--memory-gib", "1", path]).status == 0)
        let inspection = try run(["inspect", path])
        #expect(inspection.status == 0 && inspection.output.contains("hypervisor capture") && inspection.output.contains("CR3 of vCPU 0"), "\(inspection.output)")
        let analysis = try run(["analyze", path])
        #expect(analysis.status == 0 && analysis.output.contains("FAILURE_BUCKET_ID: LIVE_vfstor+0x"), "\(analysis.output)")

        // The same machine's RAM as a raw image: no registers at all, the kernel found by scanning.
        let raw = folder + "/hung.raw"
        #expect(try run(["forge", "--scenario", "spinlock-hang", "--kind", "raw", "--memory-gib", "1", raw]).status == 0)
        let rawInspection = try run(["inspect", "--raw", raw])
        #expect(rawInspection.status == 0 && rawInspection.output.contains("raw physical memory image")
                && rawInspection.output.contains("a scan of physical memory"), "\(rawInspection.output)")
        let rawAnalysis = try run(["analyze", "--raw", raw])
        #expect(rawAnalysis.output.contains("FAILURE_BUCKET_ID: LIVE_"), "\(rawAnalysis.output)")
    }

    @Test func notADumpExitsWithOneLine() throws {
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/notes.txt"
        try "just some notes\n".write(toFile: path, atomically: true, encoding: .utf8)
        let result = try run(["inspect", path, folder + "/missing.dmp"])
        #expect(result.status == 1)
        let lines = result.error.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines[0].contains("not a Windows crash dump"))
        #expect(lines[1].contains("missing.dmp: open failed"))
        let json = try run(["inspect", "--json", path])
        #expect(json.status == 1)
        #expect(json.output.contains("\"error\""))
    }

    @Test func helpTeaches() throws {
        let result = try run(["--help"])
        #expect(result.status == 0)
        for word in ["analyze", "inspect", "forge", "demo", "Examples"] { #expect(result.output.contains(word)) }
        let inspect = try run(["inspect", "--help"])
        #expect(inspect.output.contains("--json"))
    }
}
