import ArgumentParser
import DumpAnalysis
import DumpFile
import Foundation

/// `dumpfleet inspect`: dumpchk-style facts about each file.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe dump files: type, OS build, CPUs, bug check, memory, KDBG, completeness.",
        discussion: """
        Exits with status 1 if any file is not a readable Windows kernel dump, printing one line
        with the reason for it (on standard error, or as {"file", "error"} with --json).
        """
    )

    @Argument(help: "Dump files (MEMORY.DMP, Mini*.dmp, ...).")
    var files: [String]

    @Flag(help: "Print one JSON document per file (schema: Sources/DumpAnalysis/DumpAnalysis.docc/InspectJSON.md).")
    var json = false

    func run() throws {
        var failed = false
        for (index, path) in files.enumerated() {
            do {
                let report = try DumpInspector.inspect(MappedFile.open(path))
                if json {
                    print(try JSONOutput.encode(InspectOutput(file: path, report: report)))
                } else {
                    if index > 0 { print() }
                    if files.count > 1 { print("== \(path)") }
                    print(report.text)
                }
            } catch {
                failed = true
                if json {
                    print(try JSONOutput.encode(InspectFailure(file: path, error: "\(error)")))
                } else {
                    FileHandle.standardError.write(Data("dumpfleet: \(path): \(error)\n".utf8))
                }
            }
        }
        if failed { throw ExitCode(1) }
    }
}

struct InspectOutput: Encodable {
    var file: String
    var report: InspectionReport
}

struct InspectFailure: Encodable {
    var file: String
    var error: String
}

enum JSONOutput {
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
