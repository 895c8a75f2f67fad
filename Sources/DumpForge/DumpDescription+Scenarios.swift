/// Crash scenarios seen in the field, as descriptions: each is the standard machine with one
/// cause planted. `layoutSeed` moves everything as KASLR would; `extraFrame` adds one more
/// frame near the stack's outer end, as a different code path to the same fault would; these
/// are the knobs the signature tests turn while the cause stays the same.
extension DumpDescription {
    /// A 2020 NVIDIA display driver faulting below dxgkrnl: bug check 0x1E, access violation.
    public static func displayDriverFault(kind: DumpKind, layoutSeed: UInt64 = 1, extraFrame: Bool = false) -> DumpDescription {
        var description = standard(kind: kind, layoutSeed: layoutSeed)
        let fault = CodeLocation("nvlddmkm.sys", "NvDdiStartDevice", 0x91)
        description.crash(stack: [
            CodeLocation("ntoskrnl.exe", "KeBugCheckEx", 0x30),
            CodeLocation("ntoskrnl.exe", "KiBugCheckDispatch", 0x69),
            CodeLocation("ntoskrnl.exe", "KiPageFault", 0x3B8),
            fault,
            CodeLocation("dxgkrnl.sys", "DpiDxgkDdiStartDevice", 0x45),
            CodeLocation("dxgkrnl.sys", "DxgkCreateDevice", 0x1C2),
        ] + outerFrames(extraFrame), process: "System")
        description.bugCheckCode = 0x1E
        description.bugCheckParameters = [0xC000_0005, .code(fault), 0, 0x28]
        return description
    }

    /// The VDI case: bug check 0x3B in nt!KiInsertTimerTable with only kernel frames on the
    /// stack, because a per-CPU timer-list entry was overwritten with the UTF-16 path of a
    /// user-mode program ("\\HDPServer\\VideoAccelerator.exe"), which a third-party component
    /// wrote where a KTIMER lived.
    public static func timerListCorruption(kind: DumpKind, layoutSeed: UInt64 = 1, extraFrame: Bool = false) -> DumpDescription {
        var description = standard(kind: kind, layoutSeed: layoutSeed)
        description.processes.append(ProcessDescription(processId: 0x1A2C, parentId: 0xF10, imageName: "VideoAccelerator.exe", threads: [waiting(0x1A30)]))
        description.crash(stack: [
            CodeLocation("ntoskrnl.exe", "KeBugCheckEx", 0x30),
            CodeLocation("ntoskrnl.exe", "KiBugCheckDispatch", 0x69),
            CodeLocation("ntoskrnl.exe", "KiSystemServiceHandler", 0x7C),
            CodeLocation("ntoskrnl.exe", "KiDispatchException", 0x1A3),
            CodeLocation("ntoskrnl.exe", "KiGeneralProtectionFault", 0x320),
            CodeLocation("ntoskrnl.exe", "KiInsertTimerTable", 0x8E),
            CodeLocation("ntoskrnl.exe", "KiSetTimerEx", 0x2D5),
            CodeLocation("ntoskrnl.exe", "KeSetTimerEx", 0x1C),
            CodeLocation("ntoskrnl.exe", "NtSetTimerEx", 0x12F),
        ] + (extraFrame ? [CodeLocation("ntoskrnl.exe", "KiCancelTimer", 0x44)] : []) + [
            CodeLocation("ntoskrnl.exe", "KiSystemServiceCopyEnd", 0x25),
        ], process: "svchost.exe")
        description.bugCheckCode = 0x3B
        description.bugCheckParameters = [0xC000_0005, .code(CodeLocation("ntoskrnl.exe", "KiInsertTimerTable", 0x8E)),
                                          .contextRecord(describing: 5, storedIn: 2), 0]
        let path = utf16Bytes("\\HDPServer\\VideoAccelerator.exe") + [0, 0]
        // KiInsertTimerTable faulted following timer 3's Flink: RBX held that list entry, RAX
        // the "pointer" it loaded, the path's first four UTF-16 characters.
        description.faultRegisters = [3: .timerListEntry(3), 0: .value(0x0050_0044_0048_005C)]
        description.timers = (0..<6).map { index in
            TimerDescription(processor: 0, list: 17 + 41 * index, dueTime: 0x1_2345_6789 + UInt64(index) * 10_000, period: index == 2 ? 1000 : 0,
                             overwrite: index == 3 ? path : nil)
        }
        return description
    }

    /// A VM that hung and was forced to dump with an NMI (`virsh inject-nmi`): CPU 0 spins in a
    /// third-party storage filter's DPC while holding a spin lock, the other CPUs wait for it.
    public static func spinLockHang(kind: DumpKind, layoutSeed: UInt64 = 1, extraFrame: Bool = false) -> DumpDescription {
        var description = standard(kind: kind, layoutSeed: layoutSeed)
        description.processors = 4
        description.modules.append(ModuleDescription(name: "vfstor.sys", timeDateStamp: 0x5C3F_1A00, checkSum: 0x2_1A3B,
                                                     functions: functions(["VfPollHardware", "VfProcessQueue", "VfDispatchIo"])))
        description.crash(stack: [
            CodeLocation("ntoskrnl.exe", "KeBugCheckEx", 0x30),
            CodeLocation("ntoskrnl.exe", "KiProcessNMI", 0x12B),
            CodeLocation("ntoskrnl.exe", "KiNmiInterrupt", 0x2A0),
            CodeLocation("vfstor.sys", "VfPollHardware", 0x44),
            CodeLocation("vfstor.sys", "VfProcessQueue", 0x80),
            CodeLocation("ntoskrnl.exe", "KiRetireDpcList", 0x1D0),
            CodeLocation("ntoskrnl.exe", "KiIdleLoop", 0x9E),
        ], process: "Idle")
        let waiter = { (cpu: Int, thread: UInt64) in
            ThreadDescription(threadId: thread, runningOn: cpu, stack: [
                CodeLocation("ntoskrnl.exe", "KxWaitForSpinLockAndAcquire", 0x27),
                CodeLocation("ntoskrnl.exe", "KeAcquireSpinLockRaiseToDpc", 0x87),
                CodeLocation("vfstor.sys", "VfDispatchIo", 0x50),
                CodeLocation("ntoskrnl.exe", "IofCallDriver", 0x55),
            ] + outerFrames(extraFrame && cpu == 1), waitsForSpinLock: true)
        }
        description.processes.append(ProcessDescription(processId: 0x2B8, parentId: 0x25C, imageName: "svchost.exe",
                                                        threads: [waiter(1, 0x2BC), waiter(2, 0x2C0), waiter(3, 0x2C4)]))
        description.spinLockHolder = description.crashingProcessor
        description.bugCheckCode = 0x80
        description.bugCheckParameters = [0x004F_4454, 0, 0, 0]
        return description
    }

    /// A network driver walking a receive list whose links it corrupted: the inlined
    /// RemoveEntryList check fails fast, bug check 0x139 with type 3 (LIST_ENTRY corruption).
    public static func listEntryCorruption(kind: DumpKind, layoutSeed: UInt64 = 1, extraFrame: Bool = false) -> DumpDescription {
        var description = standard(kind: kind, layoutSeed: layoutSeed)
        description.modules.append(networkDriver)
        description.crash(stack: [
            CodeLocation("ntoskrnl.exe", "KeBugCheckEx", 0x30),
            CodeLocation("ntoskrnl.exe", "KiBugCheckDispatch", 0x69),
            CodeLocation("ntoskrnl.exe", "KiFastFailDispatch", 0xD0),
            CodeLocation("ntoskrnl.exe", "KiRaiseSecurityCheckFailure", 0x323),
            CodeLocation("rtnet64x.sys", "RtFreeRxBuffers", 0x5E),
            CodeLocation("rtnet64x.sys", "RtReturnNetBufferLists", 0x3A),
            CodeLocation("ndis.sys", "ndisMDispatchReceiveNetBufferLists", 0x1F4),
        ] + outerFrames(extraFrame), process: "System")
        description.bugCheckCode = 0x139
        description.bugCheckParameters = [3, .trapFrame(frame: 3), .exceptionRecord(describing: 4, storedIn: 2, code: 0xC000_0409), 0]
        return description
    }

    /// The same network driver dereferencing a freed buffer at DISPATCH_LEVEL: bug check 0xD1.
    public static func networkDriverFault(kind: DumpKind, layoutSeed: UInt64 = 1, extraFrame: Bool = false) -> DumpDescription {
        var description = standard(kind: kind, layoutSeed: layoutSeed)
        description.modules.append(networkDriver)
        let fault = CodeLocation("rtnet64x.sys", "RtProcessRx", 0x1B7)
        description.crash(stack: [
            CodeLocation("ntoskrnl.exe", "KeBugCheckEx", 0x30),
            CodeLocation("ntoskrnl.exe", "KiBugCheckDispatch", 0x69),
            CodeLocation("ntoskrnl.exe", "KiPageFault", 0x3B8),
            fault,
            CodeLocation("rtnet64x.sys", "RtDpc", 0x40),
            CodeLocation("ndis.sys", "ndisInterruptDpc", 0x1A5),
        ] + (extraFrame ? [CodeLocation("ntoskrnl.exe", "KiRetireDpcList", 0x1D0)] : []) + [
            CodeLocation("ntoskrnl.exe", "KiIdleLoop", 0x9E),
        ], process: "Idle")
        description.bugCheckCode = 0xD1
        description.bugCheckParameters = [0x18, 2, 0, .code(fault)]
        return description
    }

    /// A Realtek-style NIC driver from 2019, not exported by name.
    static let networkDriver = ModuleDescription(name: "rtnet64x.sys", timeDateStamp: 0x5D1C_8E00, checkSum: 0xA_7E21,
                                                 functions: functions(["RtProcessRx", "RtDpc", "RtFreeRxBuffers", "RtReturnNetBufferLists"], exported: false))

    /// Where a system worker thread comes from; `extra` adds the work-item layer.
    static func outerFrames(_ extra: Bool) -> [CodeLocation] {
        (extra ? [CodeLocation("ntoskrnl.exe", "IofCallDriver", 0x55)] : [])
            + [CodeLocation("ntoskrnl.exe", "PspSystemThreadStartup", 0x55), CodeLocation("ntoskrnl.exe", "KiStartSystemThread", 0x28)]
    }

    /// Makes `stack` the crashing CPU's current thread, in the process named `process` (added
    /// when missing; "Idle" means the CPU's idle thread), and every other described thread a
    /// waiting one.
    mutating func crash(stack: [CodeLocation], process: String) {
        let cpu = crashingProcessor
        for index in processes.indices {
            for thread in processes[index].threads.indices where processes[index].threads[thread].runningOn == cpu {
                processes[index].threads[thread].runningOn = nil
                processes[index].threads[thread].state = 5
            }
        }
        let thread = ThreadDescription(threadId: 0x1F00 + UInt64(cpu) * 4, runningOn: cpu, stack: stack)
        if process == "Idle" {
            idleStacks[cpu] = stack
        } else if let index = processes.firstIndex(where: { $0.imageName == process }) {
            processes[index].threads.append(thread)
        } else {
            processes.append(ProcessDescription(processId: 0x3E8, parentId: 0x25C, imageName: process, threads: [thread]))
        }
    }
}
