import DumpFormat

/// The engineer's closing summary: what to do about this crash.
extension CrashAnalyzer {
    /// A third-party image built this long before the crash counts as old.
    static let oldImageSeconds: Int64 = 365 * 86_400

    /// An image's age counts only where its TimeDateStamp is a link time: a build hash read as
    /// a date would make a new driver "old" (or an old one new).
    static func advice(culprit: CulpritDecision, module: LoadedModule?, timestamp: ImageTimestamp?, header: DumpHeader64, knowledge: BugCheckKnowledge,
                       verdict: String, missingPages: UInt64, evidence: [Evidence], hasStack: Bool) -> [String] {
        var advice: [String] = []
        if culprit.kind == .module, let module {
            var line = "\(module.name) is a third-party driver on the faulting path: update it"
            let linkTime = timestamp.flatMap { $0.meaning == .linkTime || $0.meaning == .unverifiedLinkTime ? $0 : nil }
            if let linkTime, let built = linkTime.date?.prefix(10), let crash = FileTime.unixSeconds(header.systemTime) {
                let age = crash - Int64(module.timeDateStamp)
                let years = "\(age / 86_400 / 365) year\(age / 86_400 / 365 == 1 ? "" : "s") before the crash"
                if age <= oldImageSeconds {
                    line += " (built \(built)) or ask its vendor"
                } else if linkTime.meaning == .linkTime {
                    line = "update \(module.name), built \(built) (\(years)): an old third-party driver is the likeliest cause"
                } else {
                    line = "update \(module.name), built \(built) by its TimeDateStamp (\(years), if that is a link time: the image's headers are not in the dump to rule out a build hash)"
                }
            } else if timestamp?.meaning == .buildHash {
                line += " or ask its vendor (its TimeDateStamp is a build hash, so its age is unknown)"
            }
            advice.append(line)
        }
        let corruption = evidence.filter { $0.onStack != true }  // a stack buffer's text overwrote nothing
        if let attributed = corruption.compactMap(\.attributedTo).first(where: \.thirdParty) {
            let text = corruption.first { $0.attributedTo == attributed }?.text.first ?? attributed.name
            if attributed.kind == .module {
                advice.append("kernel memory was overwritten with \"\(text)\": \(attributed.name) is the likely writer; update it or ask its vendor")
            } else {
                advice.append("kernel memory was overwritten with \"\(text)\", the path of the user-mode program \(attributed.name): the kernel component that serves it (its driver or filter) wrote there; ask \(attributed.name)'s vendor, and check whether the crash recurs on machines without it")
            }
        }
        if knowledge.liveCapture != nil {
            advice.append("the dump was taken from the running system, not by a crash: treat it as a hang and read what every CPU and blocked thread was doing")
        } else if knowledge.externallyTriggered {
            advice.append("the dump was forced from outside (an NMI such as `virsh inject-nmi` on a hung VM, a power-button hold or a manual crash): treat it as a hang and read what every CPU was doing")
        }
        if verdict == "minidump" {
            advice.append("this is a kernel minidump: configure a complete (or kernel) memory dump for more detail (Startup and Recovery, CrashDumpEnabled)")
        }
        if missingPages > 0 || verdict == "truncated" {
            advice.append("the dump is truncated (\(missingPages) pages missing): the page file or dedicated dump file is too small for the dump; enlarge it")
        }
        if !hasStack {
            advice.append("no stack could be walked; the conclusions rest on the bug-check parameters")
        }
        return advice
    }
}
