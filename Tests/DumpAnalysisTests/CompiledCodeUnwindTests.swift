import DumpAnalysis
import DumpForge
import DumpMemory
import Foundation
import Testing
import TestSupport

/// The unwinder on code a real compiler and assembler built (Tests/Fixtures/compiled).
@Suite struct CompiledCodeUnwindTests {
    /// One of the built images (`name`.sys) and the return sites llvm-objdump listed for it
    /// (`name`.sites: FUNCTION OFFSET CALLEE).
    struct BuiltImage {
        let name: String
        let image: [UInt8]
        let sites: [[String]]

        init(_ name: String) throws {
            self.name = name
            image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.compiled(name + ".sys"))))
            sites = try String(contentsOfFile: Fixtures.compiled(name + ".sites"), encoding: .utf8)
                .split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        }

        /// The return site after `function`'s call to `callee` (any call, when nil).
        func returnSite(in function: String, after callee: String? = nil) throws -> CodeLocation {
            let line = try #require(sites.first { $0[0] == function && (callee == nil || $0[2] == callee) }, "\(name).sites lists no call from \(function) to \(callee ?? "anything")")
            return CodeLocation(name + ".sys", function, try #require(UInt32(line[1].dropFirst(2), radix: 16)))
        }

        /// A full dump whose extra System thread `threadId` has `chain` (innermost first), laid
        /// out by the image's own unwind codes. Every stack is unwound against the forge's truth,
        /// registers included, and the walker must name each frame of the thread's stack.
        func forge(_ chain: [CodeLocation], threadId: UInt64, seed: UInt64) throws -> (thread: ForgedKernel.Thread, modules: [LoadedModule], symbolizer: Symbolizer) {
            var description = DumpDescription.standard(kind: .full, layoutSeed: seed)
            description.memory = [0x1..<0x9F, 0x100..<0x8000]
            description.modules.append(ModuleDescription(name: name + ".sys", compiledImage: image))
            description.processes[0].threads.append(ThreadDescription(threadId: threadId, stack: chain))
            let forged = Forge.dump(description)
            let dump = try KernelDump(source: Fixtures.source(forged))
            try unwindEveryStack(forged, dump)
            let thread = try #require(forged.kernel.processes[0].threads.first { $0.threadId == threadId })
            let space = try dump.kernelAddressSpace()
            let modules = KernelObjects.read(from: dump, layout: KernelLayout.known(build: 19041, debuggerData: dump.debuggerData.data), space: space).modules
            let symbolizer = Symbolizer(modules: modules, space: space)
            let walked = StackWalker().walk(from: RegisterState(gpr: thread.stack.registers, rip: thread.stack.rip), symbolizer: symbolizer, space: space)
            #expect(walked.map(\.symbol) == chain.map { "\($0.module == "ntoskrnl.exe" ? "nt" : name)!\($0.function)+0x\(String($0.offset, radix: 16))" })
            #expect(walked.dropFirst().allSatisfy { $0.trust == .unwindInfo }, "\(walked.map(\.trust))")
            return (thread, modules, symbolizer)
        }
    }

    /// Where a system worker thread starts.
    static let threadStart = [CodeLocation("ntoskrnl.exe", "IofCallDriver", 0x55), CodeLocation("ntoskrnl.exe", "PspSystemThreadStartup", 0x55),
                              CodeLocation("ntoskrnl.exe", "KiStartSystemThread", 0x28)]

    /// Stacks through code clang built (ccdriver.c): pushes, a saved XMM register, a 64 KiB
    /// frame, a frame pointer under an alloca, a leaf and a tail call, laid out by the image's
    /// own unwind codes at the return sites llvm-objdump lists. Every frame must unwind to the
    /// forge's truth, registers included, and the walker must name each one.
    @Test func stacksThroughARealCompilersCodeUnwindExactly() throws {
        let built = try BuiltImage("ccdriver")
        // CcTail jumps to CcSaves, so CcSaves returns straight into CcDispatch.
        let chain = [CodeLocation("ntoskrnl.exe", "KeBugCheckEx", 0x30),
                     try built.returnSite(in: "CcCrash", after: "(indirect)"), try built.returnSite(in: "CcFloat", after: "CcCrash"),
                     try built.returnSite(in: "CcLarge", after: "CcFloat"), try built.returnSite(in: "CcFramePointer", after: "CcLarge"),
                     try built.returnSite(in: "CcSaves", after: "CcFramePointer"), try built.returnSite(in: "CcDispatch", after: "CcTail")] + Self.threadStart
        let thread = try built.forge(chain, threadId: 0x9C, seed: 12).thread
        // The frame pointer carried the walk across the alloca: CcFramePointer's callee frame
        // lies 0x60 below the fixed frame RBP marks.
        let framePointerFrame = try #require(thread.stack.frames.first { $0.location.function == "CcFramePointer" })
        #expect(framePointerFrame.registers[5] == framePointerFrame.rsp + 0x60, "RBP marks the fixed frame above the alloca")
    }

    /// Chained unwind info and mov-saved registers from a real assembler (ccchained.s, linked by
    /// lld-link): the cold fragment CcChainedCold pushes RSI, and its RUNTIME_FUNCTION chains to
    /// CcChained's, whose prolog (push RBX, 0x30 bytes) ran before it; its caller CcSavesByMove
    /// saves RDI and R12 with mov (UWOP_SAVE_NONVOL). LLVM gives the parent the whole procedure's
    /// range, overlapping the fragment's; the lookup must take the fragment's entry, and the walk
    /// must undo both prologs to reach CcCallChained with RBX and RSI restored.
    @Test func chainedUnwindInfoFromARealAssemblerUnwindsExactly() throws {
        let built = try BuiltImage("ccchained")
        let chain = [CodeLocation("ntoskrnl.exe", "KeBugCheckEx", 0x30), try built.returnSite(in: "CcChainedCold"),
                     try built.returnSite(in: "CcSavesByMove"), try built.returnSite(in: "CcCallChained")] + Self.threadStart
        let (thread, modules, symbolizer) = try built.forge(chain, threadId: 0xA0, seed: 14)
        let module = try #require(modules.first { $0.name == "ccchained.sys" })
        let fragment = try #require(symbolizer.runtimeFunction(at: thread.stack.frames[1].rip - 1)?.1)
        #expect(fragment.beginAddress == UInt32(thread.stack.frames[1].rip - module.base) - chain[1].offset, "the fragment's own entry, not its parent's")
        let saves = try #require(thread.stack.frames.first { $0.location.function == "CcSavesByMove" })
        #expect(saves.registers[7] != thread.stack.frames[3].registers[7] && saves.registers[12] != thread.stack.frames[3].registers[12],
                "RDI and R12 change in CcSavesByMove, so unwindEveryStack's register check covers the mov saves")
    }
}
