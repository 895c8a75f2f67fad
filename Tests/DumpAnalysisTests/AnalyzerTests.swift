import DumpAnalysis
import Foundation
import DumpFormat
import DumpForge
import DumpMemory
import Testing
import TestSupport

/// The crash scenarios of the forge, analyzed: culprit, bucket, evidence and advice.
@Suite struct AnalyzerTests {
    static func analyze(_ description: DumpDescription) throws -> CrashReport {
        var small = description
        small.memory = [0x1..<0x9F, 0x100..<0x8000]
        return CrashAnalyzer().analyze(try KernelDump(source: Fixtures.source(Forge.dump(small))))
    }

    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapKernel, .rangeKernel])
    func timerListOverwrittenWithAProgramPathNamesTheProgram(kind: DumpDescription.DumpKind) throws {
        let report = try Self.analyze(.timerListCorruption(kind: kind))
        #expect(report.bugCheckCode == "0x0000003B")
        // Kernel frames only, down to the system-service entry; then the user-mode caller.
        #expect(report.stack.dropLast().allSatisfy { $0.moduleKey == "nt" }, "only kernel frames: \(report.stack.map(\.symbol))")
        #expect(report.stack.last?.rip ?? .max < 0x8000_0000_0000, "\(report.stack.map(\.symbol))")
        #expect(report.faultingIP == "nt!KiInsertTimerTable+0x8e")
        let evidence = try #require(report.evidence.first)
        #expect(evidence.text.contains("\\HDPServer\\VideoAccelerator.exe"))
        #expect(evidence.value == 0x0050_0044_0048_005C, "the bad Flink is the path's first four UTF-16 characters")
        #expect(evidence.location.contains("timer list"))
        #expect(evidence.attributedTo?.kind == .process)
        #expect(evidence.attributedTo?.name == "VideoAccelerator.exe")
        #expect(evidence.attributedTo?.thirdParty == true)
        #expect(report.culprit.kind == .process)
        #expect(report.culprit.name == "VideoAccelerator.exe")
        #expect(report.failureBucketId == "0x3B_c0000005_CORRUPTION_VideoAccelerator.exe")
        #expect(report.advice.contains { $0.contains("VideoAccelerator.exe") && $0.contains("vendor") })
        #expect(report.processName == "svchost.exe")
    }

    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapFull, .triage, .rangeKernelAndUser, .rangeComplete])
    func displayDriverBelowDxgkrnlIsTheCulprit(kind: DumpDescription.DumpKind) throws {
        let report = try Self.analyze(.displayDriverFault(kind: kind))
        #expect(report.imageName == "nvlddmkm.sys")
        #expect(report.moduleName == "nvlddmkm")
        #expect(report.imageTimestamp?.date == "2020-09-23T00:00:00Z")
        // A minidump does not hold the image's headers, so nothing rules out a build hash there.
        #expect(report.imageTimestamp?.meaning == (kind == .triage ? .unverifiedLinkTime : .linkTime))
        #expect(report.failureBucketId == "0x1E_c0000005_nvlddmkm+0x1091")
        #expect(report.advice.contains { $0.contains("update nvlddmkm.sys, built 2020-09-23") })
        let fault = try #require(report.faultingFrame)
        #expect(report.stack[fault].moduleKey == "nvlddmkm")
        #expect(report.stack[fault + 1].moduleKey == "dxgkrnl")
        #expect(report.parameters[3].meaning == "address accessed")
        if kind == .triage {
            #expect(report.advice.contains { $0.contains("complete (or kernel) memory dump") })
            #expect(report.stack.dropFirst().allSatisfy { $0.trust == .scan || $0.trust == .trapFrame }, "a minidump has no .pdata")
        } else {
            #expect(report.stack[fault].trust == .trapFrame)
            #expect(report.stack[fault + 1].trust == .unwindInfo)
        }
    }

    @Test(arguments: [DumpDescription.DumpKind.full, .triage])
    func unloadedDriversAreListed(kind: DumpDescription.DumpKind) throws {
        var description = DumpDescription.displayDriverFault(kind: kind)
        description.unloadedDrivers = [
            UnloadedDriverDescription(name: "dam.sys", startAddress: 0xFFFF_F800_5000_0000, endAddress: 0xFFFF_F800_5001_2000),
            UnloadedDriverDescription(name: "VideoAcc.sys", startAddress: 0xFFFF_F800_6000_0000, endAddress: 0xFFFF_F800_6000_8000),
        ]
        let report = try Self.analyze(description)
        #expect(report.unloadedDrivers.map(\.name) == ["dam.sys", "VideoAcc.sys"])
        #expect(report.unloadedDrivers.last?.end == "0xfffff80060008000")
    }

    @Test func waitingThreadsInThirdPartyCodeAreListed() throws {
        var description = DumpDescription.displayDriverFault(kind: .full)
        description.processes[0].threads.append(ThreadDescription(threadId: 0x88, stack: [
            CodeLocation("ntoskrnl.exe", "KiSwapContext", 0x76),
            CodeLocation("ntoskrnl.exe", "KeWaitForSingleObject", 0x233),
            CodeLocation("nvlddmkm.sys", "NvRmProcessInterrupt", 0x50),
            CodeLocation("ntoskrnl.exe", "PspSystemThreadStartup", 0x55),
            CodeLocation("ntoskrnl.exe", "KiStartSystemThread", 0x28),
        ]))
        let report = try Self.analyze(description)
        let thread = try #require(report.threads.first { $0.threadId == 0x88 })
        #expect(thread.process == "System")
        #expect(thread.state == 5)
        #expect(thread.stack == ["nt!KiSwapContext+0x76", "nt!KeWaitForSingleObject+0x233", "nvlddmkm+0x1450",
                                 "nt!PspSystemThreadStartup+0x55", "nt!KiStartSystemThread+0x28"])
        #expect(report.threads.allSatisfy { $0.stack.contains { $0.hasPrefix("nvlddmkm") } }, "threads only in the OS are not listed")
    }

    @Test func nonCanonicalFaultingAccessIsDecoded() throws {
        var description = DumpDescription.displayDriverFault(kind: .full)
        description.bugCheckParameters[3] = .value(0x0078_0065_002E_0072)  // UTF-16LE "r.ex" read as an address
        let report = try Self.analyze(description)
        let evidence = try #require(report.evidence.first { $0.location.contains("faulting access") })
        #expect(evidence.text == ["r.ex"])
        #expect(report.imageName == "nvlddmkm.sys", "the stack still decides when it has a third-party frame")
    }

    @Test func anIdleCPUIsIdleWithoutTheIdleLoopsName() throws {
        // A real ntoskrnl does not export KiIdleLoop: the frame has no name, but the CPU runs
        // its KPRCB.IdleThread.
        var description = DumpDescription.displayDriverFault(kind: .full)
        for index in description.modules[0].functions.indices where description.modules[0].functions[index].name.hasPrefix("Ki") {
            description.modules[0].functions[index].exported = false
        }
        let report = try Self.analyze(description)
        #expect(report.cpus.count == 2 && report.cpus[1].process == "Idle")
        #expect(report.cpus[1].activity == "idle", "\(report.cpus[1].stack.map(\.symbol))")
        #expect(report.cpus[0].activity.hasPrefix("running nvlddmkm.sys"))
    }

    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapKernel])
    func nmiHangBlamesTheSpinningDriver(kind: DumpDescription.DumpKind) throws {
        let report = try Self.analyze(.spinLockHang(kind: kind))
        #expect(report.bugCheckName == "NMI_HARDWARE_FAILURE")
        #expect(report.cpus.count == 4)
        #expect(report.cpus[0].activity.hasPrefix("running vfstor.sys"))
        let lock = report.cpus[1].activity
        #expect(lock.hasPrefix("waiting for spin lock 0x"))
        #expect(report.cpus[2].activity == lock && report.cpus[3].activity == lock, "all three wait on the same lock")
        #expect(report.imageName == "vfstor.sys")
        #expect(report.failureBucketId == "0x80_NMI_vfstor+0x1044")
        #expect(report.culprit.reason.contains("CPUs 1, 2, 3 wait for a spin lock"))
        #expect(report.advice.contains { $0.contains("forced from outside") })
    }

    @Test func listCorruptionInANetworkDriver() throws {
        let report = try Self.analyze(.listEntryCorruption(kind: .full))
        #expect(report.bugCheckName == "KERNEL_SECURITY_CHECK_FAILURE")
        #expect(report.parameters[0].meaning.contains("LIST_ENTRY"))
        #expect(report.stack.first?.moduleKey == "rtnet64x", "the walk starts at the KTRAP_FRAME of parameter 2")
        #expect(report.imageName == "rtnet64x.sys")
        #expect(report.failureBucketId.hasPrefix("0x139_3_rtnet64x+0x"))
    }

    @Test func irqlFaultInANetworkDriver() throws {
        let report = try Self.analyze(.networkDriverFault(kind: .full))
        #expect(report.bugCheckName == "DRIVER_IRQL_NOT_LESS_OR_EQUAL")
        #expect(report.imageName == "rtnet64x.sys")
        #expect(report.failureBucketId == "0xD1_rtnet64x+0x11b7")
        #expect(report.parameters[1].meaning == "IRQL at the time")
        #expect(report.cpus.first { $0.number == 1 }?.process == "Idle")
    }

    @Test func realArm64MinidumpListsModulesAndSaysWhatItCannotDo() throws {
        guard let source = try Fixtures.realDump("triage_arm64_22000.dmp") else { return }
        let report = CrashAnalyzer().analyze(try KernelDump(source: source))
        #expect(report.bugCheckName == "MANUALLY_INITIATED_POWER_BUTTON_HOLD")
        #expect(report.machine == "ARM64")
        #expect(report.modules.count == 245)
        #expect(report.modules.first?.name.lowercased() == "ntoskrnl.exe")
        #expect(report.notes.contains { $0.contains("ARM64 stacks are not unwound") })
        #expect(report.advice.contains { $0.contains("minidump") })
        #expect(report.advice.contains { $0.contains("forced from outside") })
        // ntoskrnl "built 2088" and CLFS.SYS "built 2035" are reproducible-build hashes.
        let later = report.modules.filter { ["ntoskrnl.exe", "clfs.sys"].contains($0.name.lowercased()) }
        #expect(later.count == 2 && later.allSatisfy { $0.timestamp?.meaning == .buildHash && $0.timestamp?.date == nil }, "\(later)")
        #expect(!report.text.contains("2088") && !report.text.contains("2035"))
    }

    /// A stack ends where its thread entered the kernel, as WinDbg's does: at the system-service
    /// entry, with the user-mode RIP and RSP of the KTRAP_FRAME there (KTHREAD.TrapFrame) as the
    /// last frame. Above it lie stale values, here a return address into nvlddmkm.sys just after
    /// a call, which a scan would take for a caller and blame.
    @Test(arguments: [DumpDescription.DumpKind.full, .bitmapKernel, .triage])
    func aStackEndsAtTheSystemServiceBoundary(kind: DumpDescription.DumpKind) throws {
        var description = DumpDescription.timerListCorruption(kind: kind)
        description.memory = [0x1..<0x9F, 0x100..<0x8000]
        let forged = Forge.dump(description)
        let dump = try KernelDump(source: Fixtures.source(forged))
        let report = CrashAnalyzer().analyze(dump)
        let kernel = try #require(forged.kernel.modules.first { $0.name == "ntoskrnl.exe" })
        let entry = try #require(kernel.functions["KiSystemServiceCopyEnd"]).lowerBound + 0x25
        let boundary = try #require(report.stack.firstIndex { $0.rip == entry }, "\(report.stack.map(\.symbol))")
        #expect(report.stack.count == boundary + 2, "one frame past the entry: \(report.stack.map(\.symbol))")
        let user = try #require(report.stack.last)
        #expect(user.trust == .trapFrame && user.rip >> 24 == 0x7FFA3C && user.rsp >> 32 == 0xD1, "the trap frame's user RIP and RSP: \(user)")
        // The stale value: a return address into nvlddmkm.sys's last function, with a call before it.
        let driver = try #require(forged.kernel.modules.first { $0.name == "nvlddmkm.sys" })
        let stale = try #require(driver.functions["NvRmUpdateTimer"]).lowerBound + 0x1C0
        let staleSymbol = "nvlddmkm+0x" + String(stale - driver.base, radix: 16)
        #expect(!report.stack.contains { $0.rip == stale })
        #expect(!report.cpus.contains { cpu in cpu.stack.contains { $0.rip == stale } || cpu.activity.contains(staleSymbol) }, "\(report.cpus.map(\.activity))")
        #expect(!report.threads.contains { $0.stack.contains(staleSymbol) }, "\(report.threads.map(\.stack))")
        if kind != .triage { #expect(report.culprit.name == "VideoAccelerator.exe") }

        // Without the thread's trap frame the walk misreads the trap frame's P1Home (a handle)
        // as a return address: the boundary is what finds the caller WinDbg shows.
        let space = try dump.kernelAddressSpace()
        let objects = KernelObjects.read(from: dump, layout: KernelLayout.known(build: 19041, debuggerData: dump.debuggerData.data), space: space)
        let unbounded = StackWalker().walk(from: RegisterState(dump.header.context), symbolizer: Symbolizer(modules: objects.modules, space: space), space: space)
        #expect(unbounded.last?.rip != user.rip, "\(unbounded.map(\.symbol))")
    }

    /// A minidump of a corrupted-list crash names what the full dump names, when it captured
    /// the entry: the fault context's RBX held it, and the memory around it is a data block.
    @Test func aMinidumpOfACorruptedListNamesWhatTheFullDumpNames() throws {
        let full = try Self.analyze(.timerListCorruption(kind: .full))
        let mini = try Self.analyze(.timerListCorruption(kind: .triage))
        #expect(mini.culprit.name == "VideoAccelerator.exe", "\(mini.culprit)")
        #expect(mini.failureBucketId == full.failureBucketId)
        let entry = try #require(mini.evidence.first { $0.location.contains("in RBX of the fault context") }, "\(mini.evidence)")
        #expect(entry.text.contains("\\HDPServer\\VideoAccelerator.exe"))
        #expect(entry.attributedTo?.name == "VideoAccelerator.exe")
        // RAX held the "pointer" the entry gave: its own bytes are the path's first characters.
        #expect(mini.evidence.contains { $0.location == "RAX of the fault context" && $0.text == ["\\HDP"] }, "\(mini.evidence)")
        // The full dump found the entry walking the timer lists, and counts it once.
        #expect(full.evidence.filter { $0.text.contains("\\HDPServer\\VideoAccelerator.exe") }.count == 1, "\(full.evidence)")

        // Each report says what its culprit rests on, and where the dump holds it.
        let culpritBasis = { (report: CrashReport) in report.basis?.first { $0.conclusion.hasPrefix("culprit") }?.memory.joined() ?? "" }
        #expect(culpritBasis(mini).contains("in RBX of the fault context") && culpritBasis(mini).contains("(captured: minidump bytes"), "\(mini.basis ?? [])")
        #expect(culpritBasis(full).contains("timer list") && culpritBasis(full).contains("(in the dump)"), "\(full.basis ?? [])")
        #expect(mini.basis?.first?.memory.first?.contains("the CONTEXT record at") == true)
    }

    /// A filter driver faults while it holds a path in a stack buffer: the faulting frame's
    /// stack is decoded as text, in the full dump and in the minidump alike, and reported and
    /// compared (the signature's words), but it blames no one and overwrote nothing.
    @Test func textInTheFaultingFramesStackIsReadAndBlamesNoOne() throws {
        func filterCrash(_ kind: DumpDescription.DumpKind) -> DumpDescription {
            var description = DumpDescription.standard(kind: kind, layoutSeed: 8)
            description.memory = DumpDescription.vmMemory(gibibytes: 1)
            // A typical pre-create callback: RBX and RSI pushed, a 0x240-byte frame with a WCHAR buffer.
            description.modules.append(ModuleDescription(name: "cfsfilter.sys", timeDateStamp: 0x5E10_2030, checkSum: 0x1_2345, functions: [
                ForgedFunction(name: "CfPreCreate", exported: true, size: 0x400, prolog: [.pushNonvolatile(register: 3), .pushNonvolatile(register: 6), .allocate(bytes: 0x240)]),
                ForgedFunction(name: "CfDispatch", exported: true, size: 0x400, prolog: [.pushNonvolatile(register: 3), .allocate(bytes: 0x28)]),
            ]))
            let fault = CodeLocation("cfsfilter.sys", "CfPreCreate", 0x9A)
            description.processes[0].threads[0].stack = [
                CodeLocation("ntoskrnl.exe", "KeBugCheckEx", 0x30), CodeLocation("ntoskrnl.exe", "KiBugCheckDispatch", 0x69),
                CodeLocation("ntoskrnl.exe", "KiPageFault", 0x3B8), fault, CodeLocation("cfsfilter.sys", "CfDispatch", 0x41),
                CodeLocation("ntoskrnl.exe", "IofCallDriver", 0x55), CodeLocation("ntoskrnl.exe", "PspSystemThreadStartup", 0x55),
                CodeLocation("ntoskrnl.exe", "KiStartSystemThread", 0x28),
            ]
            description.bugCheckCode = 0x1E
            description.bugCheckParameters = [0xC000_0005, .code(fault), 0, 0x10]
            description.localText = [3: "\\??\\C:\\ProgramData\\Contoso\\agent.cfg"]
            return description
        }
        for kind in [DumpDescription.DumpKind.bitmapKernel, .triage] {
            let report = try Self.analyze(filterCrash(kind))
            let text = try #require(report.evidence.first { $0.onStack == true }, "\(kind): \(report.evidence)")
            #expect(text.text.contains("\\??\\C:\\ProgramData\\Contoso\\agent.cfg") && text.location.hasPrefix("the faulting frame's stack at"), "\(text)")
            #expect(report.culprit.name == "cfsfilter.sys" && report.failureBucketId.hasPrefix("0x1E_c0000005_cfsfilter+"), "\(report.culprit)")
            #expect(!report.advice.contains { $0.contains("overwritten") })
            #expect(report.signature.evidenceTokens.contains("agent.cfg") && report.signature.evidenceTokens.contains("contoso"))
            #expect(report.basis?.contains { $0.conclusion.hasPrefix("evidence") && $0.memory.joined().contains("the text at") } == true)
        }
    }

    /// An NMI arrives on its CPU's own interrupt stack (IST): the full dump's walk pops the
    /// machine frame there and goes on down the stack it interrupted, into the storage filter
    /// that spins; the minidump holds only the interrupt stack, blames the interrupted frame the
    /// machine frame names, and says the rest is not in it.
    @Test func anNMIOnItsOwnStackUnwindsIntoTheStackItInterrupted() throws {
        let full = try Self.analyze(.spinLockHang(kind: .full))
        let mini = try Self.analyze(.spinLockHang(kind: .triage))
        let nmi = try #require(full.stack.firstIndex { $0.symbol.hasPrefix("nt!KiNmiInterrupt") })
        let interrupted = full.stack[nmi + 1]
        #expect(interrupted.symbol.hasPrefix("vfstor!VfPollHardware") && interrupted.trust == .trapFrame)
        #expect(interrupted.rsp < full.stack[nmi].rsp, "the interrupted stack lies below the interrupt stack here: \(full.stack.map { "\($0.symbol) \(String($0.rsp, radix: 16))" })")
        #expect(full.stack.map(\.symbol).contains { $0.hasPrefix("nt!KiIdleLoop") } && full.stack.dropFirst().allSatisfy { $0.trust != .scan })
        #expect(full.culprit.name == "vfstor.sys" && mini.culprit.name == "vfstor.sys" && mini.failureBucketId == full.failureBucketId)
        #expect(mini.stack.last?.moduleOffsetKey == interrupted.moduleOffsetKey && mini.stack.last?.trust == .trapFrame, "\(mini.stack.map(\.symbol))")
        #expect(mini.notes.contains { $0.contains("the stack of the interrupted code") && $0.contains("not in the minidump") }, "\(mini.notes)")
    }

    /// KiInsertTimerTable kept the timer entry in a local instead of a register: the minidump
    /// captured the memory around the pointers in the faulting frame's stack, and the entry's
    /// Flink holds the value the fault tripped on (RAX), so it names the writer as the full dump
    /// does. The same entry without that tie (RAX held something else) is a pointer to text,
    /// which blames no one.
    @Test func aListEntryKeptInTheFaultingFramesStackIsRead() throws {
        var description = DumpDescription.timerListCorruption(kind: .triage)
        description.faultRegisters = [0: .value(0x0050_0044_0048_005C)]
        description.faultStack = [0x20: .timerListEntry(3)]
        let full = try Self.analyze(.timerListCorruption(kind: .full))
        let mini = try Self.analyze(description)
        let entry = try #require(mini.evidence.first { $0.location.contains("which the faulting frame's stack holds at") }, "\(mini.evidence)")
        #expect(entry.text.contains("\\HDPServer\\VideoAccelerator.exe") && entry.attributedTo?.name == "VideoAccelerator.exe")
        #expect(mini.culprit.name == "VideoAccelerator.exe" && mini.failureBucketId == full.failureBucketId, "\(mini.culprit)")

        description.faultRegisters = [0: .value(0x4141_4141_4141_4141)]
        let untied = try Self.analyze(description)
        #expect(!untied.evidence.contains { $0.location.contains("which the faulting frame's stack holds at") }, "\(untied.evidence)")
        #expect(untied.culprit.name != "VideoAccelerator.exe")
    }

    /// A minidump that did not capture the entry RBX points at says so, and blames no one on
    /// evidence it does not hold.
    @Test func aMinidumpWithoutTheCorruptedEntrySaysWhatIsMissing() throws {
        var description = DumpDescription.timerListCorruption(kind: .triage)
        description.triageCapturesContextMemory = false
        let mini = try Self.analyze(description)
        #expect(!mini.evidence.contains { $0.location.contains("list entry") }, "\(mini.evidence)")
        let note = try #require(mini.notes.first { $0.contains("did not capture the memory the fault context's registers point at") }, "\(mini.notes)")
        #expect(note.contains("RBX 0xffff"), "\(note)")
        #expect(mini.culprit.name != "VideoAccelerator.exe" && !mini.failureBucketId.contains("CORRUPTION"), "\(mini.culprit)")
        // RAX's own value still reads as the path's first characters.
        #expect(mini.evidence.contains { $0.location == "RAX of the fault context" && $0.text == ["\\HDP"] })
    }

    /// A walk that reaches user mode stops there: nothing on a user stack is scanned for
    /// kernel callers.
    @Test func aUserModeAddressEndsTheWalk() throws {
        var description = DumpDescription.timerListCorruption(kind: .full)
        description.memory = [0x1..<0x9F, 0x100..<0x8000]
        let dump = try KernelDump(source: Fixtures.source(Forge.dump(description)))
        let space = try dump.kernelAddressSpace()
        let objects = KernelObjects.read(from: dump, layout: KernelLayout.known(build: 19041, debuggerData: dump.debuggerData.data), space: space)
        let stack = StackWalker().walk(from: RegisterState(dump.header.context), symbolizer: Symbolizer(modules: objects.modules, space: space), space: space)
        #expect(stack.last?.rip == 0x1A4 && stack.filter { $0.rip >> 63 == 0 }.count == 1, "\(stack.map(\.symbol))")
    }

    /// Microsoft's images are linked reproducibly: their TimeDateStamp is a hash, however much it
    /// looks like a date, and no advice may rest on it; a third-party image's stays a date.
    @Test(arguments: [DumpDescription.DumpKind.full, .triage])
    func buildHashesAreNotDates(kind: DumpDescription.DumpKind) throws {
        let report = try Self.analyze(.standard(kind: kind))
        let stamps = Dictionary(uniqueKeysWithValues: report.modules.compactMap { module in module.timestamp.map { (module.name, $0) } })
        // 0x9C8F6A7B would be 2053, after the crash: a hash whatever the dump holds.
        #expect(stamps["ntoskrnl.exe"]?.meaning == .buildHash)
        #expect(stamps["ntoskrnl.exe"]?.reason.contains("after the crash") == true)
        // 0x5E2C3A11 reads as 2020-01-25, before the crash: only hal.dll's REPRO entry tells.
        if kind == .triage {
            #expect(stamps["hal.dll"]?.meaning == .unverifiedLinkTime, "a minidump holds no headers to read the REPRO entry from")
        } else {
            #expect(stamps["hal.dll"]?.meaning == .buildHash)
            #expect(stamps["hal.dll"]?.reason.contains("REPRO") == true)
            #expect(stamps["nvlddmkm.sys"]?.meaning == .linkTime, "its debug directory was read and has no REPRO entry")
        }
    }

    /// Reports stored before TimeDateStamps were classified hold a bare date string (or null)
    /// where the classification now goes: they still decode, as unverified dates.
    @Test func reportsStoredBeforeTimestampsWereClassifiedStillDecode() throws {
        let report = try Self.analyze(.displayDriverFault(kind: .full))
        var json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
        json["imageTimestamp"] = "2020-09-23T00:00:00Z"
        json["modules"] = (json["modules"] as? [[String: Any]] ?? []).map { module in
            var legacy = module
            legacy["timestamp"] = module["timeDateStamp"] as? Int == 0 ? NSNull() : "2020-09-23T00:00:00Z" as Any
            return legacy
        }
        let decoded = try JSONDecoder().decode(CrashReport.self, from: JSONSerialization.data(withJSONObject: json))
        #expect(decoded.imageTimestamp?.meaning == .unverifiedLinkTime && decoded.imageTimestamp?.date == "2020-09-23T00:00:00Z", "\(String(describing: decoded.imageTimestamp))")
        #expect(decoded.modules.count == report.modules.count && decoded.modules.allSatisfy { $0.timestamp?.meaning == .unverifiedLinkTime })
    }

    /// A culprit whose TimeDateStamp is a build hash gets no age in its advice.
    @Test func aCulpritWithABuildHashIsNotCalledOld() throws {
        var description = DumpDescription.displayDriverFault(kind: .full)
        let index = try #require(description.modules.firstIndex { $0.name == "nvlddmkm.sys" })
        description.modules[index].reproducible = true
        let report = try Self.analyze(description)
        #expect(report.imageName == "nvlddmkm.sys")
        #expect(report.imageTimestamp?.meaning == .buildHash)
        let advice = try #require(report.advice.first { $0.contains("nvlddmkm.sys") })
        #expect(advice.contains("build hash") && !advice.contains("2020") && !advice.contains("old"), "\(advice)")
        #expect(report.text.contains("IMAGE_TIMESTAMP") && !report.text.contains("2020-09-23"))
    }
}
