import ArgumentParser

/// A hypervisor that writes a guest's memory to a file: QEMU over QMP (`QMPDumper`) or libvirt
/// through virsh (`VirshDumper`). Either way it is QEMU's `dump-guest-memory`, which pauses
/// the guest's vCPUs while it copies the memory (the image is consistent) and resumes them
/// when it is done.
protocol GuestDumper {
    /// Bytes of guest RAM: what an ELF core of it takes on disk, and the most a kdump file takes.
    func guestMemory() throws -> UInt64

    /// Writes the core to `path` (which must not exist), calling `progress` with bytes done and
    /// in all as it goes. With `crash`, the guest is then stopped for good. On failure no file
    /// is left behind.
    func dump(to path: String, format: CoreFormat, crash: Bool, progress: (UInt64, UInt64) -> Void) throws
}

/// QEMU's dump formats (`dump-guest-memory`'s `format`, `virsh dump --format`).
enum CoreFormat: String, ExpressibleByArgument, CaseIterable {
    case elf
    case kdumpZlib = "kdump-zlib"
    case kdumpLzo = "kdump-lzo"
    case kdumpSnappy = "kdump-snappy"

    var fileExtension: String { self == .elf ? "elf" : "kdump" }
}

/// Why a capture failed, in words for the operator.
struct CaptureFailure: Error, CustomStringConvertible {
    var description: String
}
