import ArgumentParser
import DumpAnalysis
import DumpFile
import DumpMemory
import Foundation

/// `dumpfleet inspect`: dumpchk-style facts about each file.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe dump files: type, OS build, CPUs, bug check, memory, KDBG, completeness.",
        discussion: """
        Exits with status 1 if any file is not a readable Windows kernel dump, printing one line \
        with the reason for it (on standard error, or as {"file", "error"} with --json).
        """
    )

    @Argument(help: "Dump files (MEMORY.DMP, Mini*.dmp, ...).")
    var files: [String]

    @Flag(help: "Print one JSON document per file (schema: Sources/DumpAnalysis/DumpAnalysis.docc/InspectJSON.md).")
    var json = false

    @Flag(help: "Read each file as a raw image of physical memory (byte N at physical address N), finding the kernel by scanning.")
    var raw = false

    func run() throws {
        try ReportPrinter(files: files, json: json).run { path in
            let report = raw ? DumpInspector.inspect(try KernelDump(rawMemory: MappedFile.open(path))) : try DumpInspector.inspect(MappedFile.open(path))
            return (report, report.text)
        }
    }
}

/// The per-file loop `analyze` and `inspect` share: one report per file as text or as a JSON
/// document `{"file", "report"}`; a file that fails gives one line (or `{"file", "error"}`)
/// and, once every file is done, exit status 1.
struct ReportPrinter {
    var files: [String]
    var json: Bool

    struct Document<Report: Encodable>: Encodable {
        var file: String
        var report: Report
    }

    struct Failure: Encodable {
        var file: String
        var error: String
    }

    func run<Report: Encodable>(_ report: (String) throws -> (Report, String)) throws {
        var failed = false
        for (index, path) in files.enumerated() {
            do {
                let (value, text) = try report(path)
                if json {
                    print(try JSONOutput.encode(Document(file: path, report: value)))
                } else {
                    if index > 0 { print() }
                    if files.count > 1 { print("== \(path)") }
                    print(text)
                }
            } catch {
                failed = true
                if json {
                    print(try JSONOutput.encode(Failure(file: path, error: "\(error)")))
                } else {
                    FileHandle.standardError.write(Data("dumpfleet: \(path): \(error)\n".utf8))
                }
            }
        }
        if failed { throw ExitCode(1) }
    }
}

enum JSONOutput {
    static func encode(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
