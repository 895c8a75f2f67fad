import Dispatch
import DumpFormat
import DumpMemory

/// Every CPU's current thread, and what each was doing.
extension CrashAnalyzer {
    /// Walks each CPU's saved context on its own thread: page-table readers and symbolizers
    /// keep caches, so each worker makes its own over the shared, immutable dump.
    func cpuStacks(dump: KernelDump, objects: KernelObjects, layout: KernelLayout?, walker: StackWalker) -> [CrashReport.CPU] {
        let processors = objects.processors.filter { $0.context != nil }
        guard !processors.isEmpty, dump.header.machine == .amd64 else { return [] }
        let results = ResultSlots<CrashReport.CPU>(count: processors.count)
        let modules = objects.modules
        let names = Dictionary(objects.processes.map { ($0.address, $0.imageName ?? "pid \($0.processId)") }, uniquingKeysWith: { first, _ in first })
        let work: @Sendable (Int) -> Void = { index in
            guard let space = try? dump.kernelAddressSpace() else { return }
            let processor = processors[index]
            let stack = walker.walk(from: RegisterState(processor.context!), symbolizer: Symbolizer(modules: modules, space: space, symbols: symbols), space: space,
                                    trapFrame: processor.currentThread?.trapFrame)
            let onIdleThread = processor.idleThread != nil && processor.currentThread?.address == processor.idleThread
            results.set(index, CrashReport.CPU(
                number: processor.number, thread: processor.currentThread.map { hexText($0.address) },
                process: onIdleThread ? "Idle" : processor.currentThread?.processAddress.flatMap { names[$0] ?? hexText($0) },
                activity: activity(of: stack, registers: processor.context, onIdleThread: onIdleThread), stack: stack))
        }
        inLanes(processors.count) { lane, lanes in
            for index in stride(from: lane, to: processors.count, by: lanes) { work(index) }
        }
        let cpus = results.values.compactMap { $0 }
        guard let space = try? dump.kernelAddressSpace() else { return cpus }
        return namingSpinLockHolders(cpus, contexts: Dictionary(processors.map { ($0.number, $0.context!) }, uniquingKeysWith: { first, _ in first }), space: space)
    }

    /// Says who holds each spin lock that CPUs wait for. An x64 KSPIN_LOCK records no owner
    /// (bit 0 is the whole lock), so the holder is inferred as WinDbg users do by hand: a CPU
    /// that is not waiting for the lock and whose registers (looked at on every CPU first) or
    /// else the first 8 KiB of whose stack hold the lock's address (its code keeps the address
    /// to release the lock). Only for a held plain lock (bit 0 set) at a kernel address; an idle
    /// CPU's stack, full of stale values, is not searched.
    func namingSpinLockHolders(_ cpus: [CrashReport.CPU], contexts: [Int: Context64], space: some KernelAddressSpace) -> [CrashReport.CPU] {
        var cpus = cpus
        let registerNames = ["RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI", "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"]
        var stackValues: [Int: [UInt64: UInt64]] = [:]  // CPU -> value -> its first slot's address
        func stack(of cpu: CrashReport.CPU) -> [UInt64: UInt64] {
            if let known = stackValues[cpu.number] { return known }
            var values: [UInt64: UInt64] = [:]
            if cpu.activity != "idle", let rsp = contexts[cpu.number]?.gpr[4] {
                let bytes = (try? space.read(rsp, count: 0x2000)) ?? (try? space.read(rsp, count: Int(0x1000 - (rsp & 0xFFF)))) ?? []
                for slot in stride(from: 0, to: bytes.count & ~7, by: 8) { values[bytes.littleEndian(at: slot, width: 8)] = values[bytes.littleEndian(at: slot, width: 8)] ?? rsp &+ UInt64(slot) }
            }
            stackValues[cpu.number] = values
            return values
        }
        for index in cpus.indices {
            guard let lock = cpus[index].spinLock.flatMap({ UInt64($0.dropFirst(2), radix: 16) }) else { continue }
            guard lock >> 47 == 0x1_FFFF, lock & 7 == 0 else {
                cpus[index].activity += ": not a kernel address"
                continue
            }
            guard let value = try? space.u64(lock) else {
                cpus[index].activity += ": value not in the dump"
                continue
            }
            guard value != 0 else {
                cpus[index].activity += ": free now (0x0)"
                continue
            }
            // A queued (in-stack) spin lock holds its last waiter's KSPIN_LOCK_QUEUE, aligned:
            // held, but the address says nothing about who holds it.
            guard value & 1 == 1 else {
                cpus[index].activity += ": held as a queued lock (last waiter's queue entry 0x\(hex(value)))"
                continue
            }
            let others = cpus.filter { $0.number != cpus[index].number && $0.spinLock != cpus[index].spinLock }
            var holder: (cpu: Int, where: String)?
            for other in others {
                if let register = contexts[other.number]?.gpr.firstIndex(of: lock), register != 4 {
                    holder = (other.number, "its \(registerNames[register]) holds the lock's address")
                    break
                }
            }
            if holder == nil {
                for other in others {
                    if let slot = stack(of: other)[lock] {
                        holder = (other.number, "its stack holds the lock's address at 0x\(hex(slot))")
                        break
                    }
                }
            }
            cpus[index].spinLockHolder = holder?.cpu
            cpus[index].activity += ": held (0x\(hex(value)))" + (holder.map { "; CPU \($0.cpu) seems to hold it (\($0.where))" } ?? "; no CPU shows it")
        }
        return cpus
    }

    /// Runs `lane(number, lanes)` for `min(parallelism, count)` lanes, each on its own thread
    /// (Dispatch runs at most one per core), or on this thread when there is one lane. A lane
    /// takes every lanes-th item, so `parallelism` bounds the threads used.
    func inLanes(_ count: Int, _ lane: @Sendable (Int, Int) -> Void) {
        let lanes = max(1, min(parallelism, count))
        if lanes > 1 {
            DispatchQueue.concurrentPerform(iterations: lanes) { lane($0, lanes) }
        } else {
            lane(0, 1)
        }
    }

    /// Every thread that is not on a CPU, from its KSWITCH_FRAME (KTHREAD.KernelStack points
    /// at it: RBP at +0x30, the return address into SwapContext's caller at +0x38), walked in
    /// parallel; those whose stacks pass through third-party code are returned.
    func threadStacks(dump: KernelDump, objects: KernelObjects, walker: StackWalker) -> [CrashReport.ThreadSummary] {
        let running = Set(objects.processors.compactMap { $0.currentThread?.address })
        let threads = objects.processes.flatMap { process in process.threads.map { (process, $0) } }.filter { !running.contains($0.1.address) && $0.1.kernelStack != nil }
        guard !threads.isEmpty, dump.header.machine == .amd64 else { return [] }
        let results = ResultSlots<CrashReport.ThreadSummary>(count: threads.count)
        let modules = objects.modules
        let rules = rules
        inLanes(threads.count) { lane, lanes in
            guard let space = try? dump.kernelAddressSpace() else { return }
            let symbolizer = Symbolizer(modules: modules, space: space, symbols: symbols)
            for index in stride(from: lane, to: threads.count, by: lanes) {
                let (process, thread) = threads[index]
                let switchFrame = thread.kernelStack!
                guard let rip = try? space.u64(switchFrame &+ 0x38), let rbp = try? space.u64(switchFrame &+ 0x30) else { continue }
                var gpr = [UInt64](repeating: 0, count: 16)
                gpr[4] = switchFrame &+ 0x40
                gpr[5] = rbp
                var limited = walker
                limited.maximumFrames = 32
                let stack = limited.walk(from: RegisterState(gpr: gpr, rip: rip), symbolizer: symbolizer, space: space, trapFrame: thread.trapFrame)
                guard stack.contains(where: rules.blames) else { continue }
                results.set(index, .init(process: process.imageName, threadId: thread.threadId, address: hexText(thread.address), state: thread.state,
                                         stack: stack.map(\.symbol)))
            }
        }
        return results.values.compactMap { $0 }
    }

    /// What a CPU was doing, from the top of its stack: idle, spinning on a lock (with the
    /// lock's address from RCX, the first argument), or running some module's code.
    ///
    /// Names come from exports, and the kernel exports its spin-lock entry points but not its
    /// idle loop (KiIdleLoop, PoIdle): a CPU is idle when it runs its KPRCB.IdleThread and no
    /// blamed module is on its stack (a driver's DPC can run on the idle thread). Frames found
    /// by scanning do not count: on an idle CPU's stack they are stale values of earlier work.
    func activity(of stack: [StackFrame], registers: Context64? = nil, onIdleThread: Bool = false) -> String {
        let top = stack.prefix(3)
        if top.contains(where: { ["KxWaitForSpinLockAndAcquire", "KeAcquireSpinLockRaiseToDpc", "KeAcquireSpinLockAtDpcLevel",
                                  "KxAcquireSpinLock", "KeAcquireInStackQueuedSpinLock"].contains($0.function ?? "") }) {
            return "waiting for spin lock" + (registers.map { " \(hexText($0.gpr[1]))" } ?? "")
        }
        let busyIndex = stack.firstIndex { rules.blames($0) && $0.trust != .scan }
        if busyIndex == nil, onIdleThread || ["KiIdleLoop", "HalProcessorIdle", "PoIdle"].contains(stack.first?.function ?? "") { return "idle" }
        if let busyIndex {
            let busy = stack[busyIndex]
            // What called into it, where the kernel's names are known (exports, a PDB): the
            // nearest dispatcher below it, so an ISR that interrupted a DPC reads as an ISR.
            // Scanned frames may be stale values of earlier work.
            let dispatcher = stack[busyIndex...].lazy.filter { $0.trust != .scan }.compactMap { frame -> String? in
                guard let function = frame.function else { return nil }
                if ["KiRetireDpcList", "KiExecuteAllDpcs", "KiExecuteDpc", "KiTimerExpiration"].contains(function) { return " in a DPC" }
                if function.hasPrefix("KiInterruptDispatch") || ["KiCallInterruptServiceRoutine", "KiInterruptSubDispatch"].contains(function) {
                    return " in an interrupt service routine"
                }
                return nil
            }.first
            let context = dispatcher ?? ""
            return "running \(busy.module!) code\(context) (\(busy.symbol))"
        }
        return stack.first.map { "in \($0.symbol)" } ?? "unknown"
    }

    /// The image name of the process whose thread crashed.
    func crashingProcessName(dump: KernelDump, objects: KernelObjects, layout: KernelLayout?, space: (any KernelAddressSpace)?) -> String? {
        guard let space, let layout else { return nil }
        var thread: UInt64?
        if let triage = dump.triage, let offset = dump.debuggerData.data?.offsetPrcbCurrentThread {
            thread = try? dump.source.u64(at: UInt64(triage.prcbOffset) + UInt64(offset))
        } else {
            thread = objects.processors.first { $0.number == 0 && dump.header.numberProcessors == 1 }?.currentThread?.address
                ?? objects.processors.first { $0.context?.rip == dump.header.context.rip && $0.context?.rsp == dump.header.context.rsp }?.currentThread?.address
        }
        guard let thread, let process = try? space.u64(thread &+ layout.threadApcProcess) else { return nil }
        if let known = objects.processes.first(where: { $0.address == process }) { return known.imageName }
        return KernelObjects.imageFileName(of: process, layout: layout, in: space)
    }
}

/// Results written by concurrent workers, one slot each.
final class ResultSlots<Value>: @unchecked Sendable {
    private var slots: [Value?]
    private let lock = DispatchSemaphore(value: 1)
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: Value) {
        lock.wait()
        slots[index] = value
        lock.signal()
    }
    var values: [Value?] {
        lock.wait()
        defer { lock.signal() }
        return slots
    }
}
