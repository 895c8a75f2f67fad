import DumpFormat
import DumpMemory

/// Finds where a kernel VA's bytes sit in a dump file, so tests can damage them in place.
enum DumpMemoryProbe {
    static func fileOffset(of va: UInt64, in source: ByteSource) throws -> UInt64 {
        let dump = try KernelDump(source: source)
        let space = try dump.addressSpace(directoryTableBase: dump.header.directoryTableBase)
        let pa = try space.translate(va).get()
        guard case .inFile(let offset) = dump.physical?.locate(pfn: pa >> 12) else { throw MemoryError(.physicalPageNotInDump, address: va) }
        return offset + (pa & 0xFFF)
    }
}
