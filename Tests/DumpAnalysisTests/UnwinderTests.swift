import DumpAnalysis
import DumpFormat
import DumpForge
import DumpMemory
import Testing
import TestSupport

// The unwinder is checked two ways: against whole forged dumps, whose stacks StackForge lays
// out with the truth for every frame, and against small hand-built images in a flat address
// space, where each case (a RIP inside a prolog or an epilog, a frame pointer, a chain, bad
// unwind data) can be set up exactly.

/// Registers an unwinder must recover in each caller: RBX RBP RSI RDI R12-R15.
private let nonvolatile = [3, 5, 6, 7, 12, 13, 14, 15]

/// The standard machine as a 128 MiB full dump, forged once for the whole suite.
private let standardFull: (forged: ForgedDump, dump: KernelDump) = {
    let (forged, source) = Fixtures.standard(.full)
    return (forged, try! KernelDump(source: source))
}()

/// Every forged stack: each thread's, and each CPU's current context (which covers idle threads).
private func stacks(of kernel: ForgedKernel) -> [(label: String, stack: ForgedStack, top: UInt64?)] {
    var all: [(label: String, stack: ForgedStack, top: UInt64?)] = []
    for process in kernel.processes {
        for thread in process.threads {
            // StackForge starts 16-byte aligned below StackBase - 0x30 (StackBase - 0x190 in a
            // system call, to leave room for the KTRAP_FRAME); the outermost frame's return
            // address (0, or the trap frame's P1Home) sits just below that.
            let inSystemCall = thread.stack.frames.last?.location.function == "KiSystemServiceCopyEnd"
            all.append((label: "\(process.imageName) thread 0x\(String(thread.threadId, radix: 16))", stack: thread.stack,
                        top: (thread.stackBase - (inSystemCall ? 0x190 : 0x30)) & ~0xF))
        }
    }
    for (index, processor) in kernel.processors.enumerated() {
        all.append((label: "CPU \(index) context", stack: processor.context, top: nil))
    }
    return all
}

/// Unwinds every forged stack frame by frame from its innermost registers and compares each
/// recovered frame with the forge's record. Returns how many frames and trap frames it crossed.
@discardableResult
func unwindEveryStack(_ forged: ForgedDump, _ dump: KernelDump) throws -> (frames: Int, traps: Int) {
    let space = try dump.kernelAddressSpace()
    let images = try forged.kernel.modules.map { try PEImage(reading: space, base: $0.base) }
    var frames = 0, traps = 0
    for (label, stack, top) in stacks(of: forged.kernel) {
        try #require(!stack.frames.isEmpty, "\(label) has no frames")
        var state = RegisterState(gpr: stack.registers, rip: stack.rip)
        #expect(state.rip == stack.frames[0].rip && state.rsp == stack.frames[0].rsp, "\(label): the innermost state is frame 0")
        for (index, frame) in stack.frames.enumerated() {
            let place = "\(label), frame \(index) (\(frame.location.module)!\(frame.location.function)+0x\(String(frame.location.offset, radix: 16)))"
            let image = try #require(images.first { state.rip >= $0.base && state.rip - $0.base < UInt64($0.sizeOfImage) },
                                     "\(place): RIP 0x\(String(state.rip, radix: 16)) is in no module")
            let function = try image.runtimeFunction(containing: UInt32(state.rip - image.base), in: space)
            #expect(function != nil, "\(place): no RUNTIME_FUNCTION")
            let unwound = try unwindFrame(state, function: function, imageBase: image.base, space: space)
            #expect(unwound.poppedMachineFrame == frame.viaTrap, "\(place): machine frame popped \(unwound.poppedMachineFrame)")
            #expect(!unwound.simulatedEpilog, "\(place): no forged RIP is inside an epilog")
            if unwound.poppedMachineFrame { traps += 1 }
            state = unwound.caller
            frames += 1
            guard index + 1 < stack.frames.count else { break }
            let caller = stack.frames[index + 1]
            #expect(state.rip == caller.rip, "\(place): caller RIP 0x\(String(state.rip, radix: 16)), forged 0x\(String(caller.rip, radix: 16))")
            #expect(state.rsp == caller.rsp, "\(place): caller RSP 0x\(String(state.rsp, radix: 16)), forged 0x\(String(caller.rsp, radix: 16))")
            for register in nonvolatile {
                #expect(state.gpr[register] == caller.registers[register],
                        "\(place): caller \(Context64.registerNames[register]) 0x\(String(state.gpr[register], radix: 16)), forged 0x\(String(caller.registers[register], radix: 16))")
            }
            if state.rip != caller.rip || state.rsp != caller.rsp { break }  // one mistake is enough
        }
        // Past the outermost frame: the forge's "returns nowhere", at the top of the stack; in a
        // system call, the trap frame's P1Home (a handle), where a walker must stop instead.
        let inSystemCall = stack.frames.last?.location.function == "KiSystemServiceCopyEnd"
        #expect(state.rip == (inSystemCall ? 0x1A4 : 0), "\(label): the outermost frame returns to 0x\(String(state.rip, radix: 16))")
        if let top { #expect(state.rsp == top, "\(label): unwinding ends at RSP 0x\(String(state.rsp, radix: 16))") }
    }
    return (frames, traps)
}

@Suite struct UnwinderTests {
    // MARK: Forged dumps

    @Test func everyForgedStackUnwindsToTheForgesFrames() throws {
        let (forged, dump) = standardFull
        let crossed = try unwindEveryStack(forged, dump)
        #expect(crossed.traps >= 1, "the crashing thread goes through KiPageFault's machine frame")
        #expect(crossed.frames >= 20)
    }

    /// The crash scenarios add trap handlers without an error code (KiNmiInterrupt,
    /// KiRaiseSecurityCheckFailure), large frames, idle-thread stacks and more modules.
    @Test(arguments: ["0x1E", "0x3B", "0x80", "0x139", "0xD1"])
    func everyScenarioStackUnwinds(_ scenario: String) throws {
        var description: DumpDescription
        switch scenario {
        case "0x1E": description = .displayDriverFault(kind: .bitmapKernel, layoutSeed: 7)
        case "0x3B": description = .timerListCorruption(kind: .bitmapKernel, layoutSeed: 8, extraFrame: true)
        case "0x80": description = .spinLockHang(kind: .bitmapKernel, layoutSeed: 9)
        case "0x139": description = .listEntryCorruption(kind: .bitmapKernel, layoutSeed: 10)
        default: description = .networkDriverFault(kind: .bitmapKernel, layoutSeed: 11, extraFrame: true)
        }
        description.memory = [0x1..<0x9F, 0x100..<0x8000]
        let forged = Forge.dump(description)
        let dump = try KernelDump(source: Fixtures.source(forged))
        let crossed = try unwindEveryStack(forged, dump)
        #expect(crossed.traps >= 1)
    }

    @Test func exportsNameTheForgedFunctions() throws {
        let (forged, dump) = standardFull
        let space = try dump.kernelAddressSpace()
        let nt = forged.kernel.modules[0]
        let image = try PEImage(reading: space, base: nt.base)
        #expect(image.sizeOfImage == nt.size)
        #expect(image.timeDateStamp == nt.timeDateStamp)
        #expect(image.checkSum == nt.checkSum)
        #expect(image.sections.map(\.name) == [".text", ".rdata", ".pdata"])
        #expect(image.sections[0].characteristics == 0x6000_0020)

        let exports = try image.exports(in: space)
        let bugCheck = try #require(exports.first { $0.name == "KeBugCheckEx" })
        #expect(nt.base + UInt64(bugCheck.rva) == nt.functions["KeBugCheckEx"]?.lowerBound)
        #expect(exports.count == nt.functions.count, "every ntoskrnl function is exported")
        #expect(exports.map(\.rva) == exports.map(\.rva).sorted())
        for export in exports {
            #expect(nt.functions[export.name]?.lowerBound == nt.base + UInt64(export.rva), "\(export.name)")
        }

        let nvidia = try #require(forged.kernel.modules.first { $0.name == "nvlddmkm.sys" })
        #expect(try PEImage(reading: space, base: nvidia.base).exports(in: space).isEmpty, "the NVIDIA driver exports nothing")
    }

    @Test func runtimeFunctionFindsEachFunctionThroughHeadersAndKLDR() throws {
        let (forged, dump) = standardFull
        let space = try dump.kernelAddressSpace()
        for module in forged.kernel.modules {
            let image = try PEImage(reading: space, base: module.base)
            // KLDR_DATA_TABLE_ENTRY.ExceptionTable (0x10) and ExceptionTableSize (0x18).
            let kldr = try PEImage.exceptionTable(imageBase: module.base, exceptionTable: space.u64(module.entry + 0x10),
                                                  size: space.u32(module.entry + 0x18))
            #expect(try image.exceptionTable() == kldr, "\(module.name): headers and KLDR agree on .pdata")
            #expect(kldr.count == module.functions.count)
            for (name, range) in module.functions {
                let begin = UInt32(range.lowerBound - module.base), end = UInt32(range.upperBound - module.base)
                for rva in [begin, begin + 1, begin + (end - begin) / 2, end - 1] {
                    let found = try image.runtimeFunction(containing: rva, in: space)
                    #expect(found?.beginAddress == begin && found?.endAddress == end, "\(module.name)!\(name) at RVA 0x\(String(rva, radix: 16))")
                    #expect(try kldr.runtimeFunction(containing: rva, in: space) == found)
                }
            }
            #expect(try image.runtimeFunction(containing: 0x10, in: space) == nil, "the headers are in no function")
            #expect(try image.runtimeFunction(containing: image.sizeOfImage - 1, in: space) == nil)
        }
    }

    // MARK: Unwind data

    @Test func everyUnwindOpDecodes() throws {
        // Version 2 with a frame pointer (RBP, 2 * 16) and a chained parent; slots in stored order.
        let slots: [UInt16] = [
            0x1609, 0x0000,          // EPILOG (v2), CodeOffset 9, OpInfo 1
            0xF930, 0x0010, 0x0002,  // SAVE_XMM128_FAR xmm15, 0x20010
            0x6828, 0x0004,          // SAVE_XMM128 xmm6, 4 * 16
            0xE520, 0x0008, 0x0010,  // SAVE_NONVOL_FAR r14, 0x100008
            0x3418, 0x000A,          // SAVE_NONVOL rbx, 10 * 8
            0x0310,                  // SET_FPREG
            0x110C, 0x3458, 0x0012,  // ALLOC_LARGE, unscaled 0x123458
            0x0108, 0x0200,          // ALLOC_LARGE, 0x200 * 8
            0x4204,                  // ALLOC_SMALL 4 * 8 + 8
            0xC002,                  // PUSH_NONVOL r12
            0x1A00,                  // PUSH_MACHFRAME with error code
        ]
        let parent = RuntimeFunction(beginAddress: 0x1000, endAddress: 0x1200, unwindData: 0x3000)
        let bytes = unwindBytes(version: 2, flags: 4, prolog: 0x30, frame: 0x25, slots: slots, tail: runtimeFunctionBytes(parent))
        let info = try UnwindInfo(bytes: bytes)
        #expect(info.version == 2 && info.flags == 4 && info.isChained)
        #expect(info.sizeOfProlog == 0x30 && info.countOfCodes == 21)
        #expect(info.frameRegister == 5 && info.frameOffset == 2 && info.frameOffsetBytes == 0x20)
        #expect(info.chainedFunction == parent)
        #expect(info.handler == nil)
        #expect(info.codes == [
            UnwindCode(codeOffset: 0x09, op: 6, operation: .epilog(info: 1, operand: 0), slots: 2),
            UnwindCode(codeOffset: 0x30, op: 9, operation: .saveXMM128(register: 15, offset: 0x2_0010), slots: 3),
            UnwindCode(codeOffset: 0x28, op: 8, operation: .saveXMM128(register: 6, offset: 0x40), slots: 2),
            UnwindCode(codeOffset: 0x20, op: 5, operation: .saveNonvolatile(register: 14, offset: 0x10_0008), slots: 3),
            UnwindCode(codeOffset: 0x18, op: 4, operation: .saveNonvolatile(register: 3, offset: 0x50), slots: 2),
            UnwindCode(codeOffset: 0x10, op: 3, operation: .setFramePointer, slots: 1),
            UnwindCode(codeOffset: 0x0C, op: 1, operation: .allocateLarge(bytes: 0x12_3458), slots: 3),
            UnwindCode(codeOffset: 0x08, op: 1, operation: .allocateLarge(bytes: 0x1000), slots: 2),
            UnwindCode(codeOffset: 0x04, op: 2, operation: .allocateSmall(bytes: 40), slots: 1),
            UnwindCode(codeOffset: 0x02, op: 0, operation: .pushNonvolatile(register: 12), slots: 1),
            UnwindCode(codeOffset: 0x00, op: 10, operation: .pushMachineFrame(errorCode: true), slots: 1),
        ])

        // The same record read through an address space, at a DWORD-aligned RVA.
        let memory = FlatMemory()
        memory.map(labBase + 0x2000, bytes)
        #expect(try UnwindInfo(reading: memory, imageBase: labBase, rva: 0x2000) == info)

        // Version 1 with an exception handler: its RVA follows the padded slots.
        let handled = try UnwindInfo(bytes: unwindBytes(version: 1, flags: 1, prolog: 4, frame: 0, slots: [0x3204], tail: le32(0x2340)))
        #expect(handled.codes == [UnwindCode(codeOffset: 4, op: 2, operation: .allocateSmall(bytes: 32), slots: 1)])
        #expect(handled.handler == 0x2340 && handled.chainedFunction == nil)
    }

    @Test func badUnwindDataIsReportedAsCorrupt() throws {
        let cases: [(String, [UInt8])] = [
            ("version 3", unwindBytes(version: 3, flags: 0, prolog: 0, frame: 0, slots: [])),
            ("version 0", unwindBytes(version: 0, flags: 0, prolog: 0, frame: 0, slots: [])),
            ("unknown op 11", unwindBytes(version: 1, flags: 0, prolog: 0, frame: 0, slots: [0x0B00])),
            ("op 7 (spare)", unwindBytes(version: 1, flags: 0, prolog: 0, frame: 0, slots: [0x0700, 0, 0])),
            ("op 6 in version 1", unwindBytes(version: 1, flags: 0, prolog: 0, frame: 0, slots: [0x1609, 0])),
            ("SAVE_NONVOL past CountOfCodes", unwindBytes(version: 1, flags: 0, prolog: 4, frame: 0, slots: [0x3404])),
            ("ALLOC_LARGE OpInfo 2", unwindBytes(version: 1, flags: 0, prolog: 4, frame: 0, slots: [0x2104, 0, 0])),
            ("PUSH_MACHFRAME OpInfo 2", unwindBytes(version: 1, flags: 0, prolog: 0, frame: 0, slots: [0x2A00])),
            ("SET_FPREG without a frame register", unwindBytes(version: 1, flags: 0, prolog: 4, frame: 0, slots: [0x0304])),
            ("RSP as the frame register", unwindBytes(version: 1, flags: 0, prolog: 4, frame: 0x04, slots: [0x0304])),
            ("cut short", Array(unwindBytes(version: 1, flags: 0, prolog: 4, frame: 0, slots: [0x0204, 0x0202, 0x3201, 0x0200]).prefix(8))),
            ("chain info cut short", unwindBytes(version: 1, flags: 4, prolog: 0, frame: 0, slots: [], tail: [0, 0x10, 0, 0])),
        ]
        for (name, bytes) in cases {
            let error = #expect(throws: DumpError.self, "\(name)") { try UnwindInfo(bytes: bytes) }
            #expect(error?.code == .corrupt, "\(name): \(String(describing: error))")
        }

        // A chain that leads back to itself ends after 32 links instead of looping.
        let memory = FlatMemory()
        let looping = RuntimeFunction(beginAddress: 0x1000, endAddress: 0x1100, unwindData: 0x100)
        memory.map(labBase + 0x100, unwindBytes(version: 1, flags: 4, prolog: 0, frame: 0, slots: [], tail: runtimeFunctionBytes(looping)))
        memory.map(labBase + 0x1000, [UInt8](repeating: 0x90, count: 0x100))
        let chainError = #expect(throws: DumpError.self) { try UnwindInfo.chain(for: looping, imageBase: labBase, in: memory) }
        #expect(chainError?.code == .corrupt)
        let state = RegisterState(gpr: [UInt64](repeating: 0, count: 16), rip: labBase + 0x1010)
        #expect(throws: DumpError.self) { try unwindFrame(state, function: looping, imageBase: labBase, space: memory) }

        #expect(throws: DumpError.self, "UNWIND_INFO must be DWORD aligned") {
            try UnwindInfo(reading: memory, imageBase: labBase, rva: 0x102)
        }
        #expect(throws: MemoryError.self, "an absent page is a MemoryError, not corruption") {
            try UnwindInfo(reading: memory, imageBase: labBase, rva: 0x8000)
        }
    }

    // MARK: Hand-built frames

    @Test func aRIPInsideThePrologUndoesOnlyWhatRan() throws {
        // push rbx (CodeOffset 1), push rsi (2), sub rsp, 0x28 (6).
        let lab = try Lab([ForgedFunction(name: "Framed", size: 0x40, prolog: [.pushNonvolatile(register: 3), .pushNonvolatile(register: 6), .allocate(bytes: 0x28)])])
        let entry = labStackTop - 0x100  // RSP on entry: the return address
        lab.memory.write64(entry, returnAddress)
        lab.memory.write64(entry - 8, callerRBX)
        lab.memory.write64(entry - 16, callerRSI)
        let cases: [(offset: UInt32, rsp: UInt64, rbx: Bool, rsi: Bool)] = [
            (0, entry, false, false),              // nothing ran yet
            (1, entry - 8, true, false),           // push rbx ran
            (2, entry - 16, true, true),           // both pushes ran
            (6, entry - 16 - 0x28, true, true),    // the whole prolog ran (SizeOfProlog)
            (0x20, entry - 16 - 0x28, true, true), // the body
        ]
        for item in cases {
            let state = calleeState(rip: lab.address("Framed", item.offset), rsp: item.rsp)
            let frame = try lab.unwind(state)
            #expect(frame.caller.rip == returnAddress, "prolog offset \(item.offset)")
            #expect(frame.caller.rsp == entry + 8, "prolog offset \(item.offset)")
            #expect(frame.caller.gpr[3] == (item.rbx ? callerRBX : state.gpr[3]), "prolog offset \(item.offset): rbx")
            #expect(frame.caller.gpr[6] == (item.rsi ? callerRSI : state.gpr[6]), "prolog offset \(item.offset): rsi")
            #expect(!frame.poppedMachineFrame && !frame.simulatedEpilog)
        }
    }

    @Test func aRIPInsideTheEpilogIsSimulated() throws {
        // The forge ends the function with add rsp, 0x28; pop rsi; pop rbx; ret (7 bytes).
        let lab = try Lab([ForgedFunction(name: "Framed", size: 0x40, prolog: [.pushNonvolatile(register: 3), .pushNonvolatile(register: 6), .allocate(bytes: 0x28)])])
        let entry = labStackTop - 0x100
        lab.memory.write64(entry, returnAddress)
        lab.memory.write64(entry - 8, callerRBX)
        lab.memory.write64(entry - 16, callerRSI)
        let cases: [(offset: UInt32, rsp: UInt64, rbx: Bool, rsi: Bool)] = [
            (0x39, entry - 16 - 0x28, true, true),  // at add rsp
            (0x3D, entry - 16, true, true),         // at pop rsi
            (0x3E, entry - 8, true, false),         // at pop rbx: rsi is already the caller's
            (0x3F, entry, false, false),            // at ret
        ]
        for item in cases {
            let state = calleeState(rip: lab.address("Framed", item.offset), rsp: item.rsp)
            let frame = try lab.unwind(state)
            #expect(frame.simulatedEpilog, "epilog offset 0x\(String(item.offset, radix: 16))")
            #expect(frame.caller.rip == returnAddress && frame.caller.rsp == entry + 8, "epilog offset 0x\(String(item.offset, radix: 16))")
            #expect(frame.caller.gpr[3] == (item.rbx ? callerRBX : state.gpr[3]))
            #expect(frame.caller.gpr[6] == (item.rsi ? callerRSI : state.gpr[6]))
        }
    }

    @Test func machineFramesGiveTheInterruptedRIPAndRSP() throws {
        let withCode: [PrologStep] = [.pushMachineFrame(errorCode: true), .pushNonvolatile(register: 5), .allocate(bytes: 0x158), .setFramePointer(register: 5, offset: 8)]
        let withoutCode: [PrologStep] = [.pushMachineFrame(errorCode: false), .allocate(bytes: 8), .pushNonvolatile(register: 5), .allocate(bytes: 0x158), .setFramePointer(register: 5, offset: 8)]
        let lab = try Lab([ForgedFunction(name: "KiPageFault", size: 0x80, prolog: withCode),
                           ForgedFunction(name: "KiNmiInterrupt", size: 0x80, prolog: withoutCode)])
        let interruptedRSP = labStackTop - 0x100, interruptedRIP: UInt64 = 0xFFFF_F806_2000_5678

        for (name, errorCode) in [("KiPageFault", true), ("KiNmiInterrupt", false)] {
            // The CPU's push: [error code], RIP, CS, RFLAGS, RSP, SS.
            let machineFrame = interruptedRSP - (errorCode ? 48 : 40)
            let ripSlot = machineFrame + (errorCode ? 8 : 0)
            lab.memory.write64(machineFrame, 0x2)
            lab.memory.write64(ripSlot, interruptedRIP)
            lab.memory.write64(ripSlot + 8, 0x10)
            lab.memory.write64(ripSlot + 16, 0x10282)
            lab.memory.write64(ripSlot + 24, interruptedRSP)
            lab.memory.write64(ripSlot + 32, 0x18)
            let rbpSlot = machineFrame - (errorCode ? 8 : 16)
            lab.memory.write64(rbpSlot, callerRBP)
            let fixedBase = rbpSlot - 0x158
            let prologSize: UInt32 = errorCode ? 16 : 20

            // (prolog offset, RSP, RBP, RBP restored)
            let cases: [(UInt32, UInt64, UInt64, Bool)] = [
                (0, machineFrame, callerRBP, false),                          // only the CPU's push happened
                (prologSize - 8, fixedBase, callerRBP, true),                 // before lea rbp: RBP is not the frame yet
                (prologSize, fixedBase, fixedBase + 0x80, true),              // the prolog is done
                (0x40, fixedBase - 0x300, fixedBase + 0x80, true),            // RSP moved further: RBP finds the frame
            ]
            for (offset, rsp, rbp, restored) in cases {
                var state = calleeState(rip: lab.address(name, offset), rsp: rsp)
                state.rbp = rbp
                let frame = try lab.unwind(state)
                #expect(frame.poppedMachineFrame, "\(name)+\(offset)")
                #expect(frame.caller.rip == interruptedRIP && frame.caller.rsp == interruptedRSP, "\(name)+\(offset)")
                #expect(frame.caller.rbp == (restored ? callerRBP : rbp), "\(name)+\(offset): rbp")
            }
        }
    }

    @Test func savesAreReadFromTheFixedAllocationBase() throws {
        // push rbp (1); sub rsp, 0x40 (5); lea rbp, [rsp+0x20] (10); mov [rsp+0x50], rbx (15)
        let framed: [PrologStep] = [.pushNonvolatile(register: 5), .allocate(bytes: 0x40), .setFramePointer(register: 5, offset: 2), .saveNonvolatile(register: 3, offset: 0x50)]
        // push rbp (1); sub rsp, 0x40 (5); mov [rsp+0x50], rbx (10); lea rbp, [rsp+0x20] (15)
        let savedFirst: [PrologStep] = [.pushNonvolatile(register: 5), .allocate(bytes: 0x40), .saveNonvolatile(register: 3, offset: 0x50), .setFramePointer(register: 5, offset: 2)]
        // sub rsp, 0x48; mov [rsp+0x50], rbx; mov [rsp+0x80], r14 — no frame pointer
        let plain: [PrologStep] = [.allocate(bytes: 0x48), .saveNonvolatile(register: 3, offset: 0x50), .saveNonvolatile(register: 14, offset: 0x80)]
        let lab = try Lab([ForgedFunction(name: "Framed", size: 0x40, prolog: framed),
                           ForgedFunction(name: "SavedFirst", size: 0x40, prolog: savedFirst),
                           ForgedFunction(name: "Plain", size: 0x40, prolog: plain)])
        let entry = labStackTop - 0x100
        lab.memory.write64(entry, returnAddress)
        lab.memory.write64(entry - 8, callerRBP)
        let fixedBase = entry - 8 - 0x40
        lab.memory.write64(fixedBase + 0x50, callerRBX)

        // Framed, in the body with RSP moved (an alloca): RBP - 0x20 is the base, not RSP.
        var state = calleeState(rip: lab.address("Framed", 0x20), rsp: fixedBase - 0x200)
        state.rbp = fixedBase + 0x20
        var frame = try lab.unwind(state)
        #expect(frame.caller.rip == returnAddress && frame.caller.rsp == entry + 8)
        #expect(frame.caller.gpr[3] == callerRBX && frame.caller.rbp == callerRBP)

        // Framed, after lea but before the save: the save is not undone.
        state = calleeState(rip: lab.address("Framed", 10), rsp: fixedBase)
        state.rbp = fixedBase + 0x20
        frame = try lab.unwind(state)
        #expect(frame.caller.rip == returnAddress && frame.caller.gpr[3] == state.gpr[3] && frame.caller.rbp == callerRBP)

        // SavedFirst, after the save but before lea: RBP still holds the caller's value, so the
        // base is RSP.
        state = calleeState(rip: lab.address("SavedFirst", 10), rsp: fixedBase)
        state.rbp = callerRBP
        frame = try lab.unwind(state)
        #expect(frame.caller.rip == returnAddress && frame.caller.rsp == entry + 8)
        #expect(frame.caller.gpr[3] == callerRBX)

        // Plain: both saves from RSP.
        let plainEntry = labStackTop - 0x400
        lab.memory.write64(plainEntry, returnAddress)
        let plainBase = plainEntry - 0x48
        lab.memory.write64(plainBase + 0x50, callerRBX)
        lab.memory.write64(plainBase + 0x80, 0xCA11_E500_0000_000E)
        frame = try lab.unwind(calleeState(rip: lab.address("Plain", 0x30), rsp: plainBase))
        #expect(frame.caller.rip == returnAddress && frame.caller.rsp == plainEntry + 8)
        #expect(frame.caller.gpr[3] == callerRBX && frame.caller.gpr[14] == 0xCA11_E500_0000_000E)
    }

    @Test func chainedInfoUndoesTheParentsPrologToo() throws {
        let lab = try Lab([ForgedFunction(name: "Parent", size: 0x40, prolog: [.pushNonvolatile(register: 7), .allocate(bytes: 0x20)]),
                           ForgedFunction(name: "Parent$fragment", exported: false, size: 0x40, prolog: [.pushNonvolatile(register: 12)], chainedTo: "Parent")])
        let entry = labStackTop - 0x100
        lab.memory.write64(entry, returnAddress)
        lab.memory.write64(entry - 8, callerRDI)
        lab.memory.write64(entry - 0x30, callerR12)

        let fragment = try #require(try lab.function("Parent$fragment"))
        let chain = try UnwindInfo.chain(for: fragment, imageBase: labBase, in: lab.memory)
        #expect(chain.count == 2 && chain[0].isChained && !chain[1].isChained)
        #expect(chain[0].chainedFunction == (try lab.function("Parent")))

        // In the fragment's body: its push, then all of the parent's prolog.
        var frame = try lab.unwind(calleeState(rip: lab.address("Parent$fragment", 0x10), rsp: entry - 0x30))
        #expect(frame.caller.rip == returnAddress && frame.caller.rsp == entry + 8)
        #expect(frame.caller.gpr[12] == callerR12 && frame.caller.gpr[7] == callerRDI)

        // At the fragment's first byte: its own push has not run, the parent's prolog has.
        let state = calleeState(rip: lab.address("Parent$fragment", 0), rsp: entry - 0x28)
        frame = try lab.unwind(state)
        #expect(frame.caller.rip == returnAddress && frame.caller.rsp == entry + 8)
        #expect(frame.caller.gpr[12] == state.gpr[12] && frame.caller.gpr[7] == callerRDI)
    }

    @Test func aLeafFunctionReturnsFromRSP() throws {
        let memory = FlatMemory()
        let rsp = labStackTop - 0x100
        memory.map(labStackTop - 0x1000, [UInt8](repeating: 0, count: 0x1000))
        memory.write64(rsp, returnAddress)
        let frame = try unwindFrame(calleeState(rip: 0xFFFF_F806_1234_0000, rsp: rsp), function: nil, imageBase: labBase, space: memory)
        #expect(frame.caller.rip == returnAddress && frame.caller.rsp == rsp + 8 && !frame.poppedMachineFrame)
        // A return address on an absent page is a MemoryError.
        #expect(throws: MemoryError.self) {
            try unwindFrame(calleeState(rip: 0, rsp: 0xFFFF_C000_8000_0000), function: nil, imageBase: labBase, space: memory)
        }
    }

    @Test func indirectRuntimeFunctionsAreFollowed() throws {
        let memory = FlatMemory()
        let primary = RuntimeFunction(beginAddress: 0x1000, endAddress: 0x1100, unwindData: 0x3000)
        let indirect = RuntimeFunction(beginAddress: 0x1100, endAddress: 0x1180, unwindData: 0x2000 | 1)
        let tail = RuntimeFunction(beginAddress: 0x1180, endAddress: 0x1200, unwindData: 0x3010)
        memory.map(labBase + 0x2000, runtimeFunctionBytes(primary))
        memory.map(labBase + 0x4000, runtimeFunctionBytes(primary) + runtimeFunctionBytes(indirect) + runtimeFunctionBytes(tail))
        let table = try ExceptionTable(imageBase: labBase, address: labBase + 0x4000, size: 36)
        #expect(table.count == 3)
        #expect(try table.runtimeFunction(containing: 0x1150, in: memory) == primary)
        #expect(try table.runtimeFunction(containing: 0x11FF, in: memory) == tail)
        #expect(try table.runtimeFunction(containing: 0x1200, in: memory) == nil)
        #expect(try table.runtimeFunction(containing: 0x0FFF, in: memory) == nil)

        let huge = #expect(throws: DumpError.self) { try ExceptionTable(imageBase: labBase, address: labBase + 0x4000, size: .max) }
        #expect(huge?.code == .corrupt)
    }

    // MARK: PE headers

    @Test func badHeadersAreCorruptAndMissingPagesAreMemoryErrors() throws {
        let image = forgePEImage(name: "lab.sys", timeDateStamp: 0x6000_0000, checkSum: 0,
                                 functions: [ForgedFunction(name: "DriverEntry", size: 0x40)], preferredBase: labBase)
        // e_lfanew 0x80: the file header at 0x84, the optional header at 0x98, its directories at 0x108.
        let cases: [(String, (inout [UInt8]) -> Void)] = [
            ("no MZ", { $0[0] = 0x4E }),
            ("e_lfanew far away", { put32(&$0, 0x3C, 0x2_0000) }),
            ("no PE signature", { $0[0x81] = 0x46 }),
            ("i386 machine", { put16(&$0, 0x84, 0x14C) }),
            ("200 sections", { put16(&$0, 0x86, 200) }),
            ("PE32 magic", { put16(&$0, 0x98, 0x10B) }),
            ("17 data directories", { put32(&$0, 0x98 + 108, 17) }),
            ("optional header too short", { put16(&$0, 0x94, 0x70) }),
            ("SizeOfImage 0", { put32(&$0, 0x98 + 56, 0) }),
        ]
        for (name, damage) in cases {
            var bytes = image.bytes
            damage(&bytes)
            let memory = FlatMemory()
            memory.map(labBase, bytes)
            let error = #expect(throws: DumpError.self, "\(name)") { try PEImage(reading: memory, base: labBase) }
            #expect(error?.code == .corrupt, "\(name): \(String(describing: error))")
        }

        // Only the DOS header is present: the PE header's page is missing.
        let partial = FlatMemory()
        partial.map(labBase, Array(image.bytes.prefix(0x40)))
        #expect(throws: MemoryError.self) { try PEImage(reading: partial, base: labBase) }

        // An export directory whose counts cannot fit in it.
        var bytes = image.bytes
        let exportRVA = Int(le32(bytes, 0x108))
        put32(&bytes, exportRVA + 24, 0x7FFF_FFFF)
        let memory = FlatMemory()
        memory.map(labBase, bytes)
        let pe = try PEImage(reading: memory, base: labBase)
        let error = #expect(throws: DumpError.self) { try pe.exports(in: memory) }
        #expect(error?.code == .corrupt)

        // The undamaged image reads back as forged.
        let good = FlatMemory()
        good.map(labBase, image.bytes)
        let clean = try PEImage(reading: good, base: labBase)
        #expect(clean.exceptionDirectory == PEImage.DataDirectory(virtualAddress: image.exceptionTableRVA, size: image.exceptionTableSize))
        #expect(try clean.exports(in: good) == [PEImage.Export(name: "DriverEntry", rva: image.functions["DriverEntry"]!.lowerBound)])
    }
}
