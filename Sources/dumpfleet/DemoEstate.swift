import DumpForge

/// The simulated estate `dumpfleet demo` uploads: VDI desktops on a few KVM hosts, most of them
/// crashing for one of a few recurring causes, the rest with unrelated one-off crashes. Every
/// dump is forged with its own ASLR layout, and the dump type varies as it does in real
/// estates (kernel minidumps, kernel memory dumps, now and then a complete one).
struct DemoEstate {
    struct Cause: Sendable {
        var name: String
        var scenario: @Sendable (DumpDescription.DumpKind, UInt64, Bool) -> DumpDescription
    }

    struct Crash {
        var vm: String
        var host: String
        var cause: String
        var description: DumpDescription
    }

    static let causes: [Cause] = [
        Cause(name: "old NVIDIA driver (0x1E in nvlddmkm)") { .displayDriverFault(kind: $0, layoutSeed: $1, extraFrame: $2) },
        Cause(name: "VideoAccelerator.exe overwrites a kernel timer (0x3B)") { .timerListCorruption(kind: $0, layoutSeed: $1, extraFrame: $2) },
        Cause(name: "storage filter spin-lock hang, NMI from the host (0x80)") { .spinLockHang(kind: $0, layoutSeed: $1, extraFrame: $2) },
        Cause(name: "network driver at raised IRQL (0xD1)") { .networkDriverFault(kind: $0, layoutSeed: $1, extraFrame: $2) },
    ]

    static let noise = "unrelated one-off crash"

    /// `vms` desktops; about one in six gets an unrelated crash, the others one of the causes
    /// (weighted towards the first two, as recurring problems are). Some crash twice.
    static func crashes(vms: Int, seed: UInt64, memoryGiB: UInt64) -> [Crash] {
        var random = SeededRandom(seed: seed)
        var crashes: [Crash] = []
        let weights = [4, 3, 1, 1]
        for index in 1...vms {
            let vm = "vdi-w10-\(String(format: "%03d", index))"
            let host = "kvm-host-\(String(format: "%02d", 1 + index % 4))"
            let count = random.below(4) == 0 ? 2 : 1
            for _ in 0..<count {
                let layoutSeed = random.next()
                let kind: DumpDescription.DumpKind = [.triage, .triage, .bitmapKernel, .bitmapKernel, .bitmapFull][Int(random.below(5))]
                let extraFrame = random.below(3) == 0
                var description: DumpDescription
                var cause: String
                if random.below(6) == 0 {
                    let codes: [UInt32] = [0x50, 0x7E, 0xEF, 0x133, 0x9F]
                    description = .standard(kind: kind, gibibytes: memoryGiB, layoutSeed: layoutSeed)
                    description.bugCheckCode = codes[Int(random.below(UInt64(codes.count)))]
                    cause = noise
                } else {
                    var pick = Int(random.below(UInt64(weights.reduce(0, +))))
                    var which = 0
                    while pick >= weights[which] {
                        pick -= weights[which]
                        which += 1
                    }
                    description = causes[which].scenario(kind, layoutSeed, extraFrame)
                    cause = causes[which].name
                }
                description.memory = DumpDescription.vmMemory(gibibytes: memoryGiB)
                crashes.append(Crash(vm: vm, host: host, cause: cause, description: description))
            }
        }
        return crashes
    }
}
