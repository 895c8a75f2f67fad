/// Processes, threads, stacks and processors (KPCR/KPRCB), laid out as build 19041 does.
extension KernelForge {
    func writeProcessesAndProcessors() {
        let cpus = description.processors
        var kprcbs: [UInt64] = []
        var kpcrs: [UInt64] = []
        for _ in 0..<cpus {
            let kpcr = allocatePool(layout.kpcrSize, alignment: 0x1000)
            kpcrs.append(kpcr)
            kprcbs.append(kpcr + UInt64(Layout19041.KPCR.prcb))
        }
        var running: [Int: (ethread: UInt64, eprocess: UInt64, stack: ForgedStack)] = [:]
        var entries: [UInt64] = []
        for process in description.processes {
            let forged = writeProcess(process, kprcbs: kprcbs, running: &running)
            entries.append(forged.eprocess + UInt64(layout.activeProcessLinks))
            processes.append(forged)
        }
        link(head: globals + Self.activeProcessHeadOffset, entries)

        // Every CPU has an idle thread, in the Idle process (PID 0), which runs when nothing
        // described runs there. Like Windows, the Idle process is not on PsActiveProcessHead.
        let idle = ProcessDescription(processId: 0, parentId: 0, imageName: "Idle", threads: (0..<cpus).map { cpu in
            ThreadDescription(threadId: 0, state: 1, runningOn: running[cpu] == nil ? cpu : nil, stack: description.idleStacks[cpu] ?? idleStack())  // 1 = Ready
        })
        let idleThreads = writeProcess(idle, kprcbs: kprcbs, running: &running).threads.map(\.ethread)
        for cpu in 0..<cpus {
            writeProcessor(cpu, kpcr: kpcrs[cpu], current: running[cpu]!, idleThread: idleThreads[cpu])
            write64(globals + Self.processorBlockOffset + 8 * UInt64(cpu), kprcbs[cpu])
        }
    }

    /// nt!KiIdleLoop calling into the HAL's idle routine, when those functions exist.
    private func idleStack() -> [CodeLocation] {
        let kernel = description.modules[0]
        let idle = kernel.functions.first { $0.name == "KiIdleLoop" } ?? kernel.functions[0]
        return [CodeLocation(kernel.name, idle.name, min(0x40, idle.size - 1))]
    }

    private func writeProcess(_ process: ProcessDescription, kprcbs: [UInt64], running: inout [Int: (ethread: UInt64, eprocess: UInt64, stack: ForgedStack)]) -> ForgedKernel.Process {
        typealias E = Layout19041.EPROCESS
        let eprocess = allocatePool(layout.eprocessSize)
        // The System and Idle processes run on the kernel's own page tables.
        let isKernel = process.processId <= 4
        let dtb = isKernel ? root : memory.newRoot()
        if !isKernel { processRoots.append(dtb) }

        // A user page only this process maps: its PEB.
        let peb = isKernel ? 0 : (0x7FF0_0000 + random.below(0x7_0000)) << 12
        if !isKernel {
            memory.mapFresh(root: dtb, va: peb, pages: 1, user: true)
            var text = ByteBuffer()
            text.putASCII("PEB of \(process.imageName) pid \(process.processId)", at: 0x100)
            memory.write(root: dtb, va: peb, text)
        }

        var record = ByteBuffer(count: layout.eprocessSize)
        record.put8(3, at: 0)  // DISPATCHER_HEADER.Type = ProcessObject
        record.put64(dtb, at: E.directoryTableBase)
        if let user = layout.userDirectoryTableBase { record.put64(dtb, at: user) }
        record.put64(process.processId, at: layout.uniqueProcessId)
        record.put64(process.parentId, at: layout.parentId)
        record.put64(peb, at: layout.peb)
        record.put(Array(process.imageName.utf8.prefix(15)), at: layout.imageFileName)
        if layout.knowsEveryField {
            record.put64(description.systemTime - description.systemUpTime / 2, at: E.createTime)
            record.put32(UInt32(process.threads.count), at: E.activeThreads)
        }
        write(eprocess, record)

        var threads: [ForgedKernel.Thread] = []
        for thread in process.threads {
            let forged = writeThread(thread, eprocess: eprocess, processId: process.processId)
            threads.append(forged)
            if let cpu = thread.runningOn {
                precondition(cpu < kprcbs.count && running[cpu] == nil, "forge: CPU \(cpu) is missing or already runs a thread")
                running[cpu] = (forged.ethread, eprocess, forged.stack)
            }
        }
        link(head: eprocess + UInt64(E.kprocessThreadListHead), threads.map { $0.ethread + UInt64(Layout19041.KTHREAD.threadListEntry) })
        link(head: eprocess + UInt64(layout.threadListHead), threads.map { $0.ethread + UInt64(layout.threadListEntry) })
        return ForgedKernel.Process(processId: process.processId, parentId: process.parentId, imageName: String(process.imageName.prefix(15)),
                                    eprocess: eprocess, directoryTableBase: dtb, pebAddress: peb, threads: threads)
    }

    private func writeThread(_ thread: ThreadDescription, eprocess: UInt64, processId: UInt64) -> ForgedKernel.Thread {
        typealias K = Layout19041.KTHREAD
        // A 0x6000-byte kernel stack (KERNEL_STACK_SIZE) above an unmapped guard page.
        let limit = stackNext + 0x1000
        let base = limit + 0x6000
        stackNext = base + 0x1000 * (1 + random.below(4))
        memory.mapFresh(root: root, va: limit, pages: 6)
        // A thread in a system call keeps the KTRAP_FRAME of its `syscall` at the top of its stack.
        let inSystemCall = thread.stack.last?.function == "KiSystemServiceCopyEnd"
        // An NMI (and a double fault or machine check) switches to its CPU's interrupt stack, a
        // TSS IST entry: the handler's machine frame lies there and holds the interrupted RSP,
        // on this thread's stack.
        var interruptStack: Range<UInt64>?
        if thread.stack.contains(where: { Self.interruptStackHandlers.contains($0.function) }) {
            let low = stackNext + 0x1000
            interruptStack = low..<low + 0x3000
            stackNext = low + 0x3000 + 0x1000 * (1 + random.below(4))
            memory.mapFresh(root: root, va: low, pages: 3)
        }
        var stack = StackForge.build(chain: thread.stack, top: base - (inSystemCall ? 0x190 : 0x30), seed: thread.threadId,
                                     interruptStack: { Self.interruptStackHandlers.contains($0.function) ? interruptStack?.upperBound : nil },
                                     placement: placement) { address, value in
            write64(address, value)
        }
        let trapFrame = inSystemCall ? stack.frames.last.map { writeSystemCallTrapFrame(at: $0.rsp, threadId: thread.threadId) } : nil
        if thread.waitsForSpinLock, !stack.frames.isEmpty {
            stack.registers[1] = spinLock  // RCX: KeAcquireSpinLock*'s argument
            stack.frames[0].registers[1] = spinLock
        }
        if let cpu = thread.runningOn, cpu == description.spinLockHolder, !stack.frames.isEmpty {
            stack.registers[3] = spinLock  // RBX: kept to release the lock
            stack.frames[0].registers[3] = spinLock
        }
        writeTrapFrames(stack)
        writeCallSites(stack)
        writeStaleValues(stack)
        if thread.runningOn == description.crashingProcessor { writeLocalText(stack) }

        let ethread = allocatePool(layout.ethreadSize)
        var record = ByteBuffer(count: layout.ethreadSize)
        record.put8(6, at: 0)  // DISPATCHER_HEADER.Type = ThreadObject
        record.put64(base, at: K.initialStack)
        record.put64(limit, at: K.stackLimit)
        record.put64(base, at: K.stackBase)
        // A thread that is not running was switched out by SwapContext, which left a
        // KSWITCH_FRAME (0x40 bytes: RBP at +0x30, the return address at +0x38) just below the
        // innermost frame; KernelStack points at it.
        let switchFrame = stack.rsp - 0x40
        if thread.runningOn == nil, !stack.frames.isEmpty {
            write64(switchFrame + 0x30, stack.registers[5])
            write64(switchFrame + 0x38, stack.rip)
        }
        record.put64(thread.runningOn == nil ? switchFrame : stack.rsp, at: K.kernelStack)
        record.put64(trapFrame ?? 0, at: K.trapFrame)
        record.put64(eprocess, at: K.apcStateProcess)
        record.put8(thread.state, at: K.state)
        record.put32(UInt32(thread.runningOn ?? 0), at: K.nextProcessor)
        record.put64(eprocess, at: K.process)
        record.put8(thread.runningOn == nil ? 6 : 0, at: K.waitReason)  // 6 = DelayExecution for waiters
        if layout.knowsEveryField { record.put64(thread.stack.last.map { placement($0).address } ?? 0, at: Layout19041.ETHREAD.startAddress) }
        record.put64(processId, at: layout.cid)  // CLIENT_ID: UniqueProcess, UniqueThread
        record.put64(thread.threadId, at: layout.cid + 8)
        write(ethread, record)
        return ForgedKernel.Thread(threadId: thread.threadId, ethread: ethread, stackBase: base, stackLimit: limit, stack: stack, interruptStack: interruptStack)
    }

    /// Handlers Windows runs on an interrupt stack of their own (KiNmiInterrupt: IST 3).
    static let interruptStackHandlers: Set<String> = ["KiNmiInterrupt"]

    private func writeProcessor(_ cpu: Int, kpcr: UInt64, current: (ethread: UInt64, eprocess: UInt64, stack: ForgedStack), idleThread: UInt64) {
        typealias P = Layout19041.KPRCB
        let kprcb = kpcr + UInt64(Layout19041.KPCR.prcb)
        var pcr = ByteBuffer(count: layout.kpcrSize)
        pcr.put64(kpcr, at: Layout19041.KPCR.selfPointer)
        pcr.put64(kprcb, at: Layout19041.KPCR.currentPrcb)
        let prcb = Layout19041.KPCR.prcb
        pcr.put64(current.ethread, at: prcb + P.currentThread)
        pcr.put64(idleThread, at: prcb + P.idleThread)
        pcr.put32(UInt32(cpu), at: prcb + P.number)
        if layout.knowsEveryField {
            pcr.put8(6, at: prcb + P.cpuType)
            pcr.put32(2_995, at: prcb + P.mhz)
            pcr.putASCII("GenuineIntel", at: prcb + P.vendorString)
        }
        pcr.put64(root, at: prcb + layout.cr3)
        pcr.put(Self.context(current.stack), at: prcb + layout.contextFrame)
        pcr.put64(kprcb + UInt64(layout.contextFrame), at: prcb + layout.context)
        // Every per-CPU timer list starts empty: a LIST_ENTRY whose links point at itself.
        for entry in 0..<layout.timerLists {
            let head = prcb + layout.timerTable + Layout19041.KTimerTable.entries + entry * Layout19041.KTimerTable.entrySize + Layout19041.KTimerTable.entryList
            pcr.put64(kpcr + UInt64(head), at: head)
            pcr.put64(kpcr + UInt64(head), at: head + 8)
        }
        write(kpcr, pcr)
        processors.append(ForgedKernel.Processor(kpcr: kpcr, kprcb: kprcb, currentThread: current.ethread, context: current.stack))
    }

    /// An x64 CONTEXT (0x4D0 bytes) holding a stack's innermost registers.
    static func context(_ stack: ForgedStack) -> [UInt8] {
        var context = ByteBuffer(count: 0x4D0)
        context.put32(0x10_001F, at: 0x30)  // CONTROL | INTEGER | SEGMENTS | FLOATING_POINT | DEBUG_REGISTERS
        context.put32(0x1F80, at: 0x34)  // MxCsr, repeated in FltSave
        context.put16(0x10, at: 0x38)  // CS
        context.put16(0x2B, at: 0x3A)
        context.put16(0x2B, at: 0x3C)
        context.put16(0x53, at: 0x3E)
        context.put16(0x2B, at: 0x40)
        context.put16(0x18, at: 0x42)  // SS
        context.put32(0x282, at: 0x44)
        for (index, value) in stack.registers.enumerated() { context.put64(value, at: 0x78 + 8 * index) }
        context.put64(stack.rip, at: 0xF8)
        context.put32(0x1F80, at: 0x118)
        return context.bytes
    }
}
