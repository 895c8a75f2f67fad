import Foundation
import Testing
import TestSupport

/// Runs the built `dumpfleet` executable as a user would.
@Suite struct CLITests {
    /// The executable sits beside the test bundle in the build folder.
    static var executable: String {
        let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var candidate = folder
        while candidate.path != "/" {
            let path = candidate.appendingPathComponent("dumpfleet").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
            candidate.deleteLastPathComponent()
        }
        return folder.appendingPathComponent("dumpfleet").path
    }

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
        for word in ["inspect", "forge", "demo", "Examples"] { #expect(result.output.contains(word)) }
        let inspect = try run(["inspect", "--help"])
        #expect(inspect.output.contains("--json"))
    }
}
