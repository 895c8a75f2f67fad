/// A simulated estate of VDI desktops on a few KVM hosts, each crash labelled with its cause:
/// for `dumpfleet demo`, and as the labelled data that measures similarity and clustering.
/// Most desktops crash for one of a few recurring causes, the rest with one-off crashes in
/// assorted third-party drivers. Every dump gets its own ASLR layout; the knobs add what makes
/// the same cause look different in the field: dump types, driver versions (the culprit driver
/// rebuilt, so its code moves), and stacks one frame deeper.
public struct Estate: Sendable {
    public struct Cause: Sendable {
        public var name: String
        /// The module whose versions vary, when the cause is a driver.
        public var driver: String?
        let scenario: @Sendable (DumpDescription.DumpKind, UInt64, Bool) -> DumpDescription
    }

    public struct Crash: Sendable {
        public var vm: String
        public var host: String
        /// A cause's name, or "one-off: <driver> <bug check>" for the unrelated crashes.
        public var cause: String
        public var description: DumpDescription
    }

    public static let causes: [Cause] = [
        Cause(name: "old NVIDIA driver (0x1E in nvlddmkm)", driver: "nvlddmkm.sys") { .displayDriverFault(kind: $0, layoutSeed: $1, extraFrame: $2) },
        Cause(name: "VideoAccelerator.exe overwrites a kernel timer (0x3B)", driver: nil) { .timerListCorruption(kind: $0, layoutSeed: $1, extraFrame: $2) },
        Cause(name: "storage filter spin-lock hang, NMI from the host (0x80)", driver: "vfstor.sys") { .spinLockHang(kind: $0, layoutSeed: $1, extraFrame: $2) },
        Cause(name: "network driver at raised IRQL (0xD1)", driver: "rtnet64x.sys") { .networkDriverFault(kind: $0, layoutSeed: $1, extraFrame: $2) },
    ]

    public var vms = 24
    public var hosts = 4
    public var memoryGiB: UInt64 = 4
    /// Dump types drawn from, equally often.
    public var kinds: [DumpDescription.DumpKind] = [.triage, .triage, .bitmapKernel, .bitmapKernel, .bitmapFull]
    /// Builds of each cause's driver in the field (1: everyone has the same).
    public var driverVersions = 1
    /// One crash in this many is an unrelated one-off.
    public var oneOffEvery = 6
    /// The chance of one extra frame, 0...1 in thirds.
    public var extraFrameThirds = 1
    /// Windows builds drawn from, equally often.
    public var builds: [UInt32] = [19041]
    /// Stale return addresses in the stacks' locals (`DumpDescription.staleStackValues`), among
    /// them into a display-capture driver every desktop loads, which scans of minidumps pick up.
    public var staleStackValues = false

    /// What an independent generator varies and the forge's defaults hold still: every dump
    /// type the forge writes, every Windows build it knows, and stale values on every stack.
    public static func fieldVariation(_ estate: Estate) -> Estate {
        var estate = estate
        estate.kinds = [.triage, .triage, .bitmapKernel, .bitmapFull, .full, .rangeKernel]
        estate.builds = [10240, 10586, 14393, 15063, 16299, 17134, 17763, 18362, 19041, 19042, 19044, 19045, 22000, 22621, 22631, 26100]
        estate.staleStackValues = true
        return estate
    }

    /// A screen-capture driver of the VDI agent, on every desktop but on no crash's stack.
    static let displayCapture = ModuleDescription(name: "dcapture.sys", timeDateStamp: 0x5D1E_4B20, checkSum: 0x2_4C19,
                                                  functions: DumpDescription.functions(["DcCaptureFrame", "DcCopyRegion", "DcPresentHook"], exported: false))

    public init() {}

    /// The crashes, in upload order: about one VM in four crashes twice.
    public func crashes(seed: UInt64) -> [Crash] {
        var random = SeededRandom(seed: seed)
        var crashes: [Crash] = []
        let weights = [4, 3, 1, 1]
        for index in 1...vms {
            let vm = "vdi-w10-" + Self.digits(index, 3)
            let host = "kvm-host-" + Self.digits(1 + index % hosts, 2)
            for _ in 0..<(random.below(4) == 0 ? 2 : 1) {
                let layoutSeed = random.next()
                let kind = kinds[Int(random.below(UInt64(kinds.count)))]
                let extraFrame = random.below(3) < UInt64(extraFrameThirds)
                var description: DumpDescription
                var cause: String
                if random.below(UInt64(oneOffEvery)) == 0 {
                    (description, cause) = Self.oneOff(kind: kind, layoutSeed: layoutSeed, random: &random)
                } else {
                    var pick = Int(random.below(UInt64(weights.reduce(0, +))))
                    var which = 0
                    while pick >= weights[which] {
                        pick -= weights[which]
                        which += 1
                    }
                    description = Self.causes[which].scenario(kind, layoutSeed, extraFrame)
                    if let driver = Self.causes[which].driver {
                        description.rebuild(driver, version: Int(random.below(UInt64(driverVersions))))
                    }
                    cause = Self.causes[which].name
                }
                description.memory = DumpDescription.vmMemory(gibibytes: memoryGiB)
                if builds.count > 1 { description.buildNumber = builds[Int(random.below(UInt64(builds.count)))] }
                if staleStackValues {
                    description.modules.append(Self.displayCapture)
                    description.staleStackValues = true
                }
                crashes.append(Crash(vm: vm, host: host, cause: cause, description: description))
            }
        }
        return crashes
    }

    /// Third-party drivers the one-off crashes happen in.
    static let oneOffDrivers = ["e1i65x64.sys", "klif.sys", "mfehidk.sys", "cbfs6.sys", "ssudmdm.sys", "tap0901.sys", "vmci.sys", "aswSP.sys"]

    /// A crash in a random third-party driver with a random bug check: its own cause (two
    /// one-offs share a cause only when both the driver and the bug check agree).
    static func oneOff(kind: DumpDescription.DumpKind, layoutSeed: UInt64, random: inout SeededRandom) -> (DumpDescription, String) {
        var description = DumpDescription.standard(kind: kind, layoutSeed: layoutSeed)
        let driver = oneOffDrivers[Int(random.below(UInt64(oneOffDrivers.count)))]
        let prefix = driver.prefix(1).uppercased() + driver.dropFirst().prefix(2)
        let names = (0..<4).map { "\(prefix)Routine\($0)" }
        description.modules.append(ModuleDescription(name: driver, timeDateStamp: 0x5A00_0000 + UInt32(random.below(0x0400_0000)),
                                                     checkSum: 0x1_0000, functions: DumpDescription.functions(names)))
        let codes: [UInt32] = [0x50, 0x7E, 0xC4, 0x133, 0x9F, 0xEF]
        let fault = CodeLocation(driver, names[Int(random.below(2))], UInt32(0x20 + random.below(0x100)))
        description.crash(stack: [
            CodeLocation("ntoskrnl.exe", "KeBugCheckEx", 0x30),
            CodeLocation("ntoskrnl.exe", "KiBugCheckDispatch", 0x69),
            CodeLocation("ntoskrnl.exe", "KiPageFault", 0x3B8),
            fault,
            CodeLocation(driver, names[2 + Int(random.below(2))], 0x3C),
            CodeLocation("ntoskrnl.exe", "IofCallDriver", 0x55),
        ] + DumpDescription.outerFrames(false), process: "System")
        description.bugCheckCode = codes[Int(random.below(UInt64(codes.count)))]
        description.bugCheckParameters = [0xC000_0005, .code(fault), 0, 0]
        return (description, "one-off: \(driver) 0x" + String(description.bugCheckCode, radix: 16, uppercase: true))
    }

    static func digits(_ value: Int, _ count: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, count - text.count)) + text
    }
}

extension DumpDescription {
    /// Another build of `module`: a later link date, and code that moved (each version inserts
    /// one more function ahead of the others, so every RVA shifts), as a driver update does.
    mutating func rebuild(_ module: String, version: Int) {
        guard version > 0, let index = modules.firstIndex(where: { $0.name == module }), let first = modules[index].functions.first else { return }
        modules[index].timeDateStamp &+= UInt32(version) * 0x0100_0000
        let padding = (0..<version).map { number in
            var function = first
            function.name = "\(first.name)Helper\(number)"
            return function
        }
        modules[index].functions = padding + modules[index].functions
    }
}
