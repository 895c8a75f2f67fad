/// A dump the forge produced: the file as a list of non-zero chunks over a (mostly sparse)
/// length, plus the record of truth. Zero pages are not materialised: written to disk they
/// become holes, so a 16 GiB full dump takes seconds and a few megabytes.
public struct ForgedDump: Sendable {
    public struct Chunk: Sendable {
        public var offset: UInt64
        public var bytes: [UInt8]
    }

    public var size: UInt64
    public var chunks: [Chunk]
    public var kernel: ForgedKernel

    /// The whole file in memory; for small dumps (tests).
    public func contiguousBytes() -> [UInt8] {
        precondition(size <= 1 << 30, "forge: \(size) bytes is too large to hold in memory; write it to a sparse file")
        var bytes = [UInt8](repeating: 0, count: Int(size))
        for chunk in chunks { bytes.replaceSubrange(Int(chunk.offset)..<Int(chunk.offset) + chunk.bytes.count, with: chunk.bytes) }
        return bytes
    }
}

/// The forge's entry point.
public enum Forge {
    /// Builds the kernel state `description` asks for and writes it as the KVM host would
    /// capture the machine: a QEMU ELF core of all its RAM with every vCPU's registers (the
    /// description's dump kind is not used).
    public static func elfCore(_ description: DumpDescription) -> ForgedDump {
        let forge = KernelForge(description)
        let kernel = forge.build()
        return DumpWriter(description: description, kernel: kernel, memory: forge.memory).elfCore()
    }

    /// The same capture as a kdump-compressed file (`dump-guest-memory` with a kdump format).
    public static func kdump(_ description: DumpDescription, _ options: KdumpOptions = KdumpOptions()) -> ForgedDump {
        let forge = KernelForge(description)
        let kernel = forge.build()
        return DumpWriter(description: description, kernel: kernel, memory: forge.memory).kdump(options)
    }

    /// The machine's RAM as a flat image, byte N at guest physical address N (holes stay zero):
    /// what a hypervisor backs guest memory with (QEMU's `-object memory-backend-file`).
    public static func guestRAM(_ description: DumpDescription) -> ForgedDump {
        let forge = KernelForge(description)
        let kernel = forge.build()
        let size = (description.memory.map(\.upperBound).max() ?? 0) * 0x1000
        let chunks = forge.memory.ram.pages.sorted { $0.key < $1.key }.filter { pfn, _ in description.memory.contains { $0.contains(pfn) } }
            .map { ForgedDump.Chunk(offset: $0.key * 0x1000, bytes: $0.value) }
        return ForgedDump(size: size, chunks: chunks, kernel: kernel)
    }

    /// Builds the kernel state `description` asks for and writes it as a dump of its kind.
    public static func dump(_ description: DumpDescription) -> ForgedDump {
        let forge = KernelForge(description)
        let kernel = forge.build()
        let writer = DumpWriter(description: description, kernel: kernel, memory: forge.memory)
        switch description.kind {
        case .full: return writer.fullDump()
        case .bitmapFull: return writer.bitmapDump(kernelOnly: false)
        case .bitmapKernel: return writer.bitmapDump(kernelOnly: true)
        case .triage: return writer.triageDump()
        case .rangeKernel: return writer.rangeDump(.kernel)
        case .rangeKernelAndUser: return writer.rangeDump(.kernelAndUser)
        case .rangeComplete: return writer.rangeDump(.complete)
        }
    }
}
