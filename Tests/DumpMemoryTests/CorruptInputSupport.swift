// Helpers for CorruptInputTests: opening and exercising possibly corrupt dumps, the forged
// fixtures, byte patching and hand-built files.
import Testing
@testable import DumpMemory
import DumpFormat
import DumpForge
import TestSupport

// MARK: - Exercising a dump

/// What opening and reading a (possibly corrupt) dump gave; plain values, so nothing outlives
/// the bytes it was read from.
struct Outcome {
    /// What `KernelDump(source:)` threw, if it did.
    var failure: (any Error)?
    /// The dump's notes (a minidump's captured-memory notes included).
    var notes: [String] = []
    var storedPages: UInt64?
    var missingPages: UInt64?
    /// Where the first stored page is, by the index.
    var firstRunLocation: PageLocation?
    /// "found", "encoded", "unreadable", or "none" when the dump did not open.
    var debuggerData = "none"
    var virtualMemoryUnavailable: String?
    /// How many of the header's PsLoadedModuleList, KdDebuggerDataBlock and PsActiveProcessHead read back.
    var readablePointers = 0

    var opened: Bool { failure == nil }
    var dumpError: DumpError? { failure as? DumpError }
    var failureText: String { failure.map { "\($0)" } ?? "opened" }
    func noted(_ text: String) -> Bool { notes.contains { $0.contains(text) } }
}

/// Opens a copy of `bytes` and runs every accessor.
func exercise(_ bytes: [UInt8], _ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) -> Outcome {
    exercise(ByteSource(copying: bytes), context, sourceLocation: sourceLocation)
}

/// Opens `source` and runs every accessor; any error must be a DumpError or MemoryError that
/// says something. Nothing here may trap.
func exercise(_ source: ByteSource, _ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) -> Outcome {
    func attempt(_ body: () throws -> Void) {
        do { try body() } catch { expectClear(error, context, sourceLocation) }
    }
    let dump: KernelDump
    do {
        dump = try KernelDump(source: source)
    } catch {
        expectClear(error, context, sourceLocation)
        return Outcome(failure: error)
    }
    var outcome = Outcome(notes: dump.notes, virtualMemoryUnavailable: dump.virtualMemoryUnavailable)
    let header = dump.header
    _ = (BugCheck(rawCode: header.bugCheckCode, parameters: header.bugCheckParameters).name,
         FileTime.text(header.systemTime), FileTime.durationText(header.systemUpTime), header.comment)

    switch dump.debuggerData {
    case .found(let data, _):
        outcome.debuggerData = "found"
        _ = (data.kernBase, data.psLoadedModuleList, data.kiProcessorBlock, data.pteBase, data.pagingLevels, data.sizeEThread)
    case .encoded:
        outcome.debuggerData = "encoded"
    case .unreadable(let reason):
        outcome.debuggerData = "unreadable"
        #expect(!reason.isEmpty, "an unreadable KDBG should say why \(context)", sourceLocation: sourceLocation)
    }

    let pointers = [header.psLoadedModuleList, header.kdDebuggerDataBlock, header.psActiveProcessHead]
    attempt {
        let space = try dump.kernelAddressSpace()
        for va in pointers {
            attempt {
                _ = try space.u64(va)
                outcome.readablePointers += 1
            }
            attempt { _ = try space.read(va, count: 0x30) }
            attempt { _ = try space.u32(va &+ 0xFFE) }  // crosses a page when va is page-aligned
            attempt { _ = try space.unicodeString(va) }
        }
        if let captured = space as? TriageMemory { _ = captured.capturedBytes }
    }

    if let physical = dump.physical {
        outcome.storedPages = physical.storedPages
        outcome.missingPages = physical.missingPages
        let runs = physical.runs(limit: 16).runs
        if let first = runs.first { outcome.firstRunLocation = physical.locate(pfn: first.basePage) }
        for pfn: UInt64 in [0, 1, 5, 0x9E, 0x100, 0x7FFF, 0x8000, header.kernelDirectoryTableBase >> 12, UInt64.max >> 12, .max] {
            _ = physical.locate(pfn: pfn)
        }
        _ = physical.u64(physical: header.kernelDirectoryTableBase)
        attempt { _ = try physical.read(physical: 0x1000, count: 0x2000) }
        attempt {
            let space = try dump.addressSpace(directoryTableBase: header.directoryTableBase)
            _ = space.translate(header.psActiveProcessHead)
        }
    }

    if let triage = dump.triage {
        attempt { for driver in try triage.drivers(in: source) { _ = driver.name } }
        attempt { _ = try triage.unloadedDrivers(in: source) }
        _ = triage.dataBlocks(in: source)
    }
    return outcome
}

/// An error from corrupt input must be one of the two library error types and carry a message.
func expectClear(_ error: any Error, _ context: String, _ sourceLocation: SourceLocation) {
    switch error {
    case let error as DumpError:
        #expect(!error.message.isEmpty, "a DumpError without a message \(context)", sourceLocation: sourceLocation)
    case let error as MemoryError:
        #expect(!error.description.isEmpty, "a MemoryError without a description \(context)", sourceLocation: sourceLocation)
    default:
        Issue.record("\(type(of: error)) is neither a DumpError nor a MemoryError: \(error) \(context)", sourceLocation: sourceLocation)
    }
}

/// Exercises each prefix of `bytes` in `cuts` (shorter than the file) without copying it: the
/// sources borrow the array's storage for the duration of the call.
func exerciseTruncations(of bytes: [UInt8], at cuts: [Int], _ name: String, sourceLocation: SourceLocation = #_sourceLocation,
                                 _ check: (Int, Outcome) -> Void) {
    bytes.withUnsafeBytes { whole in
        for cut in Set(cuts).sorted() where cut >= 0 && cut < whole.count {
            let source = ByteSource(unsafeBytes: UnsafeRawBufferPointer(rebasing: whole[0..<cut]), release: nil)
            check(cut, exercise(source, "\(name) cut at 0x\(hex(cut))", sourceLocation: sourceLocation))
        }
    }
}

// MARK: - Fixtures

/// The standard forged dumps, forged once per test process. Full and bitmap-full are ~128 MiB.
enum Forged {
    static let full = make(.full)
    static let bitmapFull = make(.bitmapFull)
    static let bitmapKernel = make(.bitmapKernel)
    static let triage = make(.triage)

    static func bytes(_ kind: DumpDescription.DumpKind) -> [UInt8] {
        switch kind {
        case .full: full
        case .bitmapFull: bitmapFull
        case .bitmapKernel: bitmapKernel
        case .triage: triage
        case .rangeKernel, .rangeKernelAndUser, .rangeComplete: Fixtures.standard(kind).0.contiguousBytes()
        }
    }

    private static func make(_ kind: DumpDescription.DumpKind) -> [UInt8] {
        Fixtures.standard(kind).0.contiguousBytes()
    }
}

/// One mutable copy of a forged dump: `open` applies an edit, exercises the result and undoes
/// the edit, so a 128 MiB fixture is copied once per test rather than once per case. Edits must
/// stay within the first 4 MiB (every structure; page data lies beyond), which is what is restored.
struct Patcher {
    private var bytes: [UInt8]
    private let pristine: ArraySlice<UInt8>

    init(_ kind: DumpDescription.DumpKind) {
        bytes = Forged.bytes(kind)
        pristine = bytes.prefix(0x40_0000)
    }

    mutating func open(_ context: String, sourceLocation: SourceLocation = #_sourceLocation, _ edit: (inout [UInt8]) -> Void) -> Outcome {
        edit(&bytes)
        let outcome = bytes.withUnsafeBytes { exercise(ByteSource(unsafeBytes: $0, release: nil), context, sourceLocation: sourceLocation) }
        bytes.replaceSubrange(0..<pristine.count, with: pristine)
        return outcome
    }
}

/// Little-endian field access on raw dump bytes, independent of the parser.
extension Array where Element == UInt8 {
    mutating func patch32(_ offset: Int, _ value: UInt32) {
        for index in 0..<4 { self[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    }

    mutating func patch64(_ offset: Int, _ value: UInt64) {
        for index in 0..<8 { self[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
    }

    func u32(_ offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(self[offset + $1]) << (8 * $1) }
    }

    func u64(_ offset: Int) -> UInt64 {
        (0..<8).reduce(0) { $0 | UInt64(self[offset + $1]) << (8 * $1) }
    }
}

// MARK: - Hand-built files

/// A DUMP_HEADER64 as Windows leaves it: "PAGE" in every field, then the signature, an x64
/// machine, a DTB at PFN 5, a kernel KdDebuggerDataBlock and `dumpType`; zeros after 0x2000.
func bareHeader(dumpType: UInt32, size: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: size)
    for offset in stride(from: 0, to: 0x2000, by: 4) { bytes.patch32(offset, 0x4547_4150) }  // "PAGE"
    bytes.patch32(4, 0x3436_5544)                 // "DU64"
    bytes.patch64(0x10, 0x5000)                   // DirectoryTableBase
    bytes.patch32(0x30, 0x8664)                   // MachineImageType: x64
    bytes.patch64(0x80, 0xFFFF_F800_0000_0000)    // KdDebuggerDataBlock
    bytes.patch32(0xF98, dumpType)
    return bytes
}

/// A 0x3000-byte range dump ("RDMP" at 0x2000, format notes §2.3) with `ranges` at 0x2030.
func rangeDump(type: UInt32 = 8, metadataSize: UInt64, firstPageOffset: UInt64, ranges: [(base: UInt64, count: UInt64)]) -> [UInt8] {
    var bytes = bareHeader(dumpType: type, size: 0x3000)
    bytes.patch32(0x2000, 0x40)          // Marker
    bytes.patch32(0x2004, 0x504D_4452)   // "RDMP"
    bytes.patch32(0x2008, 0x504D_5544)   // "DUMP"
    bytes.patch64(0x2010, metadataSize)
    bytes.patch64(0x2018, firstPageOffset)
    for (index, range) in ranges.enumerated() {
        bytes.patch64(0x2030 + 16 * index, range.base)
        bytes.patch64(0x2038 + 16 * index, range.count)
    }
    return bytes
}

/// Runs in an exit test, then in the test itself: a kernel bitmap dump whose 8-byte bitmap
/// holds 63 bits, none set.
func openBitmapWithBitCount63() throws -> KernelDump {
    var bytes = bareHeader(dumpType: 6, size: 0x3000)
    bytes.patch32(0x2000, 0x504D_4453)  // "SDMP"
    bytes.patch32(0x2004, 0x504D_5544)  // "DUMP"
    bytes.patch64(0x2020, 0x3000)       // FirstPage, after the bitmap
    bytes.patch64(0x2028, 0)            // TotalPresentPages
    bytes.patch64(0x2030, 63)           // bits: (63 + 7) / 8 = 8 bytes, one whole word of 64
    return try KernelDump(source: ByteSource(copying: bytes))
}

/// Runs in an exit test, then in the test itself: a full dump with one run, the last page of
/// the physical address space, which holds 0x5A bytes; returns that page as read.
func readLastPhysicalPage() throws -> [UInt8] {
    var bytes = bareHeader(dumpType: 1, size: 0x3000)
    bytes.patch32(0x88, 1)                     // NumberOfRuns
    bytes.patch32(0x8C, 0)
    bytes.patch64(0x90, 1)                     // NumberOfPages
    bytes.patch64(0x98, 0xF_FFFF_FFFF_FFFF)    // BasePage: physical 0xFFFF_FFFF_FFFF_F000
    bytes.patch64(0xA0, 1)                     // PageCount
    bytes.replaceSubrange(0x2000..<0x3000, with: [UInt8](repeating: 0x5A, count: 0x1000))
    let dump = try KernelDump(source: ByteSource(copying: bytes))
    guard let physical = dump.physical else { throw DumpError(.corrupt, "a full dump without physical memory") }
    return try physical.read(physical: 0xFFFF_FFFF_FFFF_F000, count: 0x1000)
}

/// Runs in an exit test, then in the test itself: captured memory ending at 2^64 - 1, and a
/// UNICODE_STRING 8 bytes below it, whose Buffer field would lie at 2^64.
func readStringAtTheTopOfTheAddressSpace() throws -> String {
    let memory = TriageMemory(source: ByteSource(copying: [UInt8](repeating: 0x41, count: 0x100)),
                              blocks: [.init(address: 0xFFFF_FFFF_FFFF_FF00, fileOffset: 0, size: 0xFF)])
    return try memory.unicodeString(0xFFFF_FFFF_FFFF_FFF8)
}
