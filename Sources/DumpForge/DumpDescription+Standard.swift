/// A realistic default machine: a 2-CPU Windows 10 19041 VM with the kernel, the HAL, a display
/// stack with an old third-party driver, the network stack, a handful of processes, and CPU 0
/// crashing in a System worker thread.
extension DumpDescription {
    public static func standard(kind: DumpKind, gibibytes: UInt64 = 2, layoutSeed: UInt64 = 1) -> DumpDescription {
        var description = DumpDescription(kind: kind, memory: vmMemory(gibibytes: gibibytes), modules: standardModules, processes: standardProcesses)
        description.layoutSeed = layoutSeed
        return description
    }

    /// Prologs shaped like the real functions' (a frame of pushes and a stack allocation; trap
    /// handlers with a machine frame and a frame pointer).
    static let framed: [PrologStep] = [.pushNonvolatile(register: 3), .pushNonvolatile(register: 6), .allocate(bytes: 0x28)]
    static let leafish: [PrologStep] = [.allocate(bytes: 0x38)]
    static let trap: [PrologStep] = [.pushMachineFrame(errorCode: true), .pushNonvolatile(register: 5), .allocate(bytes: 0x158), .setFramePointer(register: 5, offset: 8)]
    /// Traps without a CPU error code push a dummy one, so the KTRAP_FRAME has the same shape.
    static let trapWithoutErrorCode: [PrologStep] = [.pushMachineFrame(errorCode: false), .allocate(bytes: 8), .pushNonvolatile(register: 5),
                                                    .allocate(bytes: 0x158), .setFramePointer(register: 5, offset: 8)]
    /// Exception dispatch keeps a CONTEXT and an EXCEPTION_RECORD in its locals.
    static let dispatcher: [PrologStep] = [.pushNonvolatile(register: 3), .pushNonvolatile(register: 6), .allocate(bytes: 0x5C0)]

    static func functions(_ names: [String], prolog: [PrologStep] = framed, exported: Bool = true) -> [ForgedFunction] {
        names.map { ForgedFunction(name: $0, exported: exported, size: 0x400, prolog: prolog) }
    }

    /// KiSystemServiceCopyEnd is the return site of KiSystemCall64's call to a service, inside
    /// the system-service entry, which built the KTRAP_FRAME itself: its frame's RSP is that
    /// trap frame, so it pushes and allocates nothing of its own here.
    static func systemServiceEntry(_ function: ForgedFunction) -> ForgedFunction {
        guard function.name == "KiSystemServiceCopyEnd" else { return function }
        var entry = function
        entry.prolog = []
        return entry
    }

    /// Since Windows 10, Microsoft images carry a reproducible-build hash in TimeDateStamp (and a
    /// REPRO debug entry), which is why the in-box modules "date" from odd years, hal.dll's from a
    /// plausible one; third-party drivers carry real dates.
    public static let standardModules: [ModuleDescription] = [
        ModuleDescription(name: "ntoskrnl.exe", path: "\\SystemRoot\\system32\\ntoskrnl.exe", timeDateStamp: 0x9C8F_6A7B, checkSum: 0xA6_5F1D,
                          functions: functions(["KeBugCheckEx", "KiBugCheckDispatch", "KiInsertTimerTable", "KiTimerExpiration",
                                                "KiRetireDpcList", "KiIdleLoop", "KiSwapContext", "KeWaitForSingleObject",
                                                "KiSystemServiceCopyEnd", "IofCallDriver", "ExAllocatePool2", "PspSystemThreadStartup",
                                                "KiStartSystemThread", "KeAcquireSpinLockRaiseToDpc", "KxWaitForSpinLockAndAcquire",
                                                "KeSetTimerEx", "KiSetTimerEx", "NtSetTimerEx", "KiCancelTimer", "RtlpRemoveEntryList"]).map(systemServiceEntry)
                              + functions(["KiPageFault", "KiGeneralProtectionFault"], prolog: trap)
                              + functions(["KiRaiseSecurityCheckFailure", "KiNmiInterrupt"], prolog: trapWithoutErrorCode)
                              + functions(["KiSystemServiceHandler", "KiDispatchException", "KiFastFailDispatch", "KiProcessNMI"], prolog: dispatcher),
                          reproducible: true),
        ModuleDescription(name: "hal.dll", path: "\\SystemRoot\\system32\\hal.dll", timeDateStamp: 0x5E2C_3A11, checkSum: 0x8_1C2E,
                          functions: functions(["HalProcessorIdle", "HalpTimerClockInterrupt"]), reproducible: true),  // a hash that reads as 2020
        ModuleDescription(name: "dxgkrnl.sys", timeDateStamp: 0x7A3B_C2D1, checkSum: 0x3F_0A11,
                          functions: functions(["DxgkCreateDevice", "DpiDxgkDdiStartDevice", "DxgkPresent"]), reproducible: true),
        // 2020-09-23: an old NVIDIA display driver; its functions are not exported.
        ModuleDescription(name: "nvlddmkm.sys", timeDateStamp: 0x5F6A_9000, checkSum: 0x1F4_2B3C,
                          functions: functions(["NvDdiStartDevice", "NvRmProcessInterrupt", "NvRmUpdateTimer"], exported: false)),
        ModuleDescription(name: "ndis.sys", timeDateStamp: 0x6B21_0C44, checkSum: 0x14_AA01,
                          functions: functions(["NdisMIndicateReceiveNetBufferLists", "ndisMDispatchReceiveNetBufferLists", "ndisInterruptDpc"]),
                          reproducible: true),
        ModuleDescription(name: "tcpip.sys", timeDateStamp: 0x6B21_0D90, checkSum: 0x2B_7711,
                          functions: functions(["TcpReceive", "IppReceiveHeaderBatch"], prolog: leafish), reproducible: true),
    ]

    public static let standardProcesses: [ProcessDescription] = [
        ProcessDescription(processId: 4, parentId: 0, imageName: "System", threads: [
            ThreadDescription(threadId: 0x48, runningOn: 0, stack: [
                CodeLocation("ntoskrnl.exe", "KeBugCheckEx", 0x30),
                CodeLocation("ntoskrnl.exe", "KiBugCheckDispatch", 0x69),
                CodeLocation("ntoskrnl.exe", "KiPageFault", 0x3B8),
                CodeLocation("nvlddmkm.sys", "NvDdiStartDevice", 0x91),
                CodeLocation("dxgkrnl.sys", "DpiDxgkDdiStartDevice", 0x45),
                CodeLocation("ntoskrnl.exe", "IofCallDriver", 0x55),
                CodeLocation("ntoskrnl.exe", "PspSystemThreadStartup", 0x55),
                CodeLocation("ntoskrnl.exe", "KiStartSystemThread", 0x28),
            ]),
            ThreadDescription(threadId: 0x4C, stack: [
                CodeLocation("ntoskrnl.exe", "KiSwapContext", 0x76),
                CodeLocation("ntoskrnl.exe", "KeWaitForSingleObject", 0x233),
                CodeLocation("ntoskrnl.exe", "PspSystemThreadStartup", 0x55),
                CodeLocation("ntoskrnl.exe", "KiStartSystemThread", 0x28),
            ]),
        ]),
        ProcessDescription(processId: 0x16C, parentId: 4, imageName: "smss.exe", threads: [waiting(0x170)]),
        ProcessDescription(processId: 0x1D4, parentId: 0x1C8, imageName: "csrss.exe", threads: [waiting(0x1D8), waiting(0x1DC)]),
        ProcessDescription(processId: 0x25C, parentId: 0x1C8, imageName: "winlogon.exe", threads: [waiting(0x260)]),
        ProcessDescription(processId: 0xF10, parentId: 0xEE8, imageName: "explorer.exe", threads: [waiting(0xF14), waiting(0xF18)]),
    ]

    /// A user thread blocked in a system call.
    public static func waiting(_ threadId: UInt64) -> ThreadDescription {
        ThreadDescription(threadId: threadId, stack: [
            CodeLocation("ntoskrnl.exe", "KiSwapContext", 0x76),
            CodeLocation("ntoskrnl.exe", "KeWaitForSingleObject", 0x233),
            CodeLocation("ntoskrnl.exe", "KiSystemServiceCopyEnd", 0x25),
        ])
    }
}
