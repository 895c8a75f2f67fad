import DumpFormat

/// Finds a Windows kernel in a hypervisor's capture of the guest, with no help from the guest
/// and no symbol file: what a KVM host's `dump-guest-memory` gives is physical memory and the
/// vCPUs' registers, nothing more.
///
/// - Page tables: a vCPU's CR3, accepted only when it translates KUSER_SHARED_DATA
///   (0xFFFFF78000000000, mapped by every x64 Windows kernel); else a scan of physical memory
///   for a top-level table with a self-referencing kernel-half entry (the PTE self-map) that
///   does.
/// - Build, time and CPUs: KUSER_SHARED_DATA's NtBuildNumber (+0x260), SystemTime (+0x14),
///   InterruptTime (+0x08) and ActiveProcessorCount (+0x3C0).
/// - The kernel image: an interrupt handler's address from the IDT (a vCPU's IDT base, or
///   KPCR.IdtBase at +0x38 through the GS base), then the MZ header at or below it. vCPUs in
///   reset or firmware state give no IDT: then a clear KDDEBUGGER_DATA64 found by scanning
///   physical memory names the kernel base (KernBase).
/// - KDDEBUGGER_DATA64: its "KDBG" tag, size and KernBase, found by scanning the kernel image;
///   a running kernel keeps it encoded, and then it is decoded from that known plain text (see
///   `decodeDebuggerData`), never from a PDB.
public enum GuestDiscovery {
    public static let sharedUserData: UInt64 = 0xFFFF_F780_0000_0000

    public struct Kernel: Sendable {
        public var directoryTableBase: UInt64
        /// Where the page tables came from ("CR3 of vCPU 0", "a scan of physical memory").
        public var directoryTableBaseSource: String
        public var buildNumber: UInt32
        public var systemTime: UInt64
        public var systemUpTime: UInt64
        /// KUSER_SHARED_DATA.ActiveProcessorCount (+0x3C0), when it reads as a count.
        public var processorCount: UInt32?
        public var kernelBase: UInt64?
        public var debuggerDataBlock: UInt64?
        /// The block's bytes, decoded, when memory holds it encoded.
        public var decodedDebuggerData: [UInt8]?
        /// What could not be found, and why.
        public var notes: [String]
    }

    /// The vCPU registers a discovery can use.
    public struct VCPU: Sendable {
        public var cr3: UInt64?
        public var gsBase: UInt64?
        public var kernelGSBase: UInt64?
        public var idtBase: UInt64?

        public init(cr3: UInt64?, gsBase: UInt64?, kernelGSBase: UInt64?, idtBase: UInt64?) {
            self.cr3 = cr3
            self.gsBase = gsBase
            self.kernelGSBase = kernelGSBase
            self.idtBase = idtBase
        }
    }

    /// Physical pages scanned for page tables at most (16 GiB).
    static let scanLimitPages: UInt64 = 1 << 22

    public static func find(physical: PhysicalMemory, vcpus: [VCPU]) throws -> Kernel {
        var notes: [String] = []
        guard let (dtb, dtbSource) = directoryTableBase(physical: physical, vcpus: vcpus, notes: &notes) else {
            throw DumpError(.corrupt, "no page tables in the capture translate KUSER_SHARED_DATA (0xFFFFF78000000000): "
                            + "neither a vCPU's CR3 nor a self-referencing table found in physical memory; this is no running x64 Windows")
        }
        let space = X64AddressSpace(physical: physical, directoryTableBase: dtb)
        let shared = (try? space.read(sharedUserData, count: 0x3C4)) ?? []
        func u32(_ at: Int) -> UInt64 { shared.count >= at + 4 ? (0..<4).reduce(0) { $0 | UInt64(shared[at + $1]) << (8 * UInt64($1)) } : 0 }
        // KSYSTEM_TIME: LowPart, High1Time, High2Time; the two highs differ while the kernel
        // is updating it, and a capture can catch that moment.
        func time(_ at: Int) -> UInt64 { u32(at + 4) == u32(at + 8) ? u32(at) | u32(at + 4) << 32 : 0 }
        var kernel = Kernel(directoryTableBase: dtb, directoryTableBaseSource: dtbSource, buildNumber: UInt32(u32(0x260) & 0xFFFF),
                            systemTime: time(0x14), systemUpTime: time(0x08),
                            processorCount: (1...4096).contains(u32(0x3C0)) ? UInt32(u32(0x3C0)) : nil, kernelBase: nil, debuggerDataBlock: nil,
                            decodedDebuggerData: nil, notes: notes)
        kernel.kernelBase = kernelBase(space: space, vcpus: vcpus, notes: &kernel.notes)
            ?? kernelBaseFromPhysicalScan(physical: physical, space: space, notes: &kernel.notes)
        if let base = kernel.kernelBase {
            if let clear = debuggerDataBlock(space: space, kernelBase: base) {
                kernel.debuggerDataBlock = clear
            } else if let (address, bytes) = decodeDebuggerData(space: space, kernelBase: base) {
                kernel.debuggerDataBlock = address
                kernel.decodedDebuggerData = bytes
            } else {
                kernel.notes.append("no KDDEBUGGER_DATA64 in the kernel image at 0x\(hex(base)), clear or encoded")
            }
        }
        return kernel
    }

    static func translatesSharedUserData(_ dtb: UInt64, _ physical: PhysicalMemory) -> Bool {
        (try? X64AddressSpace(physical: physical, directoryTableBase: dtb).read(sharedUserData, count: 8)) != nil
    }

    static func directoryTableBase(physical: PhysicalMemory, vcpus: [VCPU], notes: inout [String]) -> (UInt64, String)? {
        for (index, vcpu) in vcpus.enumerated() {
            guard let cr3 = vcpu.cr3 else { continue }
            let dtb = cr3 & 0x000F_FFFF_FFFF_F000
            if translatesSharedUserData(dtb, physical) { return (dtb, "CR3 of vCPU \(index)") }
            notes.append("vCPU \(index)'s CR3 0x\(hex(cr3)) does not translate KUSER_SHARED_DATA (a vCPU in firmware or reset)")
        }
        // A top-level table maps itself through one kernel-half entry (Windows' PTE self-map).
        return firstPhysicalPage(physical, scanning: "page tables", notes: &notes) { address, page in
            // One self-referencing slot is the self-map; the first one decides for this page.
            guard let slot = (256..<512).first(where: { u64(page, 8 * $0) & 0x000F_FFFF_FFFF_F001 == address | 1 }),
                  translatesSharedUserData(address, physical) else { return nil }
            return (address, "a scan of physical memory (self-map entry \(slot))")
        }
    }

    /// Calls `body` with each stored physical page (its address and bytes), up to
    /// `scanLimitPages`, until it returns a value; notes when the limit stopped the scan.
    static func firstPhysicalPage<T>(_ physical: PhysicalMemory, scanning what: String, notes: inout [String], _ body: (UInt64, [UInt8]) -> T?) -> T? {
        var scanned: UInt64 = 0
        for run in physical.runs(limit: Int(clamping: scanLimitPages)).runs {  // each run holds a page at least
            for pfn in run.basePage..<run.basePage + run.pageCount {
                scanned += 1
                guard scanned <= scanLimitPages else {
                    notes.append("the scan of physical memory for \(what) stopped after \(scanLimitPages) pages")
                    return nil
                }
                if let page = try? physical.read(physical: pfn * 0x1000, count: 0x1000), let found = body(pfn * 0x1000, page) { return found }
            }
        }
        return nil
    }

    /// Where a page holds a clear KDDEBUGGER_DATA64 header: the "KDBG" tag at +0x10 and a
    /// plausible size at +0x14; each with the KernBase (+0x18) it names.
    static func clearDebuggerData(in page: [UInt8]) -> [(offset: Int, kernelBase: UInt64)] {
        stride(from: 0, to: 0x1000 - 0x20, by: 8).compactMap { at in
            let tagged = u64(page, at + 0x10)
            guard tagged & 0xFFFF_FFFF == 0x4742_444B, DebuggerData.plausibleSizes.contains(UInt32(tagged >> 32)) else { return nil }
            return (at, u64(page, at + 0x18))
        }
    }

    /// The kernel image's base: an IDT handler (every one is in ntoskrnl) and the MZ header at
    /// or below it, within 64 MiB.
    static func kernelBase(space: X64AddressSpace, vcpus: [VCPU], notes: inout [String]) -> UInt64? {
        // Every CPU's IDT leads to the same kernel: a few distinct tables are plenty, whatever
        // number of vCPUs a core claims.
        var tables: [UInt64] = []
        func consider(_ idt: UInt64) { if idt >> 47 == 0x1_FFFF, !tables.contains(idt), tables.count < 4 { tables.append(idt) } }
        for vcpu in vcpus.prefix(64) {
            if let idt = vcpu.idtBase { consider(idt) }
            for base in [vcpu.gsBase, vcpu.kernelGSBase].compactMap({ $0 }) where base >> 47 == 0x1_FFFF {
                if let idt = try? space.u64(base &+ 0x38) { consider(idt) }  // KPCR.IdtBase
            }
        }
        for idt in tables {
            guard let gate = try? space.read(idt, count: 16) else { continue }
            func field(_ at: Int, _ width: Int) -> UInt64 { (0..<width).reduce(0) { $0 | UInt64(gate[at + $1]) << (8 * UInt64($1)) } }
            let handler = field(0, 2) | field(6, 2) << 16 | field(8, 4) << 32
            guard handler >> 47 == 0x1_FFFF else { continue }
            if let base = imageBase(containing: handler, space: space) { return base }
        }
        notes.append(tables.isEmpty ? "no vCPU gave an IDT (neither its IDT base nor a KPCR through its GS base): the kernel image was not found"
                                    : "no MZ header within 64 MiB below the IDT's handlers: the kernel image was not found")
        return nil
    }

    /// The base of the PE image that holds `address`: the first page at or below it, within
    /// 64 MiB, that starts with an MZ header whose e_lfanew leads to "PE\0\0".
    static func imageBase(containing address: UInt64, space: X64AddressSpace) -> UInt64? {
        var page = address & ~0xFFF
        for _ in 0..<(0x400_0000 / 0x1000) {
            if let head = try? space.read(page, count: 0x40), head[0] == 0x4D, head[1] == 0x5A {
                let peOffset = UInt64(head[0x3C]) | UInt64(head[0x3D]) << 8 | UInt64(head[0x3E]) << 16 | UInt64(head[0x3F]) << 24
                if peOffset < 0x1000, (try? space.read(page &+ peOffset, count: 4)) == [0x50, 0x45, 0, 0] { return page }
            }
            page &-= 0x1000
        }
        return nil
    }

    /// KernBase from a clear KDDEBUGGER_DATA64 anywhere in physical memory: its tag and size at
    /// +0x10 and a KernBase whose page holds an MZ header in these page tables.
    static func kernelBaseFromPhysicalScan(physical: PhysicalMemory, space: X64AddressSpace, notes: inout [String]) -> UInt64? {
        let found = firstPhysicalPage(physical, scanning: "KDDEBUGGER_DATA64", notes: &notes) { address, page in
            clearDebuggerData(in: page).first { _, base in
                base >> 47 == 0x1_FFFF && base & 0xFFF == 0 && (try? space.read(base, count: 2)) == [0x4D, 0x5A]
            }.map { (address + UInt64($0.offset), $0.kernelBase) }
        }
        guard let (block, base) = found else { return nil }
        notes.append("the kernel image was found through a clear KDDEBUGGER_DATA64 at physical 0x\(hex(block))")
        return base
    }

    /// Calls `body` with each readable page of the kernel image (or of the 2 MiB after its
    /// start, where a small image keeps its data; 64 MiB at most) until it returns a value.
    static func firstInImage<T>(space: X64AddressSpace, kernelBase: UInt64, _ body: (UInt64, [UInt8]) -> T?) -> T? {
        let sizeOfImage = (try? space.read(kernelBase, count: 0x40)).flatMap { head -> UInt64? in
            let pe = UInt64(head[0x3C]) | UInt64(head[0x3D]) << 8
            return (try? space.read(kernelBase &+ pe &+ 0x50, count: 4)).map { $0.reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        } ?? 0
        let pages = (min(max(sizeOfImage, 0x20_0000), 0x400_0000) + 0xFFF) / 0x1000
        for index in 0..<pages {
            let (page, overflow) = kernelBase.addingReportingOverflow(index * 0x1000)
            guard !overflow else { return nil }
            if let bytes = try? space.read(page, count: 0x1000), let found = body(page, bytes) { return found }
        }
        return nil
    }

    static func u64(_ bytes: [UInt8], _ at: Int) -> UInt64 { bytes.littleEndian(at: at, width: 8) }

    /// KDDEBUGGER_DATA64 in clear: the "KDBG" tag at +0x10, a plausible size at +0x14 and
    /// KernBase at +0x18.
    static func debuggerDataBlock(space: X64AddressSpace, kernelBase: UInt64) -> UInt64? {
        firstInImage(space: space, kernelBase: kernelBase) { page, bytes in
            clearDebuggerData(in: bytes).first { $0.kernelBase == kernelBase }.map { page + UInt64($0.offset) }
        }
    }

    /// An encoded KDDEBUGGER_DATA64, decoded without symbols. A running kernel keeps every qword
    /// E of the block as KdEncodeDataBlock left it; the decoding (format notes §4.4) is
    /// D = BSWAP(ROL(E ^ KiWaitNever, KiWaitNever & 63) ^ &KdpDataBlockEncoded) ^ KiWaitAlways.
    /// ROL distributes over XOR and BSWAP is linear, so for a rotation r the three unknowns fold
    /// into one constant C: D = BSWAP(ROL(E, r) ^ C). Two qwords are known in plain text: +0x10
    /// (the "KDBG" tag and the block's size) and +0x18 (KernBase, found through the IDT). Their
    /// XOR cancels C: BSWAP(D₂ ^ D₃) = ROL(E₂ ^ E₃, r). So each 8-byte position of the image is
    /// one dictionary lookup of E₂ ^ E₃ among the rotations of BSWAP(D₂ ^ D₃) for every
    /// plausible size; a hit gives r, then C, then every qword of the block.
    static func decodeDebuggerData(space: X64AddressSpace, kernelBase: UInt64) -> (address: UInt64, bytes: [UInt8])? {
        var rotations: [UInt64: (size: UInt32, rotation: UInt64)] = [:]
        for size in stride(from: DebuggerData.plausibleSizes.lowerBound, through: DebuggerData.plausibleSizes.upperBound, by: 8) {
            let target = ((UInt64(size) << 32 | 0x4742_444B) ^ kernelBase).byteSwapped
            for r in UInt64(0)..<64 { rotations[r == 0 ? target : target >> r | target << (64 - r)] = (size, r) }  // ROR(target, r)
        }
        func rol(_ value: UInt64, _ r: UInt64) -> UInt64 { r == 0 ? value : value << r | value >> (64 - r) }
        return firstInImage(space: space, kernelBase: kernelBase) { page, bytes -> (address: UInt64, bytes: [UInt8])? in
            for at in stride(from: 0, to: 0x1000 - 0x20, by: 8) {
                let tagged = u64(bytes, at + 0x10), based = u64(bytes, at + 0x18)
                guard let (size, r) = rotations[tagged ^ based] else { continue }
                let constant = (UInt64(size) << 32 | 0x4742_444B).byteSwapped ^ rol(tagged, r)
                let address = page + UInt64(at)
                guard let encoded = try? space.read(address, count: Int(size)) else { continue }
                var decoded: [UInt8] = []
                decoded.reserveCapacity(Int(size))
                for qword in stride(from: 0, to: Int(size) & ~7, by: 8) {
                    let value = (rol(u64(encoded, qword), r) ^ constant).byteSwapped
                    decoded += (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
                }
                // KernBase decodes right by construction; what else must hold is checked: the
                // list head is a kernel address, and PsLoadedModuleList an nt global.
                let moduleList = u64(decoded, 0x48)
                guard u64(decoded, 0) >> 47 == 0x1_FFFF, moduleList >= kernelBase, moduleList - kernelBase < 0x400_0000 else { continue }
                return (address, decoded)
            }
            return nil
        }
    }
}
