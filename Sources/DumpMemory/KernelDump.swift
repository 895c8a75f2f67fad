import DumpFormat

/// An opened 64-bit kernel dump: header, physical memory index or minidump contents, and the
/// kernel debugger data block. Opening validates and indexes; everything else is read on demand.
public final class KernelDump: Sendable {
    public let source: ByteSource
    public let header: DumpHeader64
    /// Present for full, bitmap and range dumps.
    public let physical: PhysicalMemory?
    /// Present for kernel minidumps.
    public let triage: TriageDump?
    /// The captured virtual memory of a minidump (one instance serves every thread).
    public let triageMemory: TriageMemory?
    public let debuggerData: DebuggerDataLookup
    /// Why kernel virtual memory cannot be read, when it cannot.
    public let virtualMemoryUnavailable: String?
    /// What opening found that a reader should know: truncation, inconsistent counts, missing markers.
    public let notes: [String]
    /// Present when the memory came from its hypervisor (a QEMU ELF core, a raw image of the
    /// guest's RAM), not from Windows.
    public let capture: HypervisorCapture?

    /// A capture of a running guest's memory: what it was, how the kernel was found, and each
    /// vCPU's registers where it has them (a CPU's context, where a crash dump has the KPRCB's).
    public struct HypervisorCapture: Sendable {
        /// "QEMU ELF core", "QEMU kdump-compressed file", "raw physical memory image".
        public var container: String
        /// The container's own magic, where a dump has "PAGEDU64": "ELF core", "KDUMP",
        /// "makedumpfile" (flattened KDUMP), "raw".
        public var signature: String
        public var directoryTableBaseSource: String
        public var kernelBase: UInt64?
        /// By CPU number; nil for a vCPU that was not in 64-bit mode.
        public var vcpuContexts: [Context64?]
    }

    public convenience init(source: ByteSource) throws {
        if ElfCore.looksLikeElfCore(source) {
            try self.init(elfCore: source)
            return
        }
        if KdumpFile.looksLikeKdump(source) {
            try self.init(kdump: source)
            return
        }
        let header = try DumpHeader64(parsing: source)
        var notes: [String] = []
        var physical: PhysicalMemory?
        var triage: TriageDump?
        switch header.dumpType {
        case .full:
            guard let descriptor = header.physicalMemoryBlock else {
                throw DumpError(.corrupt, "a full (DumpType 1) dump without a physical memory run table", offset: 0x88)
            }
            physical = try PhysicalMemory(source: source, runs: descriptor.runs, dataOffset: DumpHeader64.size)
            let sum = descriptor.runs.reduce(0 as UInt64) { $0 &+ $1.pageCount }
            if sum != descriptor.numberOfPages {
                notes.append("the run table's NumberOfPages is \(descriptor.numberOfPages) but its runs add up to \(sum)")
            }
        case .summary, .bitmapFull, .bitmapKernel:
            physical = try PhysicalMemory(source: source, bitmap: BitmapDumpHeader(parsing: source))
        case .rangeKernel, .rangeKernelAndUser, .rangeComplete:
            physical = try PhysicalMemory(source: source, ranges: RangeDumpHeader(parsing: source, type: header.dumpType))
        case .triage:
            triage = try TriageDump(parsing: source)
        case .headerOnly:
            break
        case .other(let value):
            throw DumpError(.unsupported, "unsupported dump type \(value)", offset: 0xF98)
        }
        try self.init(source: source, header: header, physical: physical, triage: triage, notes: notes)
    }

    /// A QEMU ELF core (`dump-guest-memory`, `virsh dump --memory-only`): the guest's physical
    /// memory and vCPU registers, with the kernel found by `GuestDiscovery`. It has no bug check.
    convenience init(elfCore source: ByteSource) throws {
        let core = try ElfCore(parsing: source)
        let physical = try PhysicalMemory(source: source, elf: core)
        try self.init(capturedMemory: source, physical: physical, container: "QEMU ELF core", signature: "ELF core", cpus: core.cpus, notes: core.notes)
    }

    /// A kdump-compressed file (`dump-guest-memory` with `format: kdump-zlib` and the like): the
    /// same memory and vCPU notes as an ELF core, each page compressed on its own.
    convenience init(kdump source: ByteSource) throws {
        let file = try KdumpFile(parsing: source)
        let container = file.isFlattened ? "QEMU kdump-compressed file (flattened)" : "QEMU kdump-compressed file"
        try self.init(capturedMemory: source, physical: PhysicalMemory(kdump: file), container: container, signature: file.isFlattened ? "makedumpfile" : "KDUMP",
                      cpus: file.cpus, notes: file.notes)
    }

    /// A raw image of physical memory (byte N is physical address N; a hypervisor's memory
    /// file, or a copy of /dev/mem): no registers at all, so the kernel is found by scanning.
    /// Zero pages read as zeros, like any other.
    public convenience init(rawMemory source: ByteSource) throws {
        guard source.count >= PhysicalMemory.pageSize else { throw DumpError(.notADump, "a raw memory image needs at least one page; the file has \(source.count) bytes") }
        let physical = try PhysicalMemory(rawImage: source)
        try self.init(capturedMemory: source, physical: physical, container: "raw physical memory image", signature: "raw", cpus: [], notes: [])
    }

    /// Memory captured without Windows' help (`container` says how), and the vCPUs' registers
    /// where the capture has them: the kernel is found by `GuestDiscovery`, and the header a
    /// capture lacks is made from what was found.
    private convenience init(capturedMemory source: ByteSource, physical: PhysicalMemory, container: String, signature: String, cpus: [ElfCore.CPUState], notes: [String]) throws {
        let vcpus = cpus.map { GuestDiscovery.VCPU(cr3: $0.cr3, gsBase: $0.gsBase, kernelGSBase: $0.kernelGSBase, idtBase: $0.idtBase) }
        let kernel = try GuestDiscovery.find(physical: physical, vcpus: vcpus)
        let space = X64AddressSpace(physical: physical, directoryTableBase: kernel.directoryTableBase)
        let decoded = kernel.decodedDebuggerData.flatMap { bytes in kernel.debuggerDataBlock.flatMap { Self.decodedLookup(bytes, at: $0) } }
        let kdbg = decoded?.data ?? kernel.debuggerDataBlock.flatMap { Self.debuggerData(at: $0, in: space).data }
        let contexts = cpus.map { $0.is64Bit ? Context64(gpr: $0.gpr, rip: $0.rip, eflags: UInt32(truncatingIfNeeded: $0.rflags)) : nil }
        let first = contexts.compactMap { $0 }.first ?? Context64(gpr: [UInt64](repeating: 0, count: 16), rip: 0, eflags: 0)
        let header = DumpHeader64(capturedBuild: kernel.buildNumber, directoryTableBase: kernel.directoryTableBase,
                                  debuggerDataBlock: kernel.debuggerDataBlock ?? 0, psLoadedModuleList: kdbg?.psLoadedModuleList ?? 0,
                                  psActiveProcessHead: kdbg?.psActiveProcessHead ?? 0, processors: kernel.processorCount ?? UInt32(max(cpus.count, 1)), context: first,
                                  systemTime: kernel.systemTime, systemUpTime: kernel.systemUpTime)
        let capture = HypervisorCapture(container: container, signature: signature, directoryTableBaseSource: kernel.directoryTableBaseSource,
                                        kernelBase: kernel.kernelBase, vcpuContexts: contexts)
        try self.init(source: source, header: header, physical: physical, triage: nil, notes: notes + kernel.notes, capture: capture, decoded: decoded)
    }

    /// `decoded`: KDDEBUGGER_DATA64 already found and decoded (a capture of a live guest).
    private init(source: ByteSource, header: DumpHeader64, physical: PhysicalMemory?, triage: TriageDump?, notes: [String],
                 capture: HypervisorCapture? = nil, decoded: DebuggerDataLookup? = nil) throws {
        self.source = source
        self.header = header
        self.capture = capture
        self.physical = physical
        self.triage = triage
        var notes = notes + (physical?.notes ?? [])

        // Page tables are walked for x64 4-level paging only; a minidump's captured blocks need
        // no page tables and read on any architecture.
        var unavailable: String?
        if physical == nil && triage == nil {
            unavailable = "a header-only dump holds no memory"
        } else if physical != nil, header.machine != .amd64 {
            unavailable = "\(header.machine) page tables are not translated (x64 is the analysis target)"
        } else if physical != nil, Self.usesLA57(header) {
            unavailable = "the dump uses 5-level paging (LA57), which is not supported"
        }

        var captured: TriageMemory?
        let lookup: DebuggerDataLookup
        if let triage {
            if !triage.hasEndMarker { notes.append("the minidump's end marker \"TRGD\" is missing at 0x\(hex(triage.validOffset)): the file may be cut short") }
            if !triage.driverEntrySizeIsExpected {
                notes.append("the driver list's length suggests entries of another size than 0x90 bytes; driver details may be wrong")
            }
            lookup = Self.debuggerData(triageCopy: triage, source: source)
            let memory = TriageMemory(source: source, blocks: Self.capturedBlocks(triage, header: header, source: source, debuggerData: lookup.data, notes: &notes))
            notes += memory.notes
            captured = memory
        } else if let decoded {
            lookup = decoded
        } else if let physical, unavailable == nil {
            let space = X64AddressSpace(physical: physical, directoryTableBase: header.directoryTableBase)
            lookup = Self.decodedIfEncoded(Self.debuggerData(at: header.kdDebuggerDataBlock, in: space), space: space)
        } else {
            lookup = .unreadable(unavailable ?? "the dump holds no memory")
        }
        if physical != nil, unavailable == nil, lookup.data?.pagingLevels == 5 {
            unavailable = "KDDEBUGGER_DATA64 says the kernel uses 5-level paging (LA57), which is not supported"
        }
        if let kdbg = lookup.data, kdbg.isShort {
            notes.append("KDDEBUGGER_DATA64 is cut short: 0x\(hex(kdbg.bytes.count)) of its 0x\(hex(kdbg.size)) bytes are present")
        }
        self.triageMemory = captured
        self.debuggerData = lookup
        self.virtualMemoryUnavailable = unavailable
        self.notes = notes
    }

    /// A reader of kernel virtual memory. Page-table readers keep a translation cache, so each
    /// thread should take its own; a minidump's captured memory is one shared, stateless reader.
    public func kernelAddressSpace() throws -> any KernelAddressSpace {
        if let triageMemory { return triageMemory }
        return try addressSpace(directoryTableBase: header.directoryTableBase)
    }

    /// A reader of the address space whose page tables start at `directoryTableBase` (a
    /// process's KPROCESS.DirectoryTableBase). Needs physical memory: minidumps have none.
    public func addressSpace(directoryTableBase: UInt64) throws -> X64AddressSpace {
        if let virtualMemoryUnavailable { throw DumpError(.unsupported, virtualMemoryUnavailable) }
        guard let physical else { throw DumpError(.unsupported, "a minidump holds no page tables; only captured kernel memory can be read") }
        let kdbg = debuggerData.data
        let swizzle = InvalidEntrySwizzle(highPhysicalBit: kdbg?.l1tfHighPhysicalBitIndex, swizzleBit: kdbg?.l1tfSwizzleBitIndex)
        return X64AddressSpace(physical: physical, directoryTableBase: directoryTableBase, swizzle: swizzle)
    }

    /// Kernel pointers in the header that are canonical only with 57-bit addresses mean LA57:
    /// under 5-level paging kernel addresses look like 0xFF..., not 0xFFFF8....
    static func usesLA57(_ header: DumpHeader64) -> Bool {
        [header.psLoadedModuleList, header.psActiveProcessHead, header.kdDebuggerDataBlock]
            .contains { $0 != 0 && !isCanonical($0) && isCanonicalLA57($0) }
    }

    /// Reads KDDEBUGGER_DATA64 at `va` in memory. Windows decodes the block before writing a
    /// blue-screen dump; a block that is still encoded means a non-Windows writer (a hypervisor
    /// or a memory-to-dump converter) copied live memory.
    static func debuggerData(at va: UInt64, in space: some KernelAddressSpace) -> DebuggerDataLookup {
        let head: [UInt8]
        do { head = try space.read(va, count: 0x18) } catch { return .unreadable("KDDEBUGGER_DATA64 at 0x\(hex(va)): \(error)") }
        guard let (tag, size) = DebuggerData.headerFields(head), tag == DebuggerData.ownerTag, DebuggerData.plausibleSizes.contains(size) else {
            let fields = DebuggerData.headerFields(head)
            return .encoded(address: va, ownerTag: fields?.tag ?? 0, size: fields?.size ?? 0)
        }
        do {
            return .found(try DebuggerData(bytes: space.read(va, count: Int(size))), source: "memory at 0x\(hex(va))")
        } catch {
            return .unreadable("KDDEBUGGER_DATA64 at 0x\(hex(va)) (0x\(hex(size)) bytes): \(error)")
        }
    }

    /// A dump of a running system (a live acquisition tool's, some live dumps) can point at the
    /// block as the kernel keeps it, encoded. It lies in ntoskrnl's data, so the image base is
    /// the MZ header below it, and with KernBase known the block decodes from its plain text.
    static func decodedIfEncoded(_ lookup: DebuggerDataLookup, space: X64AddressSpace) -> DebuggerDataLookup {
        guard case .encoded(let address, _, _) = lookup, let kernelBase = GuestDiscovery.imageBase(containing: address, space: space),
              let decoded = GuestDiscovery.decodeDebuggerData(space: space, kernelBase: kernelBase), decoded.address == address else { return lookup }
        return decodedLookup(decoded.bytes, at: address) ?? lookup
    }

    /// The block at `address` as `GuestDiscovery` decoded it, saying so.
    static func decodedLookup(_ bytes: [UInt8], at address: UInt64) -> DebuggerDataLookup? {
        (try? DebuggerData(bytes: bytes)).map {
            .found($0, source: "memory at 0x\(hex(address)), encoded there (a running system's) and decoded without symbols from its known plain text (tag, size, KernBase)")
        }
    }

    /// A minidump keeps a clear copy of the block at DebuggerDataOffset. No more than the
    /// largest plausible block is read, whatever DebuggerDataSize claims.
    static func debuggerData(triageCopy triage: TriageDump, source: ByteSource) -> DebuggerDataLookup {
        guard triage.debuggerDataOffset != 0, triage.debuggerDataSize != 0 else { return .unreadable("the minidump has no KDDEBUGGER_DATA64 copy") }
        do {
            let length = min(triage.debuggerDataSize, DebuggerData.plausibleSizes.upperBound)
            let bytes = try source.bytes(at: UInt64(triage.debuggerDataOffset), count: UInt64(length), "the KDDEBUGGER_DATA64 copy")
            return .found(try DebuggerData(bytes: bytes), source: "minidump copy at file offset 0x\(hex(triage.debuggerDataOffset))")
        } catch {
            return .unreadable("KDDEBUGGER_DATA64 copy at file offset 0x\(hex(triage.debuggerDataOffset)): \(error)")
        }
    }

    /// Every range of kernel memory a minidump holds, with the VA it came from.
    static func capturedBlocks(_ triage: TriageDump, header: DumpHeader64, source: ByteSource, debuggerData: DebuggerData?, notes: inout [String]) -> [TriageMemory.Block] {
        var blocks: [TriageMemory.Block] = []
        func add(_ va: UInt64, _ offset: UInt32, _ size: UInt64) {
            if va != 0, offset != 0, size != 0 { blocks.append(.init(address: va, fileOffset: UInt64(offset), size: size)) }
        }
        add(triage.topOfStack, triage.callStackOffset, UInt64(triage.sizeOfCallStack))
        add(triage.dataPageAddress, triage.dataPageOffset, UInt64(triage.dataPageSize))
        add(header.kdDebuggerDataBlock, triage.debuggerDataOffset, UInt64(triage.debuggerDataSize))
        // The ETHREAD and EPROCESS copies: their VAs come from the KPRCB copy's CurrentThread and
        // the thread's ApcState.Process, at offsets KDBG gives.
        if let kdbg = debuggerData, let currentThread = kdbg.offsetPrcbCurrentThread, let apcProcess = kdbg.offsetKThreadApcProcess,
           let threadSize = kdbg.sizeEThread, let processSize = kdbg.sizeEProcess,
           let thread = try? source.u64(at: UInt64(triage.prcbOffset) + UInt64(currentThread)) {
            add(thread, triage.threadOffset, UInt64(threadSize))
            if let process = try? source.u64(at: UInt64(triage.threadOffset) + UInt64(apcProcess)) {
                add(process, triage.processOffset, UInt64(processSize))
            }
        }
        let (dataBlocks, missing) = triage.dataBlocks(in: source)
        for block in dataBlocks { add(block.address, block.offset, UInt64(block.size)) }
        if missing > 0 {
            notes.append("the data block table promises \(triage.dataBlocksCount) entries but \(missing) of them lie past the end of the file")
        }
        return blocks
    }
}

/// What became of the search for KDDEBUGGER_DATA64.
public enum DebuggerDataLookup: Sendable {
    /// A clear block, and where it was read from.
    case found(DebuggerData, source: String)
    /// The block is there but its OwnerTag/Size do not read "KDBG": it is encoded (KdpDataBlockEncoded)
    /// and its known plain text did not decode it; the header's own pointers still work.
    case encoded(address: UInt64, ownerTag: UInt32, size: UInt32)
    /// It could not be read at all.
    case unreadable(String)

    public var data: DebuggerData? {
        if case .found(let data, _) = self { return data }
        return nil
    }

    /// "clear", "encoded" or "unreadable", for reports and logs.
    public var status: String {
        switch self {
        case .found: "clear"
        case .encoded: "encoded"
        case .unreadable: "unreadable"
        }
    }
}
