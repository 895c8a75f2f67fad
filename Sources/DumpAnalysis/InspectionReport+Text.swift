/// The human-readable form of an inspection report.
extension InspectionReport {
    public var text: String {
        var lines: [String] = []
        func row(_ label: String, _ value: String) { lines.append(label.padding(28) + value) }
        let isDumpHeader = signature == "PAGEDU64" || signature == "PAGEDUMP"
        row("Dump type:", !isDumpHeader ? "\(dumpTypeName) (no DUMP_HEADER64: the facts below were found in the guest's memory)"
                                                  : "\(dumpTypeName) (DumpType \(dumpType), \(signature))")
        row("Machine:", "\(machine), \(processors) processor\(processors == 1 ? "" : "s")")
        row("Windows build:", "\(buildNumber)\(majorVersion == 0xC ? " (checked)" : "")")
        row("Bug check:", "\(bugCheck.code)\(bugCheck.name.map { " \($0)" } ?? "")")
        for (index, parameter) in bugCheck.parameters.enumerated() { row("  Parameter \(index + 1):", parameter) }
        row("System time:", systemTime ?? "(not set)")
        row("System uptime:", systemUpTime ?? "(not set)")
        row("Directory table base:", directoryTableBase)
        if let comment { row("Comment:", comment) }
        if let physicalMemory {
            row("Physical memory:", "\(physicalMemory.storedPages) pages stored (\(physicalMemory.storedPages / 256) MiB) in \(physicalMemory.index == "runs" ? "runs" : "a page bitmap")")
            if physicalMemory.missingPages > 0 { row("  Missing pages:", "\(physicalMemory.missingPages)") }
            for run in physicalMemory.runs.prefix(8) { row("  Run:", "PFN \(run.basePage), \(run.pageCount) pages") }
            if physicalMemory.runs.count > 8 { row("", "... \(counted(physicalMemory.runs.count - 8, "more run")) (see --json)") }
        }
        if let minidump {
            row("Minidump:", "\(minidump.driverCount) drivers, \(minidump.dataBlockCount) data blocks (\(minidump.capturedBytes) bytes), \(minidump.stackBytes) stack bytes from \(minidump.topOfStack)")
            for driver in minidump.drivers.prefix(5) {
                row("  Driver:", "\(driver.base) \(driver.name ?? "?") size \(hexText(driver.size)) \(driver.timestamp.text)")
            }
            if minidump.drivers.count > 5 { row("", "... \(counted(minidump.drivers.count - 5, "more driver")) (see --json)") }
            if !minidump.unloadedDrivers.isEmpty { row("  Unloaded:", minidump.unloadedDrivers.map(\.name).joined(separator: ", ")) }
        }
        if let debuggerData {
            row("KDDEBUGGER_DATA64:", "\(debuggerData.status): \(debuggerData.detail)")
            if let kernBase = debuggerData.kernBase { row("  Kernel base:", kernBase) }
            if let list = debuggerData.psLoadedModuleList { row("  PsLoadedModuleList:", list) }
            if let block = debuggerData.kiProcessorBlock { row("  KiProcessorBlock:", block) }
        }
        row("Completeness:", completeness.verdict)
        for detail in completeness.details { row("", detail) }
        for note in notes { row("Note:", note) }
        return lines.joined(separator: "\n")
    }
}

/// "1 more driver", "2 more drivers".
func counted(_ count: Int, _ noun: String) -> String { "\(count) \(noun)\(count == 1 ? "" : "s")" }

extension String {
    func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
