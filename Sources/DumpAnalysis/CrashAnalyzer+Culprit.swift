import DumpFormat
import DumpMemory

/// Who is to blame, and the bucket that names it.
extension CrashAnalyzer {
    struct CulpritDecision {
        var kind: CrashReport.Culprit.Kind
        var name: String
        var reason: String
        var module: LoadedModule?
        var frame: StackFrame?
        /// What the bucket and signature call it: `nvlddmkm+0x1091`, `nt!KiInsertTimerTable`, ...
        var key: String

        var report: CrashReport.Culprit { .init(kind: kind, name: name, reason: reason) }
    }

    /// The first frame from the faulting one on that the triage rules do not skip; for hangs,
    /// the CPU running third-party code while others wait; when only OS frames remain,
    /// corruption evidence attributed to a third party; else the faulting OS frame.
    ///
    /// Frames are trusted as far as they were found: one unwound (or from a context or trap
    /// frame) is blamed before corruption evidence, and evidence before one found by scanning
    /// the stack, which may be a stale value of an earlier call.
    func findCulprit(stack: [StackFrame], faultingFrame: Int?, knowledge: BugCheckKnowledge, cpus: [CrashReport.CPU],
                     evidence: [Evidence], modules: [LoadedModule]) -> CulpritDecision {
        func module(of frame: StackFrame) -> LoadedModule? { modules.first { $0.contains(frame.rip) } }
        func decision(_ frame: StackFrame, _ reason: String) -> CulpritDecision {
            guard let name = frame.module else {
                // Code outside every loaded module (an unloaded driver, pool): no stable name.
                return CulpritDecision(kind: .unknown, name: "unknown module", reason: reason + "; the address is in no loaded module",
                                       module: nil, frame: frame, key: "UNKNOWN_MODULE")
            }
            return CulpritDecision(kind: rules.skips(module: name, function: frame.function) ? .operatingSystem : .module,
                                   name: name, reason: reason, module: module(of: frame), frame: frame, key: Self.frameKey(frame))
        }
        // A hang: the CPU that holds what the others wait for, else the first running blamed code.
        let holders = Set(cpus.compactMap(\.spinLockHolder))
        let running = cpus.filter { $0.activity.hasPrefix("running") }
        if knowledge.externallyTriggered, let busy = running.first(where: { holders.contains($0.number) }) ?? running.first,
           let frame = busy.stack.first(where: { rules.blames($0) && $0.trust != .scan }) {
            let waiting = cpus.filter { $0.activity.hasPrefix("waiting for spin lock") }
            let held = !waiting.isEmpty && waiting.allSatisfy { $0.spinLockHolder == busy.number }
            let others = waiting.isEmpty ? "" : "; CPU\(waiting.count == 1 ? "" : "s") \(waiting.map { String($0.number) }.joined(separator: ", ")) wait\(waiting.count == 1 ? "s" : "") for a spin lock"
                + (held ? " that it seems to hold" : "")
            return decision(frame, "the dump was forced from outside (a hang): CPU \(busy.number) runs \(frame.module!) code\(others)")
        }
        let start = min(faultingFrame ?? 0, stack.count)
        if let frame = stack[start...].first(where: { rules.blames($0) && $0.trust != .scan }) {
            return decision(frame, "the first frame from the fault outward that is not the operating system's")
        }
        let scanned = stack[start...].first(where: rules.blames)
        let corruption = evidence.filter { $0.onStack != true }
        if let blamed = corruption.compactMap(\.attributedTo).first(where: \.thirdParty) {
            let item = corruption.first { $0.attributedTo == blamed }!
            return CulpritDecision(kind: blamed.kind == .module ? .module : .process, name: blamed.name,
                                   reason: "only operating-system frames are on the stack; \(item.location) held \"\(item.text.first ?? "")\" instead of pointers",
                                   module: modules.first { $0.name.lowercased() == blamed.name.lowercased() }, frame: nil, key: "CORRUPTION_\(blamed.name)")
        }
        if let frame = scanned {
            return decision(frame, "the first frame from the fault outward that is not the operating system's, found by scanning the stack (no unwind data reached it)")
        }
        if stack.indices.contains(start) {
            return decision(stack[start], "only operating-system frames are on the stack; the faulting one is named")
        }
        return CulpritDecision(kind: .unknown, name: "unknown", reason: "no stack could be walked", module: nil, frame: nil, key: "UNKNOWN")
    }

    /// A frame as buckets name it: module and RVA of the instruction. Function names would read
    /// better, but a minidump holds no export directory, and a full dump and a minidump of the
    /// same crash must share their bucket; the RVA is the same in both, and under any ASLR.
    static func frameKey(_ frame: StackFrame) -> String {
        frame.moduleOffsetKey ?? frame.symbol
    }

    /// The bug check's class: code plus what distinguishes its kinds (exception code,
    /// 0x139's failure type, an NMI).
    static func bugCheckClass(_ bugCheck: BugCheck, knowledge: BugCheckKnowledge) -> String {
        if knowledge.liveCapture != nil { return "LIVE" }  // a running system, however captured: buckets of their own kind
        let code = "0x" + String(bugCheck.code, radix: 16, uppercase: true)
        let p = bugCheck.parameters
        switch bugCheck.code {
        case 0x1E, 0x3B, 0x7E, 0x8E: return "\(code)_\(String(p[0] & 0xFFFF_FFFF, radix: 16))"
        case 0x139, 0x1A, 0x9F: return "\(code)_\(String(p[0], radix: 16))"
        case 0x80: return "\(code)_NMI"
        case 0x124: return p[0] == 3 ? "\(code)_NMI" : "\(code)_\(String(p[0], radix: 16))"
        default: return code
        }
    }

    static func bucket(class bugCheckClass: String, culprit: CulpritDecision) -> String {
        "\(bugCheckClass)_\(culprit.key)"
    }
}
