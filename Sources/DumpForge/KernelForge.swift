/// Builds a Windows 10 (19041) x64 kernel's state in forged physical memory: page tables with the
/// self-map entry and large pages, module images and PsLoadedModuleList, KDDEBUGGER_DATA64 in
/// clear, processes with their own page tables and threads with unwindable stacks, and a KPCR and
/// KPRCB per CPU with its timer table and saved CONTEXT.
///
/// Kernel virtual layout (each base moved by the layout seed, as KASLR does):
///   0xFFFFF800'00000000 +  ntoskrnl image, then its globals (KDBG, list heads, KiProcessorBlock)
///                          at +1 MiB, all inside one 2 MiB large page
///   nt + 64 MiB +          the other driver images, 4 KiB pages
///   0xFFFFA000'00000000 +  "pool": KLDR entries, names, EPROCESS, ETHREAD, KPCR/KPRCB
///   0xFFFFE000'00000000 +  kernel stacks, 0x6000 bytes each with an unmapped guard page
///   0xFFFFD000'00000000 +  one 1 GiB page onto physical 0 (exercises PDPTE.PS)
final class KernelForge {
    let description: DumpDescription
    /// The offsets of the build being forged.
    let layout: BuildLayout
    let memory: ForgeMemory
    var random: SeededRandom
    let root: UInt64

    let kernelBase: UInt64
    let globals: UInt64
    private var poolNext: UInt64
    private var poolMappedEnd: UInt64
    var stackNext: UInt64
    let selfMapIndex: UInt64

    private(set) var modules: [ForgedKernel.Module] = []
    private var placements: [String: [String: StackForge.Placement]] = [:]
    var processes: [ForgedKernel.Process] = []
    var processors: [ForgedKernel.Processor] = []
    var probes: [ForgedKernel.Probe] = []
    var processRoots: [UInt64] = []
    /// Each module's .pdata (RVA, size), for its KLDR entry.
    private var exceptionTables: [(rva: UInt32, size: UInt32)] = []

    // Where nt's globals sit, relative to `globals`.
    static let kdbgOffset: UInt64 = 0x0
    static let debuggerListHead: UInt64 = 0x3F0
    static let loadedModuleListOffset: UInt64 = 0x400
    static let activeProcessHeadOffset: UInt64 = 0x410
    static let processorBlockOffset: UInt64 = 0x440
    static let buildLabOffset: UInt64 = 0x800
    static let pfnDatabaseOffset: UInt64 = 0x900
    static let spinLockOffset: UInt64 = 0xA00
    /// nt!MmUnloadedDrivers (a pointer to the array) and nt!MmLastUnloadedDriver (a ULONG).
    static let unloadedDriversOffset: UInt64 = 0xA10
    static let lastUnloadedDriverOffset: UInt64 = 0xA18

    /// The one KSPIN_LOCK scenarios contend on (a global in nt's data, like a driver's lock).
    var spinLock: UInt64 { globals + Self.spinLockOffset }

    init(_ description: DumpDescription) {
        precondition(!description.modules.isEmpty, "forge: describe at least the kernel module")
        precondition(description.processors >= 1 && description.processors <= 64, "forge: 1 to 64 processors")
        self.description = description
        layout = BuildLayout.forging(description.buildNumber, shift: description.offsetShift)
        random = SeededRandom(seed: description.layoutSeed)
        let ram = PhysicalRAM(ranges: description.memory, firstFrame: 0x1000 + random.below(0x400))
        memory = ForgeMemory(ram: ram)
        root = memory.newRoot()
        kernelBase = 0xFFFF_F800_0000_0000 + (0x10 + random.below(0x1F0)) * 0x20_0000
        globals = kernelBase + 0x10_0000
        poolNext = 0xFFFF_A000_0000_0000 + random.below(0x1000) << 24
        poolMappedEnd = poolNext
        stackNext = 0xFFFF_E000_0000_0000 + random.below(0x1000) << 24
        // The PML4 index that points back at the PML4 itself; Windows 10 1607+ randomizes it.
        let used: Set<UInt64> = [0x140, 0x1A0, 0x1C0, 0x1F0, 0x150]
        let candidates = (0x100..<0x1F0).filter { !used.contains(UInt64($0)) }
        selfMapIndex = UInt64(candidates[Int(random.below(UInt64(candidates.count)))])
    }

    var pteBase: UInt64 { 0xFFFF_0000_0000_0000 | selfMapIndex << 39 }

    /// Runs every step and returns the record of what went where.
    func build() -> ForgedKernel {
        memory.ram.write64(root | 0x63, at: root + 8 * selfMapIndex)  // self-map: present, writable, accessed, dirty
        placeImages()
        writeModuleList()
        write64(spinLock, 1)  // held: whoever described waiters, someone holds it
        writeProcessesAndProcessors()
        let timers = writeTimers()
        writeUnloadedDrivers()
        let parameters = resolveBugCheckParameters(timers: timers)
        writeDebuggerData()
        let idt = writeInterruptTable()
        writeSharedUserData()
        mapDirectGigabyte()
        addFailureProbes()
        shareKernelHalf()
        return ForgedKernel(
            directoryTableBase: root, bugCheckParameters: parameters, timers: timers, kernelBase: kernelBase, debuggerDataBlock: globals + Self.kdbgOffset,
            psLoadedModuleList: globals + Self.loadedModuleListOffset, psActiveProcessHead: globals + Self.activeProcessHeadOffset,
            kiProcessorBlock: globals + Self.processorBlockOffset, pteBase: pteBase, selfMapIndex: selfMapIndex,
            modules: modules, processes: processes, processors: processors, mappings: memory.mappings, probes: probes, interruptTable: idt)
    }

    // MARK: memory helpers

    func write(_ va: UInt64, _ buffer: ByteBuffer) { memory.write(root: root, va: va, buffer) }
    func write64(_ va: UInt64, _ value: UInt64) { memory.write64(root: root, va: va, value) }

    /// Kernel pool: 16-byte aligned allocations, fresh pages mapped as the cursor advances.
    func allocatePool(_ size: Int, alignment: UInt64 = 16) -> UInt64 {
        let address = (poolNext + alignment - 1) / alignment * alignment
        poolNext = address + UInt64(size)
        while poolMappedEnd < poolNext {
            memory.mapFresh(root: root, va: poolMappedEnd, pages: 1)
            poolMappedEnd += 0x1000
        }
        return address
    }

    /// A UNICODE_STRING's buffer in pool; returns (buffer VA, length in bytes).
    func poolString(_ text: String) -> (UInt64, UInt16) {
        let bytes = utf16Bytes(text)
        let buffer = allocatePool(bytes.count + 2)
        write(buffer, ByteBuffer(bytes))
        return (buffer, UInt16(bytes.count))
    }

    /// Writes a doubly linked LIST_ENTRY chain: head <-> entries[0] <-> ... <-> head.
    func link(head: UInt64, _ entries: [UInt64]) {
        let ring = [head] + entries
        for (index, node) in ring.enumerated() {
            write64(node, ring[(index + 1) % ring.count])  // Flink
            write64(node + 8, ring[(index + ring.count - 1) % ring.count])  // Blink
        }
    }

    // MARK: images

    private func placeImages() {
        var driverNext = kernelBase + 0x400_0000
        for (index, module) in description.modules.enumerated() {
            let compiled = module.compiledImage.map(CompiledImage.init(file:))
            let image = compiled?.image ?? forgePEImage(name: module.name, timeDateStamp: module.timeDateStamp, checkSum: module.checkSum,
                                                        functions: module.functions, reproducible: module.reproducible, codeView: module.codeView)
            let base: UInt64
            if index == 0 {
                // ntoskrnl: one 2 MiB large page holds the image and, 1 MiB in, its globals.
                precondition(image.sizeOfImage <= 0x10_0000, "forge: the kernel image must fit in 1 MiB")
                base = kernelBase
                let frame = memory.ram.allocate(count: 512, alignment: 512)
                memory.map(root: root, va: base, pa: frame << 12, pageSize: 0x20_0000, executable: true)
            } else {
                driverNext += random.below(0x40) * 0x1_0000
                base = driverNext
                memory.mapFresh(root: root, va: base, pages: Int(image.sizeOfImage / 0x1000), executable: true)
                driverNext += (UInt64(image.sizeOfImage) + 0xFFFF) & ~0xFFFF
            }
            memory.write(root: root, va: base, image.bytes)
            var functions: [String: Range<UInt64>] = [:]
            var placed: [String: StackForge.Placement] = [:]
            let byName = Dictionary(uniqueKeysWithValues: module.functions.map { ($0.name, $0) })
            for (name, range) in image.functions {
                functions[name] = base + UInt64(range.lowerBound)..<base + UInt64(range.upperBound)
                if let compiled {
                    // A frame-pointer function moves RSP after its prolog (an alloca); its
                    // callees' frames start below that, and only the frame pointer finds it again.
                    let prolog = compiled.prologs[name] ?? []
                    let usesFramePointer = prolog.contains { if case .setFramePointer = $0 { true } else { false } }
                    placed[name] = StackForge.Placement(address: base + UInt64(range.lowerBound), prolog: prolog,
                                                        dynamicAllocation: usesFramePointer ? 0x60 : 0, compiled: true)
                } else {
                    placed[name] = StackForge.Placement(address: base + UInt64(range.lowerBound), prolog: Self.executedProlog(name, byName))
                }
            }
            placements[module.name] = placed
            modules.append(ForgedKernel.Module(
                name: module.name, path: module.path, base: base, size: image.sizeOfImage, timeDateStamp: image.timeDateStamp,
                checkSum: image.checkSum, entry: 0, functions: functions))
            exceptionTables.append((image.exceptionTableRVA, image.exceptionTableSize))
        }
    }

    /// A chained fragment runs its parents' prologs before its own.
    static func executedProlog(_ name: String, _ functions: [String: ForgedFunction]) -> [PrologStep] {
        guard let function = functions[name] else { return [] }
        return (function.chainedTo.map { executedProlog($0, functions) } ?? []) + function.prolog
    }

    func placement(_ location: CodeLocation) -> StackForge.Placement {
        guard let placed = placements[location.module]?[location.function] else {
            fatalError("forge: stack names \(location.module)!\(location.function), which no module describes")
        }
        return placed
    }

    // MARK: PsLoadedModuleList

    private func writeModuleList() {
        var entries: [UInt64] = []
        for index in modules.indices {
            let module = modules[index]
            let entry = allocatePool(Layout19041.KLDR.size)
            var kldr = ByteBuffer(count: Layout19041.KLDR.size)
            kldr.put64(module.base + UInt64(exceptionTables[index].rva), at: Layout19041.KLDR.exceptionTable)
            kldr.put32(exceptionTables[index].size, at: Layout19041.KLDR.exceptionTableSize)
            kldr.put64(module.base, at: Layout19041.KLDR.dllBase)
            kldr.put64(module.base + 0x1000, at: Layout19041.KLDR.entryPoint)
            kldr.put32(module.size, at: Layout19041.KLDR.sizeOfImage)
            let (full, fullLength) = poolString(module.path)
            let (base, baseLength) = poolString(module.name)
            for (field, buffer, length) in [(Layout19041.KLDR.fullDllName, full, fullLength), (Layout19041.KLDR.baseDllName, base, baseLength)] {
                kldr.put16(length, at: field)
                kldr.put16(length + 2, at: field + 2)
                kldr.put64(buffer, at: field + 8)
            }
            kldr.put32(0x0C00_4000, at: Layout19041.KLDR.flags)
            kldr.put16(1, at: Layout19041.KLDR.loadCount)
            kldr.put32(module.checkSum, at: Layout19041.KLDR.checkSum)
            kldr.put32(module.timeDateStamp, at: Layout19041.KLDR.timeDateStamp)
            write(entry, kldr)
            modules[index].entry = entry
            entries.append(entry)
        }
        link(head: globals + Self.loadedModuleListOffset, entries)
    }
}
