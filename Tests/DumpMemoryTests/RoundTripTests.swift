import DumpFormat
import DumpForge
@testable import DumpMemory
import Testing
import TestSupport

/// Forge -> parse for every dump kind: the parser must find what the forge put there.
@Suite struct RoundTripTests {
    static let memoryKinds: [DumpDescription.DumpKind] = [.full, .bitmapFull, .bitmapKernel, .rangeKernel, .rangeKernelAndUser, .rangeComplete]

    @Test(arguments: memoryKinds)
    func debuggerDataIsFoundInClear(kind: DumpDescription.DumpKind) throws {
        let (forged, source) = Fixtures.standard(kind)
        let dump = try KernelDump(source: source)
        let kdbg = try #require(dump.debuggerData.data)
        #expect(kdbg.size == 0x380)
        #expect(kdbg.kernBase == forged.kernel.kernelBase)
        #expect(kdbg.psLoadedModuleList == forged.kernel.psLoadedModuleList)
        #expect(kdbg.psActiveProcessHead == forged.kernel.psActiveProcessHead)
        #expect(kdbg.kiProcessorBlock == forged.kernel.kiProcessorBlock)
        #expect(kdbg.pteBase == forged.kernel.pteBase)
        #expect(kdbg.sizeEProcess == 0xA40)
        #expect(kdbg.offsetPrcbContext == 0x85C0)
        #expect(kdbg.offsetKThreadStackBase == 0x38)
        #expect(dump.notes.isEmpty)
        #expect(dump.physical?.missingPages == 0)
    }

    @Test(arguments: memoryKinds)
    func everyMappedPageTranslates(kind: DumpDescription.DumpKind) throws {
        let (forged, source) = Fixtures.standard(kind, seed: 7)
        let dump = try KernelDump(source: source)
        var random = TestRandom()
        var spaces: [UInt64: X64AddressSpace] = [:]
        var sampled = (kernel: 0, user: 0)
        let mappings = forged.kernel.mappings.filter { kind.holdsUserPages || $0.va >> 63 == 1 }  // kernel dumps omit user pages
        for _ in 0..<4000 {
            let mapping = mappings[Int(random.below(UInt64(mappings.count)))]
            let va = mapping.va + random.below(mapping.size)
            let space = try spaces[mapping.directoryTableBase] ?? dump.addressSpace(directoryTableBase: mapping.directoryTableBase)
            spaces[mapping.directoryTableBase] = space
            let pa = try space.translate(va).get()
            #expect(pa == mapping.pa + (va - mapping.va), "VA 0x\(hex(va)) in \(mapping)")
            if va >> 63 == 1 { sampled.kernel += 1 } else { sampled.user += 1 }
        }
        // Both halves of the address space were walked (a kernel dump holds no user pages).
        #expect(sampled.kernel > 0 && (!kind.holdsUserPages || sampled.user > 0), "seed \(random.seed): \(sampled)")
    }

    /// Each probe resolves or fails for its own reason, whichever way Windows wrote its
    /// non-present entries (swizzled against L1TF or not, with KDBG naming the bits or not).
    @Test(arguments: memoryKinds, L1TFMitigation.allCases)
    func probesFailForTheirReasons(kind: DumpDescription.DumpKind, mitigation: L1TFMitigation) throws {
        var description = DumpDescription.standard(kind: kind, layoutSeed: 3)
        description.memory = [0x1..<0x9F, 0x100..<0x8000]
        description.l1tfMitigation = mitigation
        let forged = Forge.dump(description)
        let dump = try KernelDump(source: Fixtures.source(forged))
        let space = try dump.addressSpace(directoryTableBase: forged.kernel.directoryTableBase)
        #expect(forged.kernel.probes.count == (mitigation == .off ? 10 : 11))
        for probe in forged.kernel.probes {
            switch (probe.expectation, space.translate(probe.va)) {
            case (.mapped(let expected), .success(let pa)):
                #expect(pa == expected, "\(probe.why)")
            case (.fails(let code, let level), .failure(let error)):
                #expect(error.code.rawValue == code, "\(probe.why): \(error)")
                #expect(error.level?.rawValue == level, "\(probe.why): \(error)")
                #expect(error.address == probe.va)
            case (_, let outcome):
                Issue.record("\(probe.why): expected \(probe.expectation), got \(outcome)")
            }
        }
        // The transition page's contents are readable like any other page.
        let transition = try #require(forged.kernel.probes.first { $0.why == "transition PTE" })
        #expect(try space.read(transition.va - 0x10, count: 26) == Array("standby page in transition".utf8))
    }

    @Test func largePagesAndTheSelfMap() throws {
        let (forged, source) = Fixtures.standard(.full, seed: 11)
        let dump = try KernelDump(source: source)
        let space = try dump.kernelAddressSpace() as! X64AddressSpace
        let kernel = forged.kernel
        // ntoskrnl sits in a 2 MiB page: its MZ header and its globals 1 MiB further on.
        #expect(try space.read(kernel.kernelBase, count: 2) == Array("MZ".utf8))
        #expect(try space.read(kernel.debuggerDataBlock + 0x10, count: 4) == Array("KDBG".utf8))
        let large = try #require(kernel.mappings.first { $0.size == 0x20_0000 })
        #expect(try space.translate(large.va + 0x1F_FFF8).get() == large.pa + 0x1F_FFF8)
        #expect(kernel.mappings.contains { $0.size == 0x4000_0000 })
        // The self-map: PteBase + index * (512 GiB >> 9 per level) three times lands on the PML4 itself.
        let index = kernel.selfMapIndex
        let pml4Self = kernel.pteBase | index << 30 | index << 21 | index << 12
        #expect(try space.translate(pml4Self).get() == kernel.directoryTableBase)
        #expect(try space.u64(pml4Self + 8 * index) & 0x000F_FFFF_FFFF_F000 == kernel.directoryTableBase)
        // Reads across a page boundary.
        let pool = try #require(kernel.mappings.first { $0.va >> 44 == 0xFFFFA && $0.size == 0x1000 })
        #expect(try space.read(pool.va + 0xFF8, count: 16).count == 16)
    }

    @Test func eachProcessHasItsOwnAddressSpace() throws {
        let (forged, source) = Fixtures.standard(.bitmapFull, seed: 5)
        let dump = try KernelDump(source: source)
        let kernelSpace = try dump.kernelAddressSpace()
        for process in forged.kernel.processes where process.pebAddress != 0 {
            let space = try dump.addressSpace(directoryTableBase: process.directoryTableBase)
            let text = "PEB of \(process.imageName) pid \(process.processId)"
            #expect(try space.read(process.pebAddress + 0x100, count: text.utf8.count) == Array(text.utf8))
            // Kernel memory is shared: the process list head reads the same through any DTB.
            #expect(try space.u64(forged.kernel.psActiveProcessHead) == kernelSpace.u64(forged.kernel.psActiveProcessHead))
            let error = #expect(throws: MemoryError.self) { try kernelSpace.read(process.pebAddress, count: 8) }
            #expect(error?.code == .notPresent)
        }
    }

    @Test(arguments: [DumpDescription.DumpKind.bitmapKernel, .rangeKernel])
    func kernelDumpsLeaveOutUserPages(kind: DumpDescription.DumpKind) throws {
        let (forged, source) = Fixtures.standard(kind, seed: 2)
        let dump = try KernelDump(source: source)
        let process = try #require(forged.kernel.processes.first { $0.pebAddress != 0 })
        let space = try dump.addressSpace(directoryTableBase: process.directoryTableBase)
        let error = #expect(throws: MemoryError.self) { try space.read(process.pebAddress, count: 8) }
        #expect(error?.code == .physicalPageNotInDump)
        // Every stored page has its own place in the file, in PFN order.
        let physical = try #require(dump.physical)
        var last: UInt64 = 0
        let (runs, total) = physical.runs()
        #expect(total == runs.count)
        for run in runs {
            for pfn in run.basePage..<run.basePage + run.pageCount {
                guard case .inFile(let offset) = physical.locate(pfn: pfn) else { Issue.record("PFN \(pfn)"); continue }
                #expect(offset > last)
                last = offset
            }
        }
        #expect(runs.reduce(0) { $0 + $1.pageCount } == physical.storedPages)
    }

    @Test func minidumpMemoryServesCapturedBlocks() throws {
        let (forged, source) = Fixtures.standard(.triage)
        let dump = try KernelDump(source: source)
        let kernel = forged.kernel
        let kdbg = try #require(dump.debuggerData.data)
        #expect(kdbg.kiProcessorBlock == kernel.kiProcessorBlock)
        let space = try dump.kernelAddressSpace()
        #expect(try space.read(kernel.debuggerDataBlock + 0x10, count: 4) == Array("KDBG".utf8))
        for module in kernel.modules { #expect(try space.read(module.base, count: 2) == Array("MZ".utf8)) }
        // The stack window: KeBugCheckEx (push rbx, push rsi, sub rsp 0x28) returns to frame 1.
        let crashing = kernel.processors[0]
        #expect(try space.u64(crashing.context.rsp + 0x28 + 16) == crashing.context.frames[1].rip)
        // The current thread and its process are captured too, and the data page (the KPRCB's).
        #expect(try space.u8(crashing.currentThread) == 6)
        #expect(try space.u64(crashing.kprcb + 0x8) == crashing.currentThread)
        let error = #expect(throws: MemoryError.self) { try space.read(0xFFFF_A800_0000_0000, count: 8) }
        #expect(error?.code == .notCaptured)
        #expect(throws: DumpError.self) { try dump.addressSpace(directoryTableBase: kernel.directoryTableBase) }
    }

    @Test func translationCacheKeepsAnswersStable() throws {
        let (forged, source) = Fixtures.standard(.full, seed: 9)
        let dump = try KernelDump(source: source)
        let space = try dump.addressSpace(directoryTableBase: forged.kernel.directoryTableBase)
        let mappings = forged.kernel.mappings.filter { $0.directoryTableBase == forged.kernel.directoryTableBase }
        for _ in 0..<3 {
            for mapping in mappings.prefix(2000) {
                #expect(try space.translate(mapping.va + 0x123).get() == mapping.pa + 0x123)
            }
        }
    }
}
