import Dispatch
import DumpFormat
import DumpMemory
import SymbolFiles

/// From an opened dump to a `CrashReport`: kernel objects, the faulting stack, every CPU's
/// stack (walked in parallel), corruption forensics, the culprit, advice and a signature.
/// Whatever cannot be read becomes a note; only a dump that cannot be opened at all throws.
public struct CrashAnalyzer: Sendable {
    /// The analyzer's version, stored with every job and report. Raise it when reports or
    /// signatures change; `dumpfleet reprocess` then queues every dump again.
    public static let version = 3

    public var rules: TriageRules
    /// Threads for walking stacks, at most (and at most one per core); 1 walks on the calling
    /// thread.
    public var parallelism: Int
    /// The site's symbol files, when it has some (`--symbols`): frames are then named by
    /// function, and a build the offset tables lack takes its offsets from the kernel's types.
    public var symbols: (any SymbolSource)?

    public init(rules: TriageRules = .shipped, parallelism: Int = 2, symbols: (any SymbolSource)? = nil) {
        self.rules = rules
        self.parallelism = max(1, parallelism)
        self.symbols = symbols
    }

    public func analyze(_ dump: KernelDump) -> CrashReport {
        var notes = dump.notes
        let header = dump.header
        let bugCheck = BugCheck(rawCode: header.bugCheckCode, parameters: header.bugCheckParameters)
        let knowledge = BugCheckKnowledge(bugCheck)
        let inspection = DumpInspector.inspect(dump)

        let space: (any KernelAddressSpace)?
        do { space = try dump.kernelAddressSpace() } catch {
            notes.append("kernel memory is unreadable: \(error)")
            space = nil
        }
        var layout: KernelLayout?
        if let space, header.machine == .amd64 {  // the tables and invariants are x64's
            layout = KernelLayout.known(build: header.buildNumber, debuggerData: dump.debuggerData.data)
            if layout == nil, let kernel = kernelSymbols(dump: dump, space: space), let types = kernel.types {
                layout = KernelLayout.fromTypes(types, origin: kernel.origin, debuggerData: dump.debuggerData.data)
            }
            if layout == nil { layout = KernelObjects.discoverLayout(dump: dump, space: space) }
        }
        let objects = space.map { KernelObjects.read(from: dump, layout: layout, space: $0) }
            ?? KernelObjects(modules: dump.triage.map { KernelObjects.modules(fromMinidump: $0, source: dump.source) } ?? [],
                             unloadedModules: [], processes: [], processors: [], brokenLists: [], problems: [])
        notes += objects.problems
        if header.machine != .amd64 { notes.append("\(header.machine) stacks are not unwound (x64 is the analysis target)") }

        // The faulting stack: from the context the bug check points at, else the crashing CPU's.
        let faultingIP = knowledge.faultingIPParameter.map { bugCheck.parameters[$0] }
        var walker = StackWalker()
        if let faultingIP { walker.knownFaultAddresses.insert(faultingIP) }
        var stack: [StackFrame] = []
        var crashingStack: [StackFrame] = []
        var faultRegisters = RegisterState(header.context)
        var symbolizer: Symbolizer?
        if let space, header.machine == .amd64 {
            let walking = Symbolizer(modules: objects.modules, space: space, symbols: symbols)
            // The crashing thread is the one whose kernel stack holds the context's RSP; a
            // minidump keeps a copy of its ETHREAD instead, with KTHREAD.TrapFrame in it.
            let copiedTrapFrame = dump.triage.flatMap { triage in
                layout.flatMap { try? dump.source.u64(at: UInt64(triage.threadOffset) &+ $0.threadTrapFrame) }
            }
            let trapFrame = objects.thread(onStackAt: header.context.rsp)?.trapFrame ?? copiedTrapFrame
            crashingStack = walker.walk(from: RegisterState(header.context), symbolizer: walking, space: space, trapFrame: trapFrame)
            if let faultState = Self.faultContext(knowledge.faultContext, bugCheck: bugCheck, space: space, notes: &notes) {
                faultRegisters = faultState
                // A fail-fast (0x139) stops at `int 29h`: its trap frame's RIP is the next instruction.
                stack = walker.walk(from: faultState, symbolizer: walking, space: space, startsAfterInstruction: bugCheck.code == 0x139,
                                    trapFrame: trapFrame)
            } else {
                stack = crashingStack
            }
            symbolizer = walking
        }
        let faultingFrame = Self.faultingFrame(in: stack, faultingIP: faultingIP)
        // An NMI runs on its own interrupt stack, which is the stack a minidump keeps; the stack
        // of the code it interrupted is elsewhere.
        if let triage = dump.triageMemory, let last = stack.last, last.trust == .trapFrame, triage.capturedRange(containing: last.rsp) == nil {
            notes.append("the stack of the interrupted code (RSP \(hexText(last.rsp))) is not in the minidump: the walk ends at the interrupted instruction, \(last.symbol)")
        }

        // Every CPU's current thread, in parallel (full dumps; a minidump has only the crashing one).
        var cpus = cpuStacks(dump: dump, objects: objects, layout: layout, walker: walker)
        let threads = threadStacks(dump: dump, objects: objects, walker: walker)
        if cpus.isEmpty, !crashingStack.isEmpty {
            cpus = [CrashReport.CPU(number: 0, thread: nil, process: nil, activity: activity(of: crashingStack), stack: crashingStack)]
        }

        // Corruption forensics over the lists walked and the CPUs' timer tables.
        var evidence = space.map { forensics(dump: dump, objects: objects, layout: layout, space: $0) } ?? []
        // A faulting access to a non-canonical address: the "pointer" may be someone's data.
        if let parameter = knowledge.referencedAddressParameter, !isCanonical(bugCheck.parameters[parameter]) {
            let value = bugCheck.parameters[parameter]
            let own = (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
            let text = CorruptionForensics.text(in: own + [0, 0])
            if !text.isEmpty {
                evidence.append(Evidence(location: "the faulting access (parameter \(parameter + 1))", address: 0, value: value, text: text, attributedTo: nil))
            }
        }
        if let space, header.machine == .amd64 {
            evidence += Self.registerForensics(faultRegisters, space: space, known: evidence)
            var faultValues = Set(faultRegisters.gpr.filter { !isCanonical($0) })
            if let parameter = knowledge.referencedAddressParameter, !isCanonical(bugCheck.parameters[parameter]) { faultValues.insert(bugCheck.parameters[parameter]) }
            evidence += stackListForensics(faultRegisters, faultValues: faultValues, space: space, known: evidence)
            if let frame = faultingFrame.flatMap({ stack.indices.contains($0) ? stack[$0] : nil }) { evidence += Self.stackText(from: frame.rsp, space: space) }
        }
        if let missing = Self.uncapturedRegisterMemory(faultRegisters, dump: dump) { notes.append(missing) }
        for index in evidence.indices {
            evidence[index].attributedTo = CorruptionForensics.attribute(evidence[index], processes: objects.processes, modules: objects.modules, rules: rules)
        }

        let processName = crashingProcessName(dump: dump, objects: objects, layout: layout, space: space)
        let culprit = findCulprit(stack: stack, faultingFrame: faultingFrame, knowledge: knowledge, cpus: cpus, evidence: evidence, modules: objects.modules)
        let culpritModule = culprit.module
        let bugCheckClass = Self.bugCheckClass(bugCheck, knowledge: knowledge)
        let bucket = Self.bucket(class: bugCheckClass, culprit: culprit)
        let faultingKey = faultingFrame.flatMap { stack.indices.contains($0) ? stack[$0].moduleOffsetKey : nil }
        let signature = CrashSignature(bucket: bucket, bugCheckClass: bugCheckClass, culprit: culprit.key, faultingKey: faultingKey,
                                       frames: stack, faultingFrame: faultingFrame ?? 0, evidence: evidence)

        let verdict = inspection.completeness.verdict
        let crashTime = FileTime.unixSeconds(header.systemTime)
        let timestamps = objects.modules.map { ImageTimestamp.of($0.timeDateStamp, imageAt: $0.base, in: space, crashTime: crashTime) }
        let culpritTimestamp = culpritModule.flatMap { module in objects.modules.firstIndex(of: module).map { timestamps[$0] } }
        let advice = Self.advice(culprit: culprit, module: culpritModule, timestamp: culpritTimestamp, header: header, knowledge: knowledge, verdict: verdict,
                                 missingPages: dump.physical?.missingPages ?? 0, evidence: evidence, hasStack: !stack.isEmpty)
        var report = CrashReport(
            dumpType: dump.capture.map { "\($0.container) (a hypervisor's capture)" } ?? header.dumpType.description, machine: header.machine.description, buildNumber: header.buildNumber,
            processors: header.numberProcessors, systemTime: FileTime.text(header.systemTime), systemUpTime: FileTime.durationText(header.systemUpTime),
            completeness: verdict, bugCheckCode: bugCheckText(bugCheck.rawCode),
            bugCheckName: knowledge.liveCapture?.bugCheckName ?? bugCheck.name,
            parameters: zip(bugCheck.parameters, knowledge.parameterMeanings).map { .init(value: hexText($0), meaning: $1) },
            processName: processName, imageName: culpritModule?.name ?? (culprit.kind == .process ? culprit.name : nil),
            moduleName: culpritModule.map { TriageRules.moduleKey($0.name) },
            imageTimestamp: culpritTimestamp,
            faultingIP: faultingFrame.flatMap { stack.indices.contains($0) ? stack[$0].symbol : nil } ?? faultingIP.map(hexText),
            followupFrame: culprit.frame?.symbol, culprit: culprit.report, failureBucketId: bucket,
            stack: stack, faultingFrame: faultingFrame, cpus: cpus, threads: threads, evidence: evidence, advice: advice,
            modules: zip(objects.modules, timestamps).map { module, timestamp in
                .init(name: module.name, path: module.path, base: hexText(module.base), size: module.size, timeDateStamp: module.timeDateStamp,
                      timestamp: timestamp, checkSum: hexText(module.checkSum))
            },
            unloadedDrivers: objects.unloadedModules.map { .init(name: $0.name, start: hexText($0.start), end: hexText($0.end)) },
            processes: objects.processes.map { process in
                .init(processId: process.processId, parentId: process.parentId, name: process.imageName,
                      directoryTableBase: hexText(process.directoryTableBase), threads: process.threads.count)
            },
            signature: signature, layoutSource: layout?.source, notes: notes,
            symbolFiles: symbolizer.flatMap { usedSymbolFiles(symbolizer: $0, modules: objects.modules, stacks: [stack] + cpus.map(\.stack)) })
        report.basis = basis(dump: dump, space: space, knowledge: knowledge, bugCheck: bugCheck, stack: stack, culprit: culprit, evidence: evidence, cpus: cpus)
        report.capture = Self.captureText(dump: dump, live: knowledge.liveCapture, time: report.systemTime)
        return report
    }

    /// How and when a dump of a running system was taken, in one line.
    static func captureText(dump: KernelDump, live: BugCheckKnowledge.LiveCapture?, time: String?) -> String? {
        guard let live else { return nil }
        let when = time.map { " at \($0)" } ?? " (no time recorded)"
        if let capture = dump.capture {
            return "by the hypervisor: \(capture.container)\(when); page tables from \(capture.directoryTableBaseSource)"
                + (capture.kernelBase.map { "; the kernel at \(hexText($0))" } ?? "")
        }
        return switch live {
        case .noBugCheck: "from the running system (no bug check)\(when)"
        case .liveSystemDump: "a live dump (LIVE_SYSTEM_DUMP) of the running system\(when): QEMU's dump-guest-memory -w or Windows' live kernel dump"
        case .acquisitionTool(let marker): "a memory acquisition tool's image ('\(marker)'), converted to a crash dump\(when)"
        }
    }

    /// The kernel image's symbols, found by the CodeView record of the image at KDBG's KernBase.
    func kernelSymbols(dump: KernelDump, space: any KernelAddressSpace) -> ModuleSymbols? {
        guard let symbols, let base = dump.debuggerData.data?.kernBase,
              let identity = (try? PEImage(reading: space, base: base).pdbIdentity(in: space)) ?? nil else { return nil }
        return symbols.symbols(for: identity)
    }

    /// "ntkrnlmp.pdb GUID-AGE: path" for each module on the stacks whose symbols were read.
    func usedSymbolFiles(symbolizer: Symbolizer, modules: [LoadedModule], stacks: [[StackFrame]]) -> [String]? {
        guard symbols != nil else { return nil }
        let named = Set(stacks.joined().compactMap(\.module))
        return modules.filter { named.contains($0.name) }.compactMap { module in
            symbolizer.moduleSymbols(module).map { "\($0.identity): \($0.origin)" + ($0.problems.isEmpty ? "" : " (\($0.problems.joined(separator: "; ")))") }
        }
    }

    // MARK: contexts and frames

    /// The register state the bug check's parameters point at (a CONTEXT or a KTRAP_FRAME).
    static func faultContext(_ source: BugCheckKnowledge.FaultContext, bugCheck: BugCheck, space: any KernelAddressSpace, notes: inout [String]) -> RegisterState? {
        switch source {
        case .none:
            return nil
        case .contextRecord(let parameter):
            let address = bugCheck.parameters[parameter]
            do { return RegisterState(try Context64(bytes: space.read(address, count: Int(Context64.size)))) } catch {
                notes.append("the CONTEXT record at \(hexText(address)) (parameter \(parameter + 1)) is unreadable: \(error)")
                return nil
            }
        case .trapFrame(let parameter):
            let address = bugCheck.parameters[parameter]
            do { return try trapFrameState(at: address, space: space) } catch {
                notes.append("the KTRAP_FRAME at \(hexText(address)) (parameter \(parameter + 1)) is unreadable: \(error)")
                return nil
            }
        }
    }

    /// A KTRAP_FRAME's registers (§5.5): volatile ones, RBX/RDI/RSI/RBP, and the machine frame.
    static func trapFrameState(at address: UInt64, space: any KernelAddressSpace) throws -> RegisterState {
        var gpr = [UInt64](repeating: 0, count: 16)
        for (register, offset) in [(0, 0x30), (1, 0x38), (2, 0x40), (8, 0x48), (9, 0x50), (10, 0x58), (11, 0x60),
                                   (3, 0x140), (7, 0x148), (6, 0x150), (5, 0x158), (4, 0x180)] as [(Int, UInt64)] {
            gpr[register] = try space.u64(address &+ offset)
        }
        return RegisterState(gpr: gpr, rip: try space.u64(address &+ 0x168))
    }

    /// The frame that faulted: the one at the faulting IP, else the first entered by a trap.
    static func faultingFrame(in stack: [StackFrame], faultingIP: UInt64?) -> Int? {
        guard !stack.isEmpty else { return nil }
        if let faultingIP, let index = stack.firstIndex(where: { $0.rip == faultingIP }) { return index }
        return stack.firstIndex { $0.trust == .trapFrame } ?? 0
    }
}
