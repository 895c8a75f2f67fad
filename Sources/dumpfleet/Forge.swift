import ArgumentParser
import CPageCodecs
import DumpFile
import DumpForge

/// `dumpfleet forge`: writes a synthetic dump from the standard description.
struct Forge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a realistic synthetic Windows 10 (19041) x64 kernel dump.",
        discussion: """
        The dump describes a 2-CPU VM: ntoskrnl, hal and driver images with exports and unwind \
        data, processes and threads with real stacks, KDDEBUGGER_DATA64 in clear, page tables \
        with the self-map entry and large pages, and a PCI hole below 4 GiB. Zero pages are \
        written as file holes, so large dumps take seconds and little disk. --kind qemu-elf \
        writes the same machine as its KVM host would capture it (a QEMU ELF core of its RAM with \
        every vCPU's registers, no bug check); --kind qemu-kdump the same as QEMU's kdump-zlib \
        file (flattened, each page compressed).
        """
    )

    enum Kind: String, ExpressibleByArgument, CaseIterable {
        case full, bitmapFull = "bitmap-full", bitmapKernel = "bitmap-kernel", minidump
        case rangeKernel = "range-kernel", rangeKernelAndUser = "range-kernel-user", rangeComplete = "range-complete"
        /// The machine as its KVM host captures it (`virsh dump --memory-only`): a QEMU ELF core.
        case qemuElf = "qemu-elf"
        /// The same capture as QEMU writes kdump-zlib: flattened, each page compressed.
        case qemuKdump = "qemu-kdump"
        /// Its RAM as a raw image (byte N at physical address N), as a hypervisor backs it.
        case raw

        var dumpKind: DumpDescription.DumpKind {
            switch self {
            case .full, .qemuElf, .qemuKdump, .raw: .full
            case .bitmapFull: .bitmapFull
            case .bitmapKernel: .bitmapKernel
            case .minidump: .triage
            case .rangeKernel: .rangeKernel
            case .rangeKernelAndUser: .rangeKernelAndUser
            case .rangeComplete: .rangeComplete
            }
        }
    }

    enum Scenario: String, ExpressibleByArgument, CaseIterable {
        case standard
        case displayDriver = "display-driver"
        case timerCorruption = "timer-corruption"
        case spinLockHang = "spinlock-hang"
        case listCorruption = "list-corruption"
        case networkDriver = "network-driver"

        func description(kind: DumpDescription.DumpKind, seed: UInt64) -> DumpDescription {
            switch self {
            case .standard: .standard(kind: kind, layoutSeed: seed)
            case .displayDriver: .displayDriverFault(kind: kind, layoutSeed: seed)
            case .timerCorruption: .timerListCorruption(kind: kind, layoutSeed: seed)
            case .spinLockHang: .spinLockHang(kind: kind, layoutSeed: seed)
            case .listCorruption: .listEntryCorruption(kind: kind, layoutSeed: seed)
            case .networkDriver: .networkDriverFault(kind: kind, layoutSeed: seed)
            }
        }
    }

    @Argument(help: "Where to write the dump.")
    var output: String

    @Option(help: "The crash to plant: \(Scenario.allCases.map(\.rawValue).joined(separator: ", ")). Scenarios set their own bug check.")
    var scenario: Scenario = .standard

    @Option(help: "Dump type: \(Kind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var kind: Kind = .full

    @Option(name: .customLong("memory-gib"), help: "RAM of the described machine, in GiB.")
    var memoryGiB: UInt64 = 4

    @Option(help: "Layout seed: moves images, pool and stacks as KASLR would.")
    var seed: UInt64 = 1

    @Option(help: "Bug-check code, e.g. 0x1E.")
    var bugcheck: String = "0x1E"

    func validate() throws {
        guard (1...1024).contains(memoryGiB) else { throw ValidationError("--memory-gib must be 1 to 1024") }
        guard UInt32(bugcheck.replacingPrefix("0x"), radix: 16) != nil else { throw ValidationError("--bugcheck takes a hex code such as 0x1E") }
    }

    func run() throws {
        var description = scenario.description(kind: kind.dumpKind, seed: seed)
        description.memory = DumpDescription.vmMemory(gibibytes: memoryGiB)
        if scenario == .standard { description.bugCheckCode = UInt32(bugcheck.replacingPrefix("0x"), radix: 16)! }
        let dump = switch kind {
        case .qemuElf: DumpForge.Forge.elfCore(description)
        case .qemuKdump: DumpForge.Forge.kdump(description, KdumpOptions(compress: Self.zlib, flattened: true))
        case .raw: DumpForge.Forge.guestRAM(description)
        default: DumpForge.Forge.dump(description)
        }
        try MappedFile.writeSparse(output, size: dump.size, chunks: dump.chunks.map { ($0.offset, $0.bytes) })
        print("wrote \(output): \(kind.rawValue), \(scenario.rawValue), \(dump.size) bytes (\(dump.chunks.count) non-zero chunks)")
    }
}

extension Forge {
    /// A page as kdump-zlib stores it (zlib's compress2, flag 1), or nil when it does not shrink.
    static func zlib(_ page: [UInt8]) -> (bytes: [UInt8], flag: UInt32)? {
        var output = [UInt8](repeating: 0, count: Int(compressBound(uLong(page.count))))
        var length = uLongf(output.count)
        guard compress2(&output, &length, page, uLong(page.count), 1) == Z_OK, Int(length) < page.count else { return nil }
        return (Array(output.prefix(Int(length))), 1)
    }
}

extension String {
    func replacingPrefix(_ prefix: String) -> String {
        lowercased().hasPrefix(prefix) ? String(dropFirst(prefix.count)) : self
    }
}
