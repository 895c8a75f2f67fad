import DumpFormat
import DumpMemory

/// Corruption forensics over the lists the analysis walked and each CPU's timer table.
extension CrashAnalyzer {
    func forensics(dump: KernelDump, objects: KernelObjects, layout: KernelLayout?, space: any KernelAddressSpace) -> [Evidence] {
        var evidence: [Evidence] = []
        // A list that is merely longer than the walk allows is not corrupt; every other break is.
        for (list, broken) in objects.brokenLists where broken.reason != .tooLong {
            evidence.append(examine(broken, location: list, space: space))
        }
        // KPRCB.TimerTable.TimerEntries[i].Entry: per-CPU lists of KTIMER.TimerListEntry.
        if let layout, let table = layout.prcbTimerTable, layout.timerListCount > 0 {
            // A budget bounds the walk whatever a damaged dump claims (4096 CPUs x 512 lists x
            // 4096 entries would be billions of reads): every timer list of 64 CPUs is plenty.
            var budget = 200_000
            for processor in objects.processors.prefix(64) {
                for list in 0..<layout.timerListCount {
                    guard budget > 0 else { break }
                    let head = processor.kprcb &+ table &+ 0x200 &+ 0x20 * UInt64(list) &+ 8
                    let walk = ListWalker.walk(head: head, in: space, limit: min(4096, budget))
                    budget -= walk.entries.count + 1
                    if let broken = walk.broken, broken.reason != .tooLong {
                        evidence.append(examine(broken, location: "CPU \(processor.number) timer list \(list)", space: space))
                    }
                }
            }
        }
        return evidence
    }

    /// What the fault context's registers say, in a full dump or in a minidump (which captures
    /// the memory around the addresses a crash's context holds): a register pointing at a list
    /// entry whose Flink is text instead of an address is examined like a broken list, and a
    /// register whose own value is not an address is decoded as text. Only text counts, since
    /// the first field of most structures is no pointer.
    static func registerForensics(_ state: RegisterState, space: any KernelAddressSpace, known: [Evidence]) -> [Evidence] {
        var found: [Evidence] = []
        func text(_ value: UInt64) -> [String] { CorruptionForensics.text(in: (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) } + [0, 0]) }
        for (register, value) in state.gpr.enumerated() {
            let name = Context64.registerNames[register].uppercased()
            if value >> 47 == 0x1_FFFF, let flink = try? space.u64(value), !isCanonical(flink), !text(flink).isEmpty {
                guard !(known + found).contains(where: { $0.address == value }) else { continue }
                found.append(CorruptionForensics.examine(value: flink, at: value, location: "list entry \(hexText(value)) in \(name) of the fault context: its Flink \(hexText(flink)) is not an address",
                                                         space: space))
            } else if !isCanonical(value), !text(value).isEmpty {
                found.append(Evidence(location: "\(name) of the fault context", address: 0, value: value, text: text(value), attributedTo: nil))
            }
        }
        return found
    }

    /// Lists reached from the fault context's stack (its frame's locals and spills, the first
    /// 0x100 bytes above RSP): a slot holding a kernel address is walked as a list, as a full
    /// dump's lists are, and a link that holds the very value the fault tripped on (a fault
    /// register's non-address, or the referenced address) is corruption evidence, as a
    /// register's list entry is. Without that tie a pointer to text on a stack is only a string
    /// buffer, which stacks are full of.
    func stackListForensics(_ state: RegisterState, faultValues: Set<UInt64>, space: any KernelAddressSpace, known: [Evidence]) -> [Evidence] {
        guard !faultValues.isEmpty else { return [] }
        var found: [Evidence] = []
        let rsp = state.gpr[4]
        for slot in stride(from: rsp, to: rsp &+ 0x100, by: 8) where slot >= rsp {
            guard let value = try? space.u64(slot), value >> 47 == 0x1_FFFF,
                  let broken = ListWalker.walk(head: value, in: space, limit: 64).broken else { continue }
            let bad: UInt64?
            switch broken.reason {
            case .nonCanonical: bad = broken.flink
            case .backLinkMismatch: bad = try? space.u64(broken.flink &+ 8)
            default: bad = nil
            }
            guard let bad, faultValues.contains(bad) else { continue }
            let item = examine(broken, location: "a list through \(hexText(value)), which the faulting frame's stack holds at \(hexText(slot))", space: space)
            guard !(known + found).contains(where: { $0.address == item.address }) else { continue }
            found.append(item)
        }
        return found
    }

    /// Text in the faulting frame's stack: the `window` bytes from its RSP up, where its locals
    /// and its callers' lie, cut into runs of 8-byte slots that hold no address (a canonical
    /// value is a pointer or a small number), each decoded as UTF-16LE and ASCII. Only runs of
    /// eight characters or more count: shorter ones are as often numbers that happen to print.
    static func stackText(from rsp: UInt64, space: any KernelAddressSpace, window: UInt64 = 0x400) -> [Evidence] {
        var found: [Evidence] = []
        var run: [UInt8] = []
        var runStart: UInt64 = 0
        func flush() {
            let texts = CorruptionForensics.text(in: run + [0, 0]).filter { $0.count >= 8 }
            if !texts.isEmpty {
                found.append(Evidence(location: "the faulting frame's stack at \(hexText(runStart))", address: runStart,
                                      value: run.prefix(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }, text: texts, attributedTo: nil, onStack: true))
            }
            run.removeAll()
        }
        for slot in stride(from: rsp, to: rsp &+ window, by: 8) where slot >= rsp {
            guard let value = try? space.u64(slot) else { break }
            if value == 0 || isCanonical(value) {
                flush()
            } else {
                if run.isEmpty { runStart = slot }
                run += (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
            }
        }
        flush()
        return found
    }

    /// A broken link as evidence: for a bad Flink, the value and the memory around the entry
    /// holding it; for a Flink whose target does not point back, that target's own links.
    func examine(_ broken: ListBreak, location: String, space: any KernelAddressSpace) -> Evidence {
        switch broken.reason {
        case .backLinkMismatch:
            let value = (try? space.u64(broken.flink)) ?? 0
            return CorruptionForensics.examine(value: value, at: broken.flink, location: "\(location): entry \(hexText(broken.flink)) does not link back", space: space)
        default:
            return CorruptionForensics.examine(value: broken.flink, at: broken.entry, location: "\(location): \(broken.reason.rawValue) link \(hexText(broken.flink)) at \(hexText(broken.entry))", space: space)
        }
    }
}
