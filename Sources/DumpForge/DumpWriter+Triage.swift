/// DumpType 4, the kernel minidump: TRIAGE_DUMP64 at 0x2000 and the pieces it points to, laid
/// out in the order Windows writes them (MM info, unloaded drivers, KPRCB, EPROCESS, ETHREAD,
/// stack, KDBG, driver list, string pool, data blocks), ending with the "TRGD" marker.
extension DumpWriter {
    func triageDump() -> ForgedDump {
        let crashing = kernel.processors[description.crashingProcessor]
        let owner = kernel.processes.first { $0.threads.contains { $0.ethread == crashing.currentThread } }
        let thread = owner?.threads.first { $0.ethread == crashing.currentThread }
        let read = { (va: UInt64, count: Int) in memory.read(root: kernel.directoryTableBase, va: va, count: count) }

        var file = ByteBuffer()
        var triage = ByteBuffer(count: 0x80)
        func place(_ bytes: [UInt8], alignment: Int = 8) -> Int {
            file.align(to: alignment)
            let offset = 0x2000 + file.count
            file.put(bytes, at: file.count)
            return offset
        }
        _ = place(Array(repeating: 0, count: 0x80))  // TRIAGE_DUMP64, patched in at the end

        var mm = ByteBuffer(count: 0x50)
        mm.put32(1, at: 0)
        mm.put32(0x50, at: 4)
        triage.put32(UInt32(place(mm.bytes)), at: 0x14)

        var unloaded = ByteBuffer(count: 8 + 0x38 * description.unloadedDrivers.count)
        unloaded.put32(UInt32(description.unloadedDrivers.count), at: 0)
        for (index, driver) in description.unloadedDrivers.enumerated() {
            let entry = 8 + 0x38 * index
            let name = String(driver.name.prefix(12))
            unloaded.put16(UInt16(name.utf16.count * 2), at: entry)
            unloaded.put16(UInt16(name.utf16.count * 2), at: entry + 2)
            unloaded.putUTF16(name, at: entry + 0x10)
            unloaded.put64(driver.startAddress, at: entry + 0x28)
            unloaded.put64(driver.endAddress, at: entry + 0x30)
        }
        triage.put32(UInt32(place(unloaded.bytes)), at: 0x18)

        let layout = BuildLayout.forging(description.buildNumber, shift: description.offsetShift)
        triage.put32(UInt32(place(read(crashing.kprcb, layout.kprcbSize))), at: 0x1C)
        if let owner { triage.put32(UInt32(place(read(owner.eprocess, layout.eprocessSize))), at: 0x20) }
        triage.put32(UInt32(place(read(crashing.currentThread, layout.ethreadSize))), at: 0x24)

        // The stack window starts a little below the CONTEXT's RSP (the writer's own frames)
        // and ends at the base of the stack that RSP is on: the thread's, or the interrupt stack
        // an NMI switched to, whose interrupted stack the minidump then does not hold.
        let top = crashing.context.rsp - 0x48
        let onInterruptStack = thread?.interruptStack.map { $0.contains(crashing.context.rsp) } ?? false
        let stackBase = (onInterruptStack ? thread?.interruptStack?.upperBound : thread?.stackBase) ?? (crashing.context.rsp + 0x1000) & ~0xFFF
        triage.put32(UInt32(place(read(top, Int(stackBase - top)))), at: 0x28)
        triage.put32(UInt32(stackBase - top), at: 0x2C)
        triage.put64(top, at: 0x48)

        // The data page: one page the writer chose to keep whole (here the crashing KPRCB's first).
        let dataPage = crashing.kprcb & ~0xFFF
        triage.put64(dataPage, at: 0x60)
        triage.put32(UInt32(place(read(dataPage, 0x1000))), at: 0x68)
        triage.put32(0x1000, at: 0x6C)

        triage.put32(UInt32(place(read(kernel.debuggerDataBlock, Layout19041.KDBG.size))), at: 0x70)
        triage.put32(UInt32(Layout19041.KDBG.size), at: 0x74)

        // Driver list: 0x90-byte entries whose synthesized KLDR-like record sits at +8.
        var drivers = ByteBuffer(count: 0x90 * kernel.modules.count)
        let listOffset = place(drivers.bytes)
        // The string pool follows the list directly (0x90 * n keeps the 8-byte alignment).
        var pool = ByteBuffer()
        let poolOffset = listOffset + drivers.count
        for (index, module) in kernel.modules.enumerated() {
            pool.align(to: 8)
            drivers.put32(UInt32(poolOffset + pool.count), at: 0x90 * index)
            let entry = pool.count
            pool.put32(UInt32(module.path.utf16.count), at: entry)
            pool.putUTF16(module.path, at: entry + 4)
            pool.put16(0, at: pool.count)
            let record = 0x90 * index + 8
            drivers.put64(module.base, at: record + 0x30)
            drivers.put32(module.size, at: record + 0x40)
            drivers.put32(module.checkSum, at: record + 0x78)
            drivers.put32(module.timeDateStamp, at: record + 0x80)
        }
        pool.align(to: 8)
        file.put(drivers.bytes, at: listOffset - 0x2000)
        triage.put32(UInt32(listOffset), at: 0x30)
        triage.put32(UInt32(kernel.modules.count), at: 0x34)
        triage.put32(UInt32(place(pool.bytes)), at: 0x38)
        triage.put32(UInt32(pool.count), at: 0x3C)
        triage.put32(0xFFFF_FFFF, at: 0x44)

        // Data blocks: the page around each RIP on the crashing stack, each image's first 0x100
        // bytes (its MZ/PE headers), the 256 bytes at PsActiveProcessHead, and, as Windows
        // captures around the addresses a crash's context refers to, 0x100 bytes around each
        // mapped kernel address a CONTEXT record's registers hold or the first 0x40 bytes of
        // the stack it describes (its frame's locals).
        var blocks: [(UInt64, [UInt8])] = []
        for frame in crashing.context.frames {
            let page = frame.rip & ~0xFFF
            if !blocks.contains(where: { $0.0 == page }) { blocks.append((page, read(page, 0x1000))) }
        }
        for module in kernel.modules { blocks.append((module.base, read(module.base, 0x100))) }
        blocks.append((kernel.psActiveProcessHead, read(kernel.psActiveProcessHead, 0x100)))
        for (index, parameter) in description.bugCheckParameters.prefix(4).enumerated() where description.triageCapturesContextMemory {
            guard case .contextRecord = parameter else { continue }
            let context = read(kernel.bugCheckParameters[index], 0x4D0)
            func u64(_ bytes: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) } }
            let locals = read(u64(context, 0x78 + 8 * 4), 0x40)  // RSP is register 4
            for value in (0..<16).map({ u64(context, 0x78 + 8 * $0) }) + (0..<8).map({ u64(locals, 8 * $0) }) {
                let start = (value & ~0xF) &- 0x80
                guard value >> 47 == 0x1_FFFF, memory.translate(root: kernel.directoryTableBase, va: start) != nil,
                      memory.translate(root: kernel.directoryTableBase, va: start + 0xFF) != nil,
                      !blocks.contains(where: { $0.0 == start }) else { continue }
                blocks.append((start, read(start, 0x100)))
            }
        }
        let tableOffset = place(Array(repeating: 0, count: 16 * blocks.count))
        var table = ByteBuffer(count: 16 * blocks.count)
        for (index, (address, bytes)) in blocks.enumerated() {
            table.put64(address, at: 16 * index)
            table.put32(UInt32(place(bytes)), at: 16 * index + 8)
            table.put32(UInt32(bytes.count), at: 16 * index + 12)
        }
        file.put(table.bytes, at: tableOffset - 0x2000)
        triage.put32(UInt32(tableOffset), at: 0x78)
        triage.put32(UInt32(blocks.count), at: 0x7C)

        let end = place(Array("TRGD".utf8), alignment: 4) + 4
        triage.put32(UInt32(end), at: 0x04)
        triage.put32(UInt32(end - 4), at: 0x08)
        triage.put32(0x348, at: 0x0C)
        triage.put32(0xF00, at: 0x10)
        file.put(triage.bytes, at: 0)

        var h = header(dumpType: 4, requiredSpace: UInt64(end) + 0x2_0000)
        h.put32(0xCFF, at: 0x1038)  // MiniDumpFields: basic info, MM info, debugger data, data blocks
        return ForgedDump(size: UInt64(end), chunks: [.init(offset: 0, bytes: h.bytes), .init(offset: 0x2000, bytes: file.bytes)], kernel: kernel)
    }
}
