import DumpFormat
import DumpMemory

/// Builds an `InspectionReport` from a file's bytes.
public enum DumpInspector {
    /// Inspects any Windows kernel dump. Throws only when the bytes are not a dump at all or the
    /// structures needed to describe it are unreadable; lesser damage becomes notes.
    public static func inspect(_ source: ByteSource) throws -> InspectionReport {
        if source.count >= 8, try source.u32(at: 4) == 0x504D_5544 {  // "PAGEDUMP": 32-bit
            return try inspect32(source)
        }
        let dump = try KernelDump(source: source)
        let header = dump.header
        var notes = dump.notes
        var details: [String] = []
        var verdict = "complete"

        var physical: InspectionReport.PhysicalMemorySummary?
        if let memory = dump.physical {
            let runs = memory.runs
            physical = .init(index: header.dumpType == .full || header.dumpType.rawValue >= 8 ? "runs" : "bitmap",
                             storedPages: memory.storedPages, missingPages: memory.missingPages,
                             runs: runs.prefix(64).map { .init(basePage: hexText($0.basePage), pageCount: $0.pageCount) })
            if runs.count > 64 { notes.append("\(runs.count) page runs; the first 64 are listed") }
            if header.dumpType == .bitmapKernel || header.dumpType == .summary || header.dumpType == .rangeKernel {
                verdict = "kernel memory only"
                details.append("user-mode pages and free memory are not in this dump")
            }
            if memory.missingPages > 0 {
                verdict = "truncated"
                details.append("\(memory.missingPages) of \(memory.storedPages) pages are missing: the file ends before them (page file or dedicated dump file too small, or the copy was cut short)")
            }
        }

        var minidump: InspectionReport.MinidumpSummary?
        if let triage = dump.triage {
            verdict = "minidump"
            details.append("a kernel minidump holds only the crashing thread's stack and a few captured blocks; configure a complete or kernel memory dump for more detail")
            minidump = summarize(triage, source: source, notes: &notes)
            if !triage.hasEndMarker {
                verdict = "truncated"
                details.append("the minidump's end marker is missing")
            }
        }
        if header.dumpType == .headerOnly {
            verdict = "header only"
            details.append("the dump holds the header and no memory")
        }
        if let reason = dump.virtualMemoryUnavailable, header.dumpType != .headerOnly { details.append(reason) }

        let bugCheck = BugCheck(rawCode: header.bugCheckCode, parameters: header.bugCheckParameters)
        return InspectionReport(
            fileSize: source.count, signature: "PAGEDU64", dumpType: header.dumpType.rawValue, dumpTypeName: header.dumpType.description,
            machine: header.machine.description, majorVersion: header.majorVersion, buildNumber: header.buildNumber,
            processors: header.numberProcessors,
            bugCheck: .init(code: bugCheckText(bugCheck.rawCode), name: bugCheck.name, parameters: bugCheck.parameters.map(hexText)),
            systemTime: FileTime.text(header.systemTime), systemUpTime: FileTime.durationText(header.systemUpTime),
            directoryTableBase: hexText(header.directoryTableBase), comment: header.comment,
            physicalMemory: physical, minidump: minidump, debuggerData: summarize(dump.debuggerData),
            completeness: .init(verdict: verdict, details: details), notes: notes)
    }

    static func summarize(_ triage: TriageDump, source: ByteSource, notes: inout [String]) -> InspectionReport.MinidumpSummary {
        var drivers: [InspectionReport.Driver] = []
        do {
            drivers = try triage.drivers(in: source).map { driver in
                .init(name: driver.name, path: driver.path, base: hexText(driver.base), size: driver.size, timeDateStamp: driver.timeDateStamp,
                      timestamp: driver.timeDateStamp == 0 ? nil : FileTime.iso8601(unixSeconds: Int64(driver.timeDateStamp)), checkSum: hexText(driver.checkSum))
            }
            let unnamed = drivers.filter { $0.path == nil }.count
            if unnamed > 0 { notes.append("\(unnamed) driver name(s) could not be read from the string pool") }
        } catch {
            notes.append("the driver list is unreadable: \(error)")
        }
        var unloaded: [InspectionReport.UnloadedDriver] = []
        do {
            unloaded = try triage.unloadedDrivers(in: source).map { .init(name: $0.name, start: hexText($0.startAddress), end: hexText($0.endAddress)) }
        } catch {
            notes.append("the unloaded driver list is unreadable: \(error)")
        }
        let captured = (try? triage.dataBlocks(in: source))?.reduce(0 as UInt64) { $0 + UInt64($1.size) } ?? 0
        return .init(driverCount: triage.driverCount, dataBlockCount: triage.dataBlocksCount, capturedBytes: captured,
                     stackBytes: triage.sizeOfCallStack, topOfStack: hexText(triage.topOfStack), endMarker: triage.hasEndMarker,
                     drivers: drivers, unloadedDrivers: unloaded)
    }

    static func summarize(_ lookup: DebuggerDataLookup) -> InspectionReport.DebuggerDataSummary {
        switch lookup {
        case .found(let data, let source):
            return .init(status: "clear", detail: "read from \(source)", size: hexText(data.size), kernBase: data.kernBase.map(hexText),
                         psLoadedModuleList: data.psLoadedModuleList.map(hexText), psActiveProcessHead: data.psActiveProcessHead.map(hexText),
                         kiProcessorBlock: data.kiProcessorBlock.map(hexText), pteBase: data.pteBase.map(hexText))
        case .encoded(let address, let tag, let size):
            return .init(status: "encoded",
                         detail: "the block at \(hexText(address)) has OwnerTag \(hexText(tag)) and Size \(hexText(size)), not \"KDBG\": it is still encoded (the dump was likely written by a hypervisor or converter from live memory); continuing with the header's pointers")
        case .unreadable(let reason):
            return .init(status: "unreadable", detail: reason)
        }
    }

    static func inspect32(_ source: ByteSource) throws -> InspectionReport {
        let header = try DumpHeader32(parsing: source)
        let bugCheck = BugCheck(rawCode: header.bugCheckCode, parameters: header.bugCheckParameters)
        return InspectionReport(
            fileSize: source.count, signature: "PAGEDUMP", dumpType: header.dumpType.rawValue, dumpTypeName: header.dumpType.description,
            machine: header.machine.description, majorVersion: header.majorVersion, buildNumber: header.buildNumber,
            processors: header.numberProcessors,
            bugCheck: .init(code: bugCheckText(bugCheck.rawCode), name: bugCheck.name, parameters: bugCheck.parameters.map(hexText)),
            systemTime: FileTime.text(header.systemTime), systemUpTime: FileTime.durationText(header.systemUpTime),
            directoryTableBase: hexText(header.directoryTableBase), comment: header.comment,
            physicalMemory: nil, minidump: nil, debuggerData: nil,
            completeness: .init(verdict: "not analysed", details: ["a 32-bit (x86) dump: the header is read, the memory is not (x64 is the analysis target)"]),
            notes: [])
    }
}
