import DumpForge
import DumpFormat
import DumpMemory
import Testing
import TestSupport

/// QEMU ELF cores (`dump-guest-memory`, `virsh dump --memory-only`) as a source of physical
/// memory and vCPU state. Still only against the forge's writer, which follows QEMU's layout
/// (dump/dump.c, target/i386/arch_dump.c) and shares no code with the reader.
@Suite struct ElfCoreTests {
    static func standard() -> DumpDescription {
        var description = DumpDescription.spinLockHang(kind: .full, layoutSeed: 3)
        description.memory = [0x1..<0x9F, 0x100..<0x8000]  // 128 MiB with the hole below 1 MiB
        return description
    }

    /// The same machine as a full dump and as an ELF core: every RAM page reads the same, and
    /// each vCPU's notes give its registers, CR3 (the kernel's page tables) and GS base (KPCR).
    @Test func anElfCoreHoldsTheMachinesMemoryAndEveryVCPU() throws {
        let description = Self.standard()
        let elfDump = Forge.elfCore(description)
        let full = try KernelDump(source: Fixtures.source(Forge.dump(description)))
        let source = Fixtures.source(elfDump)
        #expect(ElfCore.looksLikeElfCore(source))
        let core = try ElfCore(parsing: source)
        #expect(core.machine == ElfCore.machineX86_64 && core.notes.isEmpty, "\(core.notes)")
        #expect(core.segments.map { $0.physicalAddress / 0x1000..<($0.physicalAddress + $0.fileSize) / 0x1000 } == description.memory)
        let memory = try PhysicalMemory(source: source, elf: core)
        let reference = try #require(full.physical)
        #expect(memory.storedPages == reference.storedPages && memory.missingPages == 0)
        for pfn in stride(from: UInt64(0), to: 0x8000, by: 0x1F) where description.memory.contains(where: { $0.contains(pfn) }) {
            #expect(try memory.read(physical: pfn * 0x1000, count: 0x1000) == reference.read(physical: pfn * 0x1000, count: 0x1000), "page 0x\(String(pfn, radix: 16))")
        }
        #expect(memory.locate(pfn: 0xA0) == .notInDump, "the hole below 1 MiB is no segment")

        try #require(core.cpus.count == description.processors)
        for (cpu, forged) in zip(core.cpus, elfDump.kernel.processors) {
            #expect(cpu.gpr == forged.context.registers && cpu.rip == forged.context.rip)
            #expect(cpu.cr3 == elfDump.kernel.directoryTableBase && cpu.gsBase == forged.kpcr && cpu.is64Bit)
            #expect(cpu.sources == ["NT_PRSTATUS", "QEMU CPU state"])
        }
        // CR3 translates the kernel's addresses as the full dump's header DTB does.
        let space = X64AddressSpace(physical: memory, directoryTableBase: try #require(core.cpus[0].cr3))
        let kdbg = full.header.kdDebuggerDataBlock
        #expect(try space.read(kdbg, count: 0x20) == full.kernelAddressSpace().read(kdbg, count: 0x20))
    }

    /// Damaged cores: cut anywhere, program headers and notes with absurd counts and sizes. A
    /// clear error or a core with notes of what is missing, never a trap.
    @Test func damagedCoresNeverTrap() throws {
        let description = Self.standard()
        // The headers, the notes and the first pages; the rest of the RAM is cut off, which a
        // reader must report rather than trip over.
        let bytes = Array(Forge.elfCore(description).contiguousBytes().prefix(0x10000))
        var outcomes: [String: Int] = [:]
        func attempt(_ damaged: [UInt8]) {
            let source = ByteSource(copying: damaged)
            do {
                let core = try ElfCore(parsing: source)
                let memory = try PhysicalMemory(source: source, elf: core)
                _ = try? memory.read(physical: 0x1000, count: 0x1000)
                outcomes[core.notes.isEmpty ? "read" : "read with notes", default: 0] += 1
            } catch let error as DumpError {
                outcomes[error.code.rawValue, default: 0] += 1
            } catch {
                Issue.record("an error that is not a DumpError: \(error)")
            }
        }
        for cut in [0, 4, 0x20, 0x3F, 0x40, 0x78, 0xB0, 0x1000, 0x1100, bytes.count / 2] { attempt(Array(bytes.prefix(cut))) }
        var random = SeededRandom(seed: 13)
        for _ in 0..<400 {
            var damaged = bytes
            let at = Int(random.below(0x800)) & ~3
            let value: UInt32 = [0, 0xFFFF, 0xFFFF_FFFF, 0x7FFF_FFFF, UInt32(truncatingIfNeeded: random.next())][Int(random.below(5))]
            for index in 0..<4 { damaged[at + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(index))) }
            attempt(damaged)
        }
        print("damaged ELF cores: \(outcomes.sorted { $0.key < $1.key })")
        #expect(outcomes["read with notes", default: 0] > 0 && outcomes["notADump", default: 0] > 0)
    }

    /// An ELF64 core from program headers given as (type, offset, physical, size), in the order
    /// given, followed by `tail`.
    static func core(_ headers: [(UInt32, UInt64, UInt64, UInt64)], class elfClass: UInt8 = 2, tail: [UInt8] = []) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 64 + 56 * headers.count)
        func put(_ value: UInt64, _ width: Int, at: Int) { for index in 0..<width { bytes[at + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) } }
        bytes.replaceSubrange(0..<6, with: [0x7F, 0x45, 0x4C, 0x46, elfClass, 1])
        put(4, 2, at: 0x10)
        put(62, 2, at: 0x12)
        put(64, 8, at: 0x20)
        put(56, 2, at: 0x36)
        put(UInt64(headers.count), 2, at: 0x38)
        for (index, (type, offset, physical, size)) in headers.enumerated() {
            let at = 64 + 56 * index
            put(UInt64(type), 4, at: at)
            put(offset, 8, at: at + 8)
            put(physical, 8, at: at + 24)
            put(size, 8, at: at + 32)
            put(size, 8, at: at + 40)
        }
        return bytes + tail
    }

    /// Program headers built to trip a careless reader: thousands of segments claiming nearly
    /// 2^64 bytes each, one ending past the physical address space, overlapping copies (as a
    /// paging-mode core has), a huge note segment, and a 32-bit core.
    @Test func craftedProgramHeadersGiveErrorsOrNotes() throws {
        let huge = Self.core(Array(repeating: (1, 0, 0, 0xFFFF_FFFF_FFFF_F000), count: 4097))
        let hugeCore = try ElfCore(parsing: ByteSource(copying: huge))
        #expect(hugeCore.segments.isEmpty && hugeCore.notes.count == 4097 && hugeCore.notes[0].contains("past 2^52"))
        #expect(try PhysicalMemory(source: ByteSource(copying: huge), elf: hugeCore).storedPages == 0)
        let page = [UInt8](repeating: 0xAB, count: 0x2000)
        let edge = Self.core([(1, 0x1000, 0xFFFF_FFFF_FFFF_F000, 0x2000), (1, 0x1000, 0x2000, 0x1000), (1, 0x2000, 0x2000, 0x1000)], tail: page + page)
        let core = try ElfCore(parsing: ByteSource(copying: edge))
        #expect(core.segments.count == 1 && core.segments[0].physicalAddress == 0x2000, "\(core.segments)")
        #expect(core.notes.contains { $0.contains("past 2^52") } && core.notes.contains { $0.contains("overlaps") }, "\(core.notes)")
        let notes = Self.core([(4, 0x1000, 0, 0x200_0000)], tail: page)
        #expect(try ElfCore(parsing: ByteSource(copying: notes)).notes.contains { $0.contains("PT_NOTE") })
        #expect(throws: DumpError.self) { try ElfCore(parsing: ByteSource(copying: Self.core([], class: 1))) }
        do {
            _ = try KernelDump(source: ByteSource(copying: Self.core([], class: 1)))
        } catch let error as DumpError {
            #expect(error.description.contains("32-bit"), "\(error)")
        }
    }
}
