/// The report as text, shaped like WinDbg's `!analyze -v` so support engineers find things
/// where they look for them.
extension CrashReport {
    public var text: String {
        var lines: [String] = []
        func field(_ name: String, _ value: String?) { if let value { lines.append("\(name): \(value)") } }
        lines.append("*******************************************************************************")
        lines.append("*                        Bugcheck Analysis (DumpFleet)                        *")
        lines.append("*******************************************************************************")
        lines.append("")
        lines.append("\(bugCheckName ?? "UNKNOWN_BUGCHECK") (\(bugCheckCode.replacingZeros))")
        lines.append("Arguments:")
        for (index, parameter) in parameters.enumerated() {
            lines.append("Arg\(index + 1): \(parameter.value.padded(18))\(parameter.meaning)")
        }
        lines.append("")
        field("DUMP_TYPE", "\(dumpType), \(machine), build \(buildNumber), \(processors) processor\(processors == 1 ? "" : "s") (\(completeness))")
        field("SYSTEM_TIME", systemTime)
        field("CAPTURE", capture)
        field("BUGCHECK_CODE", bugCheckCode)
        for (index, parameter) in parameters.enumerated() { field("BUGCHECK_P\(index + 1)", parameter.value) }
        field("PROCESS_NAME", processName)
        field("FAULTING_IP", faultingIP)
        lines.append("")
        if !stack.isEmpty {
            lines.append("STACK_TEXT:")
            for (index, frame) in stack.enumerated() {
                let marker = index == faultingFrame ? " <- fault" : ""
                lines.append("\(String(format2(index))) \(hex16(frame.rsp)) \(hex16(frame.rip)) \(frame.symbol)  [\(frame.trust.rawValue)]\(marker)")
            }
            lines.append("")
        }
        if !evidence.isEmpty {
            lines.append("EVIDENCE:")
            for item in evidence {
                lines.append("  \(item.location): value \(hex16(item.value)) at \(hex16(item.address))")
                for text in item.text.prefix(3) { lines.append("    text: \"\(text)\"") }
                if let who = item.attributedTo { lines.append("    matches \(who.kind.rawValue) \(who.name)\(who.thirdParty ? " (third party)" : "")") }
            }
            lines.append("")
        }
        if cpus.count > 1 {
            lines.append("CPUS:")
            for cpu in cpus {
                lines.append("  CPU \(cpu.number): \(cpu.activity)\(cpu.process.map { " [\($0)]" } ?? "")")
                for frame in cpu.stack.prefix(4) { lines.append("      \(frame.symbol)") }
            }
            lines.append("")
        }
        if !threads.isEmpty {
            lines.append("THREADS IN THIRD-PARTY CODE:")
            for thread in threads.prefix(16) {
                lines.append("  \(thread.address) \(thread.process ?? "?")\(thread.threadId.map { " tid \(hexText($0))" } ?? ""): \(thread.stack.prefix(4).joined(separator: " <- "))")
            }
            if threads.count > 16 { lines.append("  ... \(counted(threads.count - 16, "more thread")) (see --json)") }
            lines.append("")
        }
        field("FOLLOWUP_IP", followupFrame)
        field("MODULE_NAME", moduleName)
        field("IMAGE_NAME", imageName)
        field("IMAGE_TIMESTAMP", imageTimestamp.map { stamp in stamp.date.map { "\($0) (\(stamp.meaning.rawValue))" } ?? "\(stamp.meaning.rawValue): \(stamp.reason)" })
        lines.append("CULPRIT: \(culprit.name) (\(culprit.kind.rawValue)): \(culprit.reason)")
        field("FAILURE_BUCKET_ID", failureBucketId)
        field("SIGNATURE", signature.id)
        lines.append("")
        if !advice.isEmpty {
            lines.append("ADVICE:")
            for line in advice { lines.append("  - \(line)") }
            lines.append("")
        }
        if let basis, !basis.isEmpty {
            lines.append("BASIS:")
            for item in basis {
                lines.append("  \(item.conclusion):")
                for memory in item.memory { lines.append("    \(memory)") }
            }
        }
        field("OFFSETS", layoutSource)
        if let symbolFiles {
            lines.append("SYMBOLS: " + (symbolFiles.isEmpty ? "none of the stacks' modules has a file in the symbol folders" : symbolFiles.joined(separator: "; ")))
        }
        for note in notes { lines.append("NOTE: \(note)") }
        return lines.joined(separator: "\n")
    }
}

func hex16(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    let padded = String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    return padded.prefix(8) + "`" + padded.suffix(8)
}

func format2(_ index: Int) -> String { index < 10 ? "0\(index)" : "\(index)" }

extension String {
    /// 0x0000001E -> 0x1E, as WinDbg titles the bug check.
    var replacingZeros: String {
        guard hasPrefix("0x") else { return self }
        let digits = dropFirst(2).drop { $0 == "0" }
        return "0x" + (digits.isEmpty ? "0" : String(digits))
    }

    func padded(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
