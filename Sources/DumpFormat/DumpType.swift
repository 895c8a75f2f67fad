/// DUMP_HEADER64.DumpType (file offset 0xF98): what follows the 0x2000-byte header.
public enum DumpType: Sendable, Equatable, CustomStringConvertible {
    /// 1: raw pages stored run by run, described by the header's PHYSICAL_MEMORY_DESCRIPTOR64.
    case full
    /// 2: pre-Windows 8 kernel dump with an "SDMP" summary header and page bitmap.
    case summary
    /// 3: the header and nothing else.
    case headerOnly
    /// 4: a kernel minidump ("triage dump", Mini*.dmp): TRIAGE_DUMP64 at 0x2000.
    case triage
    /// 5: complete/active memory dump with an "FDMP" (or "SDMP") bitmap header.
    case bitmapFull
    /// 6: kernel or automatic MEMORY.DMP with an "SDMP" bitmap header; same layout as 5.
    case bitmapKernel
    /// 8, 9, 0xA: "RDMP" range dumps written by newer WinDbg `.dump /k`, `/ka`, `/f`.
    case rangeKernel, rangeKernelAndUser, rangeComplete
    /// Anything else; reading such a file stops with "unsupported dump type N".
    case other(UInt32)

    public init(rawValue: UInt32) {
        switch rawValue {
        case 1: self = .full
        case 2: self = .summary
        case 3: self = .headerOnly
        case 4: self = .triage
        case 5: self = .bitmapFull
        case 6: self = .bitmapKernel
        case 8: self = .rangeKernel
        case 9: self = .rangeKernelAndUser
        case 0xA: self = .rangeComplete
        default: self = .other(rawValue)
        }
    }

    public var rawValue: UInt32 {
        switch self {
        case .full: 1
        case .summary: 2
        case .headerOnly: 3
        case .triage: 4
        case .bitmapFull: 5
        case .bitmapKernel: 6
        case .rangeKernel: 8
        case .rangeKernelAndUser: 9
        case .rangeComplete: 0xA
        case .other(let value): value
        }
    }

    public var description: String {
        switch self {
        case .full: "full memory dump (runs)"
        case .summary: "summary kernel dump (bitmap)"
        case .headerOnly: "header-only dump"
        case .triage: "kernel minidump (triage)"
        case .bitmapFull: "complete memory dump (bitmap)"
        case .bitmapKernel: "kernel memory dump (bitmap)"
        case .rangeKernel: "kernel range dump"
        case .rangeKernelAndUser: "kernel and user range dump"
        case .rangeComplete: "complete range dump"
        case .other(let value): "unknown dump type \(value)"
        }
    }
}

/// IMAGE_FILE_MACHINE_* in the header (0x30): which CPU architecture the dump is from.
public enum Machine: Sendable, Equatable, CustomStringConvertible {
    case amd64, arm64, i386
    case other(UInt32)

    public init(rawValue: UInt32) {
        switch rawValue {
        case 0x8664: self = .amd64
        case 0xAA64: self = .arm64
        case 0x14C: self = .i386
        default: self = .other(rawValue)
        }
    }

    public var description: String {
        switch self {
        case .amd64: "x64"
        case .arm64: "ARM64"
        case .i386: "x86"
        case .other(let value): "machine 0x\(hex(value))"
        }
    }
}
