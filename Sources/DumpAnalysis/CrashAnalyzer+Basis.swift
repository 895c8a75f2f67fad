import DumpFormat
import DumpMemory

/// Which conclusions of a report rest on which memory of the dump, as an engineer checking a
/// minidump asks: was the corrupted entry captured, or is the culprit a scan's guess?
extension CrashAnalyzer {
    /// `address` and where the dump holds it: in a minidump, the captured range around it (or
    /// that it was not captured); in a larger dump, whether its page is there.
    static func held(_ address: UInt64, in dump: KernelDump, space: (any KernelAddressSpace)?) -> String {
        if let triage = dump.triageMemory {
            guard let range = triage.capturedRange(containing: address) else { return "\(hexText(address)) (not captured by the minidump)" }
            return "\(hexText(address)) (captured: minidump bytes \(hexText(range.lowerBound))–\(hexText(range.upperBound)))"
        }
        guard let space, (try? space.read(address, count: 1)) != nil else { return "\(hexText(address)) (on a page the dump lacks)" }
        return "\(hexText(address)) (in the dump)"
    }

    static func how(_ trust: FrameTrust) -> String {
        switch trust {
        case .context: "the fault context's RIP"
        case .unwindInfo: "unwound with its callee's unwind data"
        case .trapFrame: "the RIP a trap frame saved"
        case .scan: "a return address a scan found (it may be stale)"
        }
    }

    func basis(dump: KernelDump, space: (any KernelAddressSpace)?, knowledge: BugCheckKnowledge, bugCheck: BugCheck, stack: [StackFrame],
               culprit: CulpritDecision, evidence: [Evidence], cpus: [CrashReport.CPU]) -> [CrashReport.Basis] {
        var basis: [CrashReport.Basis] = []
        switch knowledge.faultContext {
        case .contextRecord(let parameter):
            basis.append(.init(conclusion: "fault context", memory: ["the CONTEXT record at " + Self.held(bugCheck.parameters[parameter], in: dump, space: space)
                                                                      + " (bug-check parameter \(parameter + 1))"]))
        case .trapFrame(let parameter):
            basis.append(.init(conclusion: "fault context", memory: ["the KTRAP_FRAME at " + Self.held(bugCheck.parameters[parameter], in: dump, space: space)
                                                                      + " (bug-check parameter \(parameter + 1))"]))
        case .none:
            basis.append(.init(conclusion: "fault context", memory: ["the crashing CPU's CONTEXT in the dump header"]))
        }
        if let first = stack.first, let last = stack.last(where: { $0.rip >> 63 == 1 }) {
            let counts = Dictionary(grouping: stack.dropFirst(), by: \.trust).mapValues(\.count)
            let how = [(FrameTrust.unwindInfo, "by the images' unwind data"), (.trapFrame, "through trap frames"), (.scan, "by scanning the stack")]
                .compactMap { trust, words in counts[trust].map { "\($0) \(words)" } }.joined(separator: ", ")
            basis.append(.init(conclusion: "stack (\(stack.count) frames\(how.isEmpty ? "" : ": " + how))",
                               memory: ["the stack from " + Self.held(first.rsp, in: dump, space: space) + " to \(hexText(last.rsp))"]))
        }
        var culpritMemory: [String] = []
        if let frame = culprit.frame {
            culpritMemory.append("\(frame.symbol), \(Self.how(frame.trust)), with its frame at " + Self.held(frame.rsp, in: dump, space: space))
            if let busy = cpus.first(where: { $0.stack.contains(frame) }), knowledge.externallyTriggered {
                culpritMemory.append("CPU \(busy.number)'s context and stack")
            }
        } else if let item = evidence.first(where: { $0.attributedTo?.name == culprit.name }) {
            culpritMemory.append(item.address == 0 ? "\(item.location): the value itself" : "\(item.location); the entry at " + Self.held(item.address, in: dump, space: space))
        }
        basis.append(.init(conclusion: "culprit \(culprit.name)", memory: culpritMemory))
        for item in evidence where item.address != 0 {
            let what = item.onStack == true ? "the text at " : "the entry at "
            basis.append(.init(conclusion: "evidence \"\(item.text.first ?? hexText(item.value))\"", memory: ["\(item.location); \(what)" + Self.held(item.address, in: dump, space: space)]))
        }
        return basis
    }

    /// In a minidump, the kernel addresses the fault context's registers hold whose memory was
    /// not captured: what a full dump would let the analysis read there is missing. One note.
    static func uncapturedRegisterMemory(_ state: RegisterState, dump: KernelDump) -> String? {
        guard let triage = dump.triageMemory else { return nil }
        let missing = state.gpr.enumerated().filter { register, value in
            register != 4 && value >> 47 == 0x1_FFFF && triage.capturedRange(containing: value) == nil
        }
        guard !missing.isEmpty else { return nil }
        let named = missing.map { "\(Context64.registerNames[$0.offset].uppercased()) \(hexText($0.element))" }.joined(separator: ", ")
        return "the minidump did not capture the memory the fault context's registers point at (\(named)): what a full dump holds there, "
            + "a corrupted list entry for one, cannot be read"
    }
}
