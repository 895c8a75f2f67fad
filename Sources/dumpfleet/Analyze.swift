import ArgumentParser
import DumpAnalysis
import DumpFile
import DumpMemory
import Foundation

/// `dumpfleet analyze`: the `!analyze -v` of DumpFleet, offline.
struct Analyze: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Analyze crash dumps: faulting stack, culprit, corruption evidence, advice and signature.",
        discussion: """
        Works offline: structure offsets come from the dump's KDDEBUGGER_DATA64 and built-in \
        per-build tables, function boundaries and unwinding from the .pdata of the images in \
        the dump; --symbols adds a site's PDBs or ISF tables where it has them. The culprit is the first frame from the fault outward that the triage rules \
        do not skip (see deploy/triage.rules; --rules uses your own copy). Exits 1 when a file \
        cannot be opened as a dump at all; damaged dumps give partial reports with notes.
        """
    )

    @Argument(help: "Dump files (MEMORY.DMP, Mini*.dmp, ...).")
    var files: [String]

    @Flag(help: "Print one JSON document per file (schema: Sources/DumpAnalysis/DumpAnalysis.docc/AnalyzeJSON.md).")
    var json = false

    @Option(help: "Triage rules file (default: the shipped rules, as in deploy/triage.rules).")
    var rules: String?

    @Option(help: "Threads for walking the CPUs' and threads' stacks, at most one per core (1: none but this one).")
    var jobs: Int = 2

    @OptionGroup var symbols: SymbolOptions

    @Flag(help: "Read each file as a raw image of physical memory (byte N at physical address N), finding the kernel by scanning.")
    var raw = false

    func validate() throws {
        guard (1...64).contains(jobs) else { throw ValidationError("--jobs must be 1 to 64") }
    }

    func run() throws {
        var analyzer = CrashAnalyzer(parallelism: jobs, symbols: try symbols.source())
        if let rules {
            analyzer.rules = try TriageRules(text: String(contentsOfFile: rules, encoding: .utf8))
        }
        try ReportPrinter(files: files, json: json).run { path in
            let source = try MappedFile.open(path)
            let report = analyzer.analyze(try raw ? KernelDump(rawMemory: source) : KernelDump(source: source))
            return (report, report.text)
        }
    }
}
