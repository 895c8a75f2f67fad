/// An ELF64 core file of a virtual machine's physical memory, as QEMU's `dump-guest-memory`
/// (and `virsh dump --memory-only`) writes it: each PT_LOAD segment is a range of guest
/// physical memory (p_paddr), and the PT_NOTE segment holds one set of notes per vCPU: a
/// `CORE`/NT_PRSTATUS note (the general registers, as Linux's elf_prstatus) and a `QEMU` note
/// (QEMUCPUState: the same registers plus segment bases, the descriptor tables and CR0–CR4).
///
///     Elf64_Ehdr: e_ident "\x7fELF", class 2 (64-bit), data 1 (little-endian); e_type 4 (core)
///       at 0x10, e_machine at 0x12 (62 x86-64; QEMU writes 3, i386, for vCPUs still in 32-bit
///       mode), e_phoff at 0x20, e_shoff at 0x28, e_phentsize at 0x36, e_phnum at 0x38
///       (0xFFFF: the count is section header 0's sh_info, as QEMU writes for many segments)
///     Elf64_Phdr (56 bytes): p_type, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz
///     note: namesz, descsz, type, name and desc each padded to 4 bytes
///
/// Everything is bounds-checked against the file; a damaged note is skipped with a note of
/// why, so the memory of a core whose notes are bad can still be read.
public struct ElfCore: Sendable {
    /// A range of guest physical memory and where its bytes are. Bytes past `fileSize` (up to
    /// `memorySize`) were not written: they read as zeros.
    public struct Segment: Sendable, Equatable {
        public var physicalAddress: UInt64
        public var fileOffset: UInt64
        public var fileSize: UInt64
        public var memorySize: UInt64
    }

    /// One vCPU's registers, from whichever notes it had.
    public struct CPUState: Sendable, Equatable {
        /// RAX…R15 in x64 register-number order.
        public var gpr: [UInt64]
        public var rip: UInt64
        public var rflags: UInt64
        /// From the QEMU note only (nil with NT_PRSTATUS alone).
        public var cr0, cr2, cr3, cr4: UInt64?
        public var gsBase: UInt64?
        public var kernelGSBase: UInt64?
        public var idtBase: UInt64?
        /// Whether the vCPU was in 64-bit mode (an EM_386 core holds 32-bit registers).
        public var is64Bit: Bool
        /// Which notes it came from ("NT_PRSTATUS", "QEMU CPU state").
        public var sources: [String]
    }

    public static let machineX86_64: UInt16 = 62
    public static let machineI386: UInt16 = 3
    /// Notes beyond this size, in all, are corruption (a vCPU's notes are under 2 KiB).
    static let maximumNoteBytes: UInt64 = 1 << 20
    /// vCPUs beyond this are corruption (QEMU's x86 machines have at most a few thousand).
    static let maximumCPUs = 4096
    /// Physical addresses end below 2^52 on x86-64.
    static let physicalLimit: UInt64 = 1 << 52

    public let machine: UInt16
    public let segments: [Segment]
    public let cpus: [CPUState]
    /// What could not be read (a damaged note, a segment past the end of the file).
    public let notes: [String]

    /// Whether `source` starts like an ELF64 little-endian core.
    public static func looksLikeElfCore(_ source: ByteSource) -> Bool {
        (try? source.u32(at: 0)) == 0x464C_457F && (try? source.u16(at: 0x10)) == 4
    }

    public init(parsing source: ByteSource) throws {
        guard Self.looksLikeElfCore(source) else {
            throw DumpError(.notADump, "not an ELF64 little-endian core file (QEMU's dump-guest-memory writes one)", offset: 0)
        }
        guard try source.u8(at: 4) == 2, try source.u8(at: 5) == 1 else {
            throw DumpError(.unsupported, "a 32-bit or big-endian ELF core: QEMU writes ELFCLASS32 only when the first vCPU was not in 64-bit mode "
                            + "and no memory ends above 4 GiB (the pc and q35 machines' firmware ROM ends at 4 GiB, so they get ELF64), "
                            + "which is no running x64 Windows; it is not read (capture the guest once Windows runs)", offset: 4)
        }
        let header = try source.record(at: 0, length: 0x40, "the ELF header")
        machine = try header.u16(0x12)
        guard machine == Self.machineX86_64 || machine == Self.machineI386 else {
            throw DumpError(.unsupported, "the ELF core is for machine \(machine); x86-64 (62) and i386 (3) guests are read", offset: 0x12)
        }
        let programHeaders = try header.u64(0x20)
        let entrySize = UInt64(try header.u16(0x36))
        var count = UInt64(try header.u16(0x38))
        if count == 0xFFFF {  // PN_XNUM: the real count is in section header 0's sh_info
            let sectionHeaders = try header.u64(0x28)
            count = UInt64(try source.u32(at: try Checked.add(sectionHeaders, 44, "section header 0"), "section header 0's sh_info"))
        }
        // As many as the file can hold (a paging-mode core has one per mapping, tens of thousands).
        guard entrySize >= 56, programHeaders <= source.count, count <= (source.count - programHeaders) / entrySize else {
            throw DumpError(.corrupt, "the ELF core claims \(count) program headers of \(entrySize) bytes at 0x\(hex(programHeaders)), more than the file holds", offset: 0x36)
        }
        var segments: [Segment] = []
        var noteSegments: [(offset: UInt64, size: UInt64)] = []
        var notes: [String] = []
        for index in 0..<count {
            let at = try Checked.add(programHeaders, try Checked.multiply(index, entrySize, "program header \(index)"), "program header \(index)")
            let entry = try source.record(at: at, length: 56, "program header \(index)")
            let type = try entry.u32(0)
            let offset = try entry.u64(8), fileSize = try entry.u64(32)
            switch type {
            case 1:  // PT_LOAD
                let segment = Segment(physicalAddress: try entry.u64(24), fileOffset: offset, fileSize: fileSize, memorySize: try entry.u64(40))
                // The file offset need not be page-aligned: QEMU writes the memory right after
                // the notes. The physical address must be, as pages are indexed by number.
                guard segment.physicalAddress % 0x1000 == 0 else {
                    notes.append("PT_LOAD \(index) at physical 0x\(hex(segment.physicalAddress)) is not page-aligned; skipped")
                    continue
                }
                guard segment.physicalAddress < Self.physicalLimit, fileSize <= Self.physicalLimit - segment.physicalAddress else {
                    notes.append("PT_LOAD \(index) (0x\(hex(fileSize)) bytes at physical 0x\(hex(segment.physicalAddress))) ends past 2^52, where no physical memory is; skipped")
                    continue
                }
                if !source.contains(offset: offset, length: fileSize) {
                    notes.append("PT_LOAD \(index) (physical 0x\(hex(segment.physicalAddress)), 0x\(hex(fileSize)) bytes at 0x\(hex(offset))) runs past the end of the file: the core is cut short")
                }
                segments.append(segment)
            case 4:  // PT_NOTE
                guard fileSize <= Self.maximumNoteBytes - noteSegments.reduce(0, { $0 + $1.size }), source.contains(offset: offset, length: fileSize) else {
                    notes.append("the PT_NOTE segment (0x\(hex(fileSize)) bytes at 0x\(hex(offset))) does not fit the file; its vCPU notes are not read")
                    continue
                }
                noteSegments.append((offset, fileSize))
            default:
                continue
            }
        }
        // A paging-mode core (dump-guest-memory -p) maps one physical range at several virtual
        // addresses: one copy of each physical page is kept.
        var kept: [Segment] = []
        for segment in segments.sorted(by: { ($0.physicalAddress, $0.fileOffset) < ($1.physicalAddress, $1.fileOffset) }) {
            if let last = kept.last, segment.physicalAddress < last.physicalAddress + last.fileSize {
                if segment != last { notes.append("PT_LOAD at physical 0x\(hex(segment.physicalAddress)) overlaps the one at 0x\(hex(last.physicalAddress)); the first is read") }
                continue
            }
            kept.append(segment)
        }
        self.segments = kept
        var cpus: [CPUState] = []
        for segment in noteSegments {
            cpus += Self.cpuStates(try source.bytes(at: segment.offset, count: segment.size, "the PT_NOTE segment"), notes: &notes)
        }
        if cpus.count > Self.maximumCPUs {
            notes.append("the notes describe \(cpus.count) vCPUs; the first \(Self.maximumCPUs) are read")
            cpus.removeLast(cpus.count - Self.maximumCPUs)
        }
        self.cpus = cpus
        self.notes = notes
    }

    /// The vCPUs the notes describe. QEMU writes every vCPU's NT_PRSTATUS first, then every
    /// vCPU's QEMU note, in the same order: the n-th QEMU note completes the n-th CPU.
    static func cpuStates(_ bytes: [UInt8], notes: inout [String]) -> [CPUState] {
        // A note that cannot be read keeps its place, so that the pairing stays in order.
        var statuses: [CPUState?] = [], states: [CPUState?] = []
        var at = 0
        func u32(_ offset: Int) -> UInt32 { UInt32(bytes.littleEndian(at: offset, width: 4)) }
        while at + 12 <= bytes.count {
            let nameSize = Int(u32(at)), descriptionSize = Int(u32(at + 4)), type = u32(at + 8)
            let name = at + 12, description = name + (nameSize + 3) & ~3
            guard nameSize <= 64, descriptionSize <= 1 << 20, description + descriptionSize <= bytes.count else {
                notes.append("a note at 0x\(hex(at)) of the PT_NOTE segment claims a \(nameSize)-byte name and \(descriptionSize)-byte body past its end; the notes after it are not read")
                break
            }
            let owner = String(decoding: bytes[name..<name + nameSize].prefix { $0 != 0 }, as: UTF8.self)
            let body = Array(bytes[description..<description + descriptionSize])
            at = description + (descriptionSize + 3) & ~3
            switch (owner, type) {
            case ("CORE", 1):  // NT_PRSTATUS
                statuses.append(prstatus(body))
                if statuses.last! == nil { notes.append("an NT_PRSTATUS note of \(descriptionSize) bytes is too short for its registers; skipped") }
            case ("QEMU", 0):
                states.append(qemuState(body))
                if states.last! == nil { notes.append("a QEMU CPU-state note of \(descriptionSize) bytes is too short; skipped") }
            default:
                continue
            }
            guard statuses.count + states.count <= 2 * maximumCPUs else {
                notes.append("more than \(maximumCPUs) vCPUs' notes; the rest are not read")
                break
            }
        }
        if !statuses.isEmpty, !states.isEmpty, statuses.count != states.count {
            notes.append("the core has \(statuses.count) NT_PRSTATUS notes but \(states.count) QEMU CPU-state notes; they are paired in order")
        }
        return (0..<max(statuses.count, states.count)).compactMap { index in
            let status = index < statuses.count ? statuses[index] : nil, state = index < states.count ? states[index] : nil
            switch (status, state) {
            case let (status?, state?): return merged(status, state)
            case let (status?, nil): return status
            case let (nil, state?): return state
            case (nil, nil): return nil
            }
        }
    }

    /// elf_prstatus: pr_reg starts at 112 on x86-64 (user_regs_struct: r15, r14, r13, r12,
    /// rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss,
    /// fs_base, gs_base, ...) and at 72 on i386 (ebx, ecx, edx, esi, edi, ebp, eax, ds, es, fs,
    /// gs, orig_eax, eip, cs, eflags, esp, ss; 4 bytes each). Told apart by the note's size.
    static func prstatus(_ body: [UInt8]) -> CPUState? {
        if body.count >= 112 + 27 * 8 {
            let reg = { (index: Int) in body.littleEndian(at: 112 + 8 * index, width: 8) }
            // x64 register numbers: RAX RCX RDX RBX RSP RBP RSI RDI R8..R15.
            let gpr = [reg(10), reg(11), reg(12), reg(5), reg(19), reg(4), reg(13), reg(14), reg(9), reg(8), reg(7), reg(6), reg(3), reg(2), reg(1), reg(0)]
            return CPUState(gpr: gpr, rip: reg(16), rflags: reg(18), gsBase: reg(22), is64Bit: true, sources: ["NT_PRSTATUS"])
        }
        guard body.count >= 72 + 17 * 4 else { return nil }
        let reg = { (index: Int) in body.littleEndian(at: 72 + 4 * index, width: 4) }
        let gpr = [reg(6), reg(1), reg(2), reg(0), reg(15), reg(5), reg(3), reg(4)] + [UInt64](repeating: 0, count: 8)
        return CPUState(gpr: gpr, rip: reg(12), rflags: reg(14), is64Bit: false, sources: ["NT_PRSTATUS"])
    }

    /// QEMUCPUState (QEMU's target/i386/arch_dump.c; elf2dmp reads the same): version, size,
    /// RAX RBX RCX RDX RSI RDI RSP RBP R8–R15 at 8, RIP at 136, RFLAGS at 144, then ten
    /// 24-byte segments (selector, limit, flags, pad, base: CS DS ES FS GS SS LDT TR GDT IDT)
    /// from 152, CR0–CR4 at 392, and KernelGSBase at 432 where the note's size field says the
    /// state is that long. The CPU was in 64-bit mode when its CS flags have L (bit 21) set.
    static func qemuState(_ body: [UInt8]) -> CPUState? {
        guard body.count >= 432 else { return nil }
        func u64(_ offset: Int) -> UInt64 { body.littleEndian(at: offset, width: 8) }
        let declaredSize = u64(4) & 0xFFFF_FFFF
        let longMode = (u64(152 + 8) & 0xFFFF_FFFF) & (1 << 21) != 0
        let named = (0..<16).map { u64(8 + 8 * $0) }  // rax rbx rcx rdx rsi rdi rsp rbp r8..r15
        let gpr = [named[0], named[2], named[3], named[1], named[6], named[7], named[4], named[5]] + named[8...]
        let segmentBase = { (index: Int) in u64(152 + 24 * index + 16) }
        return CPUState(gpr: Array(gpr), rip: u64(136), rflags: u64(144), cr0: u64(392), cr2: u64(408), cr3: u64(416), cr4: u64(424),
                        gsBase: segmentBase(4), kernelGSBase: body.count >= 440 && declaredSize >= 440 ? u64(432) : nil, idtBase: segmentBase(9),
                        is64Bit: longMode, sources: ["QEMU CPU state"])
    }

    /// A vCPU's NT_PRSTATUS completed by its QEMU note (control registers, bases). QEMU picks
    /// the NT_PRSTATUS layout from the first vCPU alone, so a 64-bit vCPU may come with a
    /// 32-bit note: the QEMU note's full registers then stand.
    static func merged(_ cpu: CPUState, _ state: CPUState) -> CPUState {
        var merged = cpu
        if state.is64Bit && !cpu.is64Bit {
            merged.gpr = state.gpr
            merged.rip = state.rip
            merged.rflags = state.rflags
            merged.is64Bit = true
        }
        merged.cr0 = state.cr0
        merged.cr2 = state.cr2
        merged.cr3 = state.cr3
        merged.cr4 = state.cr4
        merged.gsBase = state.gsBase ?? cpu.gsBase
        merged.kernelGSBase = state.kernelGSBase
        merged.idtBase = state.idtBase
        merged.sources.append("QEMU CPU state")
        return merged
    }
}

extension [UInt8] {
    /// `width` bytes (at most 8) at `offset`, little-endian; the caller has checked they are there.
    public func littleEndian(at offset: Int, width: Int) -> UInt64 {
        (0..<width).reduce(0) { $0 | UInt64(self[offset + $1]) << (8 * UInt64($1)) }
    }
}
