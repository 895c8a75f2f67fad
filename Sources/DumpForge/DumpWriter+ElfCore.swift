/// The forged machine as the KVM host would capture it: an ELF64 core like QEMU's
/// `dump-guest-memory` (and `virsh dump --memory-only`) writes, written from QEMU's layout
/// (dump/dump.c, target/i386/arch_dump.c) and kept apart from the parser's reading.
///
///     ELF header, program headers (one PT_NOTE, one PT_LOAD per RAM range, p_paddr the guest
///     physical address), the notes (every vCPU's CORE/NT_PRSTATUS, then every vCPU's QEMU
///     CPU state), then each range's pages, straight after the notes (not page-aligned)
///
/// The vCPU notes hold what a capture of the running guest would: each CPU's registers, with
/// CR3 the kernel's page tables and the GS base its KPCR.
extension DumpWriter {
    func elfCore() -> ForgedDump {
        let ranges = description.memory
        let notes = vcpuNotes()

        let programHeaders = 64, entry = 56
        let notesAt = programHeaders + entry * (1 + ranges.count)
        var dataAt = notesAt + notes.count  // QEMU writes the memory right after the notes, unaligned
        var file = ByteBuffer(count: notesAt)
        file.put(Array([0x7F, 0x45, 0x4C, 0x46, 2, 1, 1]), at: 0)  // \x7fELF, 64-bit, little-endian, version 1
        file.put16(4, at: 0x10)       // ET_CORE
        file.put16(62, at: 0x12)      // EM_X86_64
        file.put32(1, at: 0x14)
        file.put64(UInt64(programHeaders), at: 0x20)
        file.put16(64, at: 0x34)
        file.put16(UInt16(entry), at: 0x36)
        file.put16(UInt16(1 + ranges.count), at: 0x38)
        func programHeader(_ index: Int, type: UInt32, offset: Int, physical: UInt64, size: UInt64) {
            let at = programHeaders + entry * index
            file.put32(type, at: at)
            file.put32(type == 1 ? 7 : 0, at: at + 4)  // PF_R | PF_W | PF_X for memory
            file.put64(UInt64(offset), at: at + 8)
            file.put64(physical, at: at + 24)
            file.put64(size, at: at + 32)
            file.put64(size, at: at + 40)
        }
        programHeader(0, type: 4, offset: notesAt, physical: 0, size: UInt64(notes.count))
        var chunks: [ForgedDump.Chunk] = []
        for (index, range) in ranges.enumerated() {
            programHeader(1 + index, type: 1, offset: dataAt, physical: range.lowerBound * 0x1000, size: UInt64(range.count) * 0x1000)
            for (pfn, page) in ram.pages where range.contains(pfn) {
                chunks.append(.init(offset: UInt64(dataAt) + (pfn - range.lowerBound) * 0x1000, bytes: page))
            }
            dataAt += range.count * 0x1000
        }
        file.put(notes.bytes, at: notesAt)
        chunks.insert(.init(offset: 0, bytes: file.bytes), at: 0)
        return ForgedDump(size: UInt64(dataAt), chunks: chunks, kernel: kernel)
    }

    /// Every vCPU's notes as QEMU writes them (the ELF core's PT_NOTE, a kdump file's notes):
    /// each CPU's CORE/NT_PRSTATUS, then each CPU's QEMU CPU state.
    func vcpuNotes() -> ByteBuffer {
        let cpus = kernel.processors
        var notes = ByteBuffer()
        func note(_ name: String, type: UInt32, _ body: ByteBuffer) {
            let at = notes.count
            notes.put32(UInt32(name.utf8.count + 1), at: at)
            notes.put32(UInt32(body.count), at: at + 4)
            notes.put32(type, at: at + 8)
            notes.put(Array(name.utf8) + [0], at: at + 12)  // namesz counts the NUL
            notes.align(to: 4)
            notes.put(body.bytes, at: notes.count)
            notes.align(to: 4)
        }
        // Linux's elf_prstatus for x86-64: pr_reg (user_regs_struct) at 112, then pr_fpvalid.
        for (index, cpu) in cpus.enumerated() {
            let r = cpu.context.registers
            var status = ByteBuffer(count: 336)
            status.put32(UInt32(index + 1), at: 32)  // pr_pid: QEMU writes the vCPU's number
            // r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss fs_base gs_base
            let values: [UInt64] = [r[15], r[14], r[13], r[12], r[5], r[3], r[11], r[10], r[9], r[8], r[0], r[1], r[2], r[6], r[7], 0,
                                    cpu.context.rip, 0x10, 0x40046, r[4], 0x18, 0, cpu.kpcr, 0x2B, 0x2B, 0x53, 0x2B]
            for (slot, value) in values.enumerated() { status.put64(value, at: 112 + 8 * slot) }
            note("CORE", type: 1, status)
        }
        // QEMUCPUState, version 1: registers, then CS DS ES FS GS SS LDT TR GDT IDT (selector,
        // limit, flags, pad, base), CR0..CR4, KernelGSBase.
        for cpu in cpus {
            let r = cpu.context.registers
            var state = ByteBuffer(count: 440)
            state.put32(1, at: 0)
            state.put32(440, at: 4)
            for (slot, value) in [r[0], r[3], r[1], r[2], r[6], r[7], r[4], r[5], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]].enumerated() {
                state.put64(value, at: 8 + 8 * slot)
            }
            state.put64(cpu.context.rip, at: 136)
            state.put64(0x40046, at: 144)
            for (segment, selector) in [0x10, 0x2B, 0x2B, 0x53, 0x2B, 0x18].enumerated() { state.put32(UInt32(selector), at: 152 + 24 * segment) }
            state.put32(0x20_9B00, at: 152 + 8)            // CS flags: L (64-bit code), present, code
            state.put64(cpu.kpcr, at: 152 + 24 * 4 + 16)  // GS base: the KPCR, in kernel mode
            state.put32(0xFFF, at: 152 + 24 * 9 + 4)       // IDT limit
            state.put64(kernel.interruptTable, at: 152 + 24 * 9 + 16)
            state.put64(0x8005_0033, at: 392)               // CR0: PG, WP, NE, ET, MP, PE
            state.put64(kernel.directoryTableBase, at: 416) // CR3
            state.put64(0x3506F8, at: 424)                  // CR4: PAE, PGE, OSFXSR, OSXSAVE, SMEP, SMAP...
            note("QEMU", type: 0, state)
        }
        return notes
    }
}
