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
        return inspect(try KernelDump(source: source))
    }

    /// Inspects an opened 64-bit dump.
    public static func inspect(_ dump: KernelDump) -> InspectionReport {
        let source = dump.source
        let header = dump.header
        var notes = dump.notes
        var details: [String] = []
        var verdict = "complete"

        var physical: InspectionReport.PhysicalMemorySummary?
        if let memory = dump.physical {
            let (runs, total) = memory.runs(limit: 64)
            physical = .init(index: memory.isBitmap ? "bitmap" : "runs",
                             storedPages: memory.storedPages, missingPages: memory.missingPages,
                             runs: runs.map { .init(basePage: hexText($0.basePage), pageCount: $0.pageCount) })
            if total > runs.count { notes.append("\(total) page runs; the first \(runs.count) are listed") }
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
            minidump = summarize(triage, source: source, captured: dump.triageMemory?.capturedBytes ?? 0,
                                 crashTime: FileTime.unixSeconds(header.systemTime), notes: &notes)
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

        if let capture = dump.capture {
            verdict = "hypervisor capture"
            details.append("\(capture.container): the guest's memory and vCPU registers, read by its hypervisor; no bug check. "
                           + "Page tables from \(capture.directoryTableBaseSource)"
                           + (capture.kernelBase.map { "; the kernel image at \(hexText($0)) (found through the IDT)" } ?? "; the kernel image was not found"))
        }
        var report = headerFacts(
            fileSize: source.count, signature: dump.capture?.signature ?? "PAGEDU64", dumpType: header.dumpType, machine: header.machine, majorVersion: header.majorVersion,
            buildNumber: header.buildNumber, processors: header.numberProcessors,
            bugCheck: BugCheck(rawCode: header.bugCheckCode, parameters: header.bugCheckParameters),
            systemTime: header.systemTime, systemUpTime: header.systemUpTime, directoryTableBase: header.directoryTableBase, comment: header.comment)
        if let capture = dump.capture {
            report.dumpTypeName = capture.container
            report.bugCheck.name = "none: the hypervisor read the running guest"
        }
        report.physicalMemory = physical
        report.minidump = minidump
        report.debuggerData = summarize(dump.debuggerData)
        report.completeness = .init(verdict: verdict, details: details)
        report.notes = notes
        return report
    }

    /// The facts every header has, 32- or 64-bit.
    static func headerFacts(fileSize: UInt64, signature: String, dumpType: DumpType, machine: Machine, majorVersion: UInt32, buildNumber: UInt32,
                            processors: UInt32, bugCheck: BugCheck, systemTime: UInt64, systemUpTime: UInt64, directoryTableBase: UInt64,
                            comment: String?) -> InspectionReport {
        InspectionReport(
            fileSize: fileSize, signature: signature, dumpType: dumpType.rawValue, dumpTypeName: dumpType.description,
            machine: machine.description, majorVersion: majorVersion, buildNumber: buildNumber, processors: processors,
            bugCheck: .init(code: bugCheckText(bugCheck.rawCode), name: bugCheck.name, parameters: bugCheck.parameters.map(hexText)),
            systemTime: FileTime.text(systemTime), systemUpTime: FileTime.durationText(systemUpTime),
            directoryTableBase: hexText(directoryTableBase), comment: comment,
            physicalMemory: nil, minidump: nil, debuggerData: nil, completeness: .init(verdict: "complete", details: []), notes: [])
    }

    /// Minidumps hold no image headers, so a driver's plausible TimeDateStamp stays an unverified
    /// date (`ImageTimestamp`).
    static func summarize(_ triage: TriageDump, source: ByteSource, captured: UInt64, crashTime: Int64?, notes: inout [String]) -> InspectionReport.MinidumpSummary {
        var drivers: [InspectionReport.Driver] = []
        do {
            drivers = try triage.drivers(in: source).map { driver in
                .init(name: driver.name, path: driver.path, base: hexText(driver.base), size: driver.size, timeDateStamp: driver.timeDateStamp,
                      timestamp: ImageTimestamp(driver.timeDateStamp, reproducible: nil, crashTime: crashTime), checkSum: hexText(driver.checkSum))
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
        return .init(driverCount: triage.driverCount, dataBlockCount: triage.dataBlocksCount, capturedBytes: captured,
                     stackBytes: triage.sizeOfCallStack, topOfStack: hexText(triage.topOfStack), endMarker: triage.hasEndMarker,
                     drivers: drivers, unloadedDrivers: unloaded)
    }

    static func summarize(_ lookup: DebuggerDataLookup) -> InspectionReport.DebuggerDataSummary {
        switch lookup {
        case .found(let data, let source):
            return .init(status: lookup.status, detail: "read from \(source)", size: hexText(data.size), kernBase: data.kernBase.map(hexText),
                         psLoadedModuleList: data.psLoadedModuleList.map(hexText), psActiveProcessHead: data.psActiveProcessHead.map(hexText),
                         kiProcessorBlock: data.kiProcessorBlock.map(hexText), pteBase: data.pteBase.map(hexText))
        case .encoded(let address, let tag, let size):
            return .init(status: lookup.status,
                         detail: "the block at \(hexText(address)) has OwnerTag \(hexText(tag)) and Size \(hexText(size)), not \"KDBG\": it is still encoded (the dump was likely written by a hypervisor or converter from live memory); continuing with the header's pointers")
        case .unreadable(let reason):
            return .init(status: lookup.status, detail: reason)
        }
    }

    static func inspect32(_ source: ByteSource) throws -> InspectionReport {
        let header = try DumpHeader32(parsing: source)
        var report = headerFacts(
            fileSize: source.count, signature: "PAGEDUMP", dumpType: header.dumpType, machine: header.machine, majorVersion: header.majorVersion,
            buildNumber: header.buildNumber, processors: header.numberProcessors,
            bugCheck: BugCheck(rawCode: header.bugCheckCode, parameters: header.bugCheckParameters),
            systemTime: header.systemTime, systemUpTime: header.systemUpTime, directoryTableBase: UInt64(header.directoryTableBase), comment: header.comment)
        report.completeness = .init(verdict: "not analysed", details: ["a 32-bit (x86) dump: the header is read, the memory is not (x64 is the analysis target)"])
        return report
    }
}
