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
}
