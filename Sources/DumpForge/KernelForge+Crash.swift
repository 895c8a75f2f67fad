/// What makes a forged dump a particular crash: trap frames on the stacks, the bug-check
/// parameters that point into them, queued timers and stray writes over them.
extension KernelForge {
    /// A trap handler (KiPageFault and friends) builds a KTRAP_FRAME at its RSP once its prolog
    /// ran: the CPU's machine frame is the frame's tail (Rip at 0x168 ... SegSs at 0x188, the
    /// error code at 0x160), the handler's pushed RBP is at 0x158, and the handler saves the
    /// interrupted code's volatile registers and RBX/RDI/RSI in between.
    func writeTrapFrames(_ stack: ForgedStack) {
        for (index, frame) in stack.frames.enumerated() where frame.viaTrap && index + 1 < stack.frames.count {
            let interrupted = stack.frames[index + 1].registers
            let trap = frame.rsp
            for (register, offset) in [(0, 0x30), (1, 0x38), (2, 0x40), (8, 0x48), (9, 0x50), (10, 0x58), (11, 0x60), (3, 0x140), (7, 0x148), (6, 0x150)] {
                write64(trap + UInt64(offset), interrupted[register])
            }
        }
    }

    /// The KTRAP_FRAME KiSystemCall64 built at `address` (the RSP of the frame at
    /// KiSystemServiceCopyEnd, as WinDbg shows "TrapFrame @" there): the user-mode RIP, RSP and
    /// segments it entered from, and what else such a frame holds. P1Home, where an unwinder
    /// that does not stop at the boundary looks for a return address, holds the service's first
    /// argument (a handle); the nonvolatile slots hold stale values of earlier kernel work, one
    /// of them a return address into a third-party driver, just after a call, as a scan wants.
    func writeSystemCallTrapFrame(at address: UInt64, threadId: UInt64) -> UInt64 {
        write64(address, 0x1A4)                                                 // P1Home: a handle
        write64(address + 0x158, 0x0000_00D1_0000_0000 | threadId << 12 | 0xF80)  // Rbp
        write64(address + 0x168, 0x0000_7FFA_3C21_0000 | (threadId & 0xFF) << 4 | 0x4)  // Rip: ntdll!NtXxx+0x14
        write64(address + 0x170, 0x33)                                          // SegCs: user code, RPL 3
        write64(address + 0x178, 0x246)                                         // EFlags
        write64(address + 0x180, 0x0000_00D1_0000_0000 | threadId << 12 | 0xE08)  // Rsp
        write64(address + 0x188, 0x2B)                                          // SegSs
        if let stale = staleDriverReturnAddress() { write64(address + 0x140, stale) }  // Rbx
        return address
    }

    /// A return address into the first third-party module's last function, with the call that
    /// would have left it written before it; nil when every module is Microsoft's.
    func staleDriverReturnAddress() -> UInt64? {
        guard let module = description.modules.dropFirst().first(where: { !$0.reproducible }) else { return nil }
        return staleReturnSite(module, offset: 0x1C0)
    }

    /// A return site at `offset` in `module`'s last function, with a `call` written before it so
    /// a scan believes it: what an earlier call left on the stack. Nil when the function is too
    /// small to hold it away from its prolog and epilog.
    func staleReturnSite(_ module: ModuleDescription, offset: UInt32) -> UInt64? {
        guard let function = module.functions.last, function.size >= 0x400, (0x100..<0x380).contains(offset),
              !placement(CodeLocation(module.name, function.name, 0)).compiled else { return nil }
        let site = placement(CodeLocation(module.name, function.name, offset)).address + UInt64(offset)
        var call = ByteBuffer(count: 5)
        call.put8(0xE8, at: 0)
        call.put32(0x100, at: 1)
        write(site - 5, call)
        return site
    }

    /// `localText`: UTF-16 text and its terminator in a frame's locals, from RSP + 0x28.
    func writeLocalText(_ stack: ForgedStack) {
        for (index, text) in description.localText.sorted(by: { $0.key < $1.key }) {
            precondition(stack.frames.indices.contains(index), "forge: localText names frame \(index) of \(stack.frames.count)")
            let frame = stack.frames[index]
            let room = placement(frame.location).prolog.reduce(UInt32(0)) { if case .allocate(let bytes) = $1 { $0 + bytes } else { $0 } }
            var bytes = ByteBuffer(count: 2 * (text.utf16.count + 1))
            bytes.putUTF16(text, at: 0)
            precondition(UInt32(bytes.count) + 0x28 <= room, "forge: \(frame.location.function) allocates 0x\(String(room, radix: 16)) bytes, too few for its local text")
            write(frame.rsp + 0x28, bytes)
        }
    }

    /// With `staleStackValues`: the local slot of about half the frames (rsp+0x20 in a frame
    /// whose prolog ends by allocating 0x28 bytes, above the callee's home space) holds a return
    /// address an earlier call left there, into a random module, as real stacks do. Unwinding
    /// never reads a local; a scan, all a minidump allows, takes it for a caller.
    func writeStaleValues(_ stack: ForgedStack) {
        guard description.staleStackValues else { return }
        for frame in stack.frames.dropFirst() {
            let place = placement(frame.location)
            guard !place.compiled, place.dynamicAllocation == 0, case .allocate(0x28)? = place.prolog.last, random.below(2) == 0 else { continue }
            let module = description.modules[Int(random.below(UInt64(description.modules.count)))]
            if let site = staleReturnSite(module, offset: 0x300 + 8 * UInt32(random.below(8))) { write64(frame.rsp + 0x20, site) }
        }
    }

    /// Puts a `call rel32` (E8) just before each return site on the stack, aimed at the callee,
    /// as the compiler would have: a stack scan checks for one before believing a return address.
    func writeCallSites(_ stack: ForgedStack) {
        for (index, frame) in stack.frames.enumerated().dropFirst() where !stack.frames[index - 1].viaTrap && !placement(frame.location).compiled {
            let target = placement(stack.frames[index - 1].location).address
            precondition(frame.location.offset >= 0x10, "forge: return site \(frame.location.function)+\(frame.location.offset) leaves no room for its call")
            var call = ByteBuffer(count: 5)
            call.put8(0xE8, at: 0)
            call.put32(UInt32(truncatingIfNeeded: target &- frame.rip), at: 1)
            write(frame.rip - 5, call)
        }
    }

    /// Parameters the description gave symbolically, as addresses in the forged kernel. A
    /// CONTEXT record holds the faulting frame's registers, with `faultRegisters` applied, and
    /// `faultStack` goes into that frame's stack.
    func resolveBugCheckParameters(timers: [UInt64]) -> [UInt64] {
        let crashing = processors[description.crashingProcessor]
        let frames = crashing.context.frames
        return description.bugCheckParameters.prefix(4).map { parameter in
            switch parameter {
            case .value(let value):
                return value
            case .code(let location):
                return placement(location).address + UInt64(location.offset)
            case .trapFrame(let frame):
                precondition(frames.indices.contains(frame) && frames[frame].viaTrap, "forge: frame \(frame) is not a trap handler")
                return frames[frame].rsp
            case .contextRecord(let describing, let storedIn):
                let address = frames[storedIn].rsp + 0x20
                var registers = frames[describing].registers
                func resolved(_ value: RegisterValue) -> UInt64 {
                    switch value {
                    case .value(let value): value
                    case .timerListEntry(let index): timers[index] + 0x20
                    }
                }
                for (register, value) in description.faultRegisters { registers[register] = resolved(value) }
                for (offset, value) in description.faultStack { write64(frames[describing].rsp + offset, resolved(value)) }
                let state = ForgedStack(registers: registers, rip: frames[describing].rip, frames: [])
                write(address, ByteBuffer(Self.context(state)))
                return address
            case .exceptionRecord(let describing, let storedIn, let code):
                let address = frames[storedIn].rsp + 0x500
                var record = ByteBuffer(count: 0x98)
                record.put32(code, at: 0)
                record.put64(frames[describing].rip, at: 0x10)
                record.put32(2, at: 0x18)  // NumberParameters: read/write flag and the address
                write(address, record)
                return address
            }
        }
    }

    /// MmUnloadedDrivers: an array of 50 UNLOADED_DRIVERS (UNICODE_STRING Name, StartAddress,
    /// EndAddress, CurrentTime; 0x28 bytes each on x64) filled in unload order, and
    /// MmLastUnloadedDriver, the next slot to fill.
    func writeUnloadedDrivers() {
        let array = allocatePool(50 * 0x28)
        for (index, driver) in description.unloadedDrivers.prefix(50).enumerated() {
            let (buffer, length) = poolString(driver.name)
            var entry = ByteBuffer(count: 0x28)
            entry.put16(length, at: 0)
            entry.put16(length + 2, at: 2)
            entry.put64(buffer, at: 8)
            entry.put64(driver.startAddress, at: 0x10)
            entry.put64(driver.endAddress, at: 0x18)
            entry.put64(description.systemTime - UInt64(50 - index) * 600_000_000, at: 0x20)
            write(array + 0x28 * UInt64(index), entry)
        }
        write64(globals + Self.unloadedDriversOffset, array)
        write64(globals + Self.lastUnloadedDriverOffset, UInt64(min(description.unloadedDrivers.count, 50)))
    }

    /// Queues each described KTIMER on its CPU's timer list, then applies the stray writes.
    func writeTimers() -> [UInt64] {
        typealias T = Layout19041.KTimerTable
        var timers: [UInt64] = []
        var byList: [Int: [(timer: UInt64, overwrite: [UInt8]?)]] = [:]
        for (index, description) in description.timers.enumerated() {
            precondition(processors.indices.contains(description.processor) && (0..<layout.timerLists).contains(description.list), "forge: timer \(index) names no timer list")
            let timer = allocatePool(0x40)
            var ktimer = ByteBuffer(count: 0x40)
            ktimer.put8(8, at: 0)  // DISPATCHER_HEADER.Type = TimerNotificationObject
            ktimer.put64(description.dueTime, at: 0x18)
            ktimer.put64(0x8A5C_3E11_97D4_2B60 ^ timer, at: 0x30)  // Dpc: encoded with KiWaitNever/KiWaitAlways
            ktimer.put16(UInt16(description.processor), at: 0x38)
            ktimer.put32(description.period, at: 0x3C)
            write(timer, ktimer)
            timers.append(timer)
            byList[description.processor * layout.timerLists + description.list, default: []].append((timer, description.overwrite))
        }
        for (key, queued) in byList.sorted(by: { $0.key < $1.key }) {
            let kprcb = processors[key / layout.timerLists].kprcb
            let head = kprcb + UInt64(layout.timerTable + T.entries + (key % layout.timerLists) * T.entrySize + T.entryList)
            link(head: head, queued.map { $0.timer + 0x20 })  // KTIMER.TimerListEntry
            for (timer, overwrite) in queued { if let overwrite { write(timer + 0x20, ByteBuffer(overwrite)) } }
        }
        return timers
    }
}
