/// Builds x64 4-level page tables in the forge's physical RAM, and reads and writes virtual
/// memory through them. Tests check the parser against the record of `mappings` (what was
/// mapped where), not against this class's own walk, which exists only to write through.
final class ForgeMemory {
    var ram: PhysicalRAM
    /// Every mapping made, for the tests' record of truth.
    private(set) var mappings: [ForgedMapping] = []

    static let present: UInt64 = 0x1
    static let writable: UInt64 = 0x2
    static let userBit: UInt64 = 0x4
    static let accessedDirty: UInt64 = 0x60
    static let largePage: UInt64 = 0x80
    /// Windows keeps its own copy of the writable bit in bit 11 of a valid PTE (the "Write"
    /// bit of `_MMPTE_HARDWARE`); in a non-valid entry the same bit means Transition.
    static let softwareWrite: UInt64 = 1 << 11
    /// `_MMPTE_HARDWARE.WsleAge` (bits 56-59): working-set aging, above the frame number.
    static let workingSetAge: UInt64 = 0x3 << 56
    static let noExecute: UInt64 = 1 << 63
    static let frameMask: UInt64 = 0x000F_FFFF_FFFF_F000

    init(ram: PhysicalRAM) { self.ram = ram }

    /// A new, empty PML4 page; its physical address is a directory table base.
    func newRoot(user: Bool = false) -> UInt64 { ram.allocate(user: user) << 12 }

    /// Index of `va` in the table of `level` (4 = PML4 ... 1 = PT).
    static func index(_ va: UInt64, level: Int) -> UInt64 { (va >> UInt64(12 + 9 * (level - 1))) & 0x1FF }

    /// Physical address of the entry for `va` at `level`, creating tables above it as needed.
    func entryAddress(root: UInt64, va: UInt64, level: Int, user: Bool) -> UInt64 {
        var table = root
        var current = 4
        while current > level {
            let address = table + 8 * Self.index(va, level: current)
            var entry = ram.read64(address)
            if entry & Self.present == 0 {
                entry = ram.allocate(user: user) << 12 | Self.present | Self.writable | Self.accessedDirty | (user ? Self.userBit : 0)
                ram.write64(entry, at: address)
            }
            precondition(entry & Self.largePage == 0 || current == 4, "forge: mapping inside an existing large page")
            table = entry & Self.frameMask
            current -= 1
        }
        return table + 8 * Self.index(va, level: level)
    }

    /// Maps one page of `pageSize` (0x1000, 0x200000 or 0x40000000) at `va` to `pa`. Leaf
    /// entries carry what Windows puts around the frame number (NX, the software Write bit,
    /// working-set age), so a reader that masks the frame carelessly gets it wrong.
    func map(root: UInt64, va: UInt64, pa: UInt64, pageSize: UInt64 = 0x1000, user: Bool = false, executable: Bool = false, record: Bool = true) {
        let level = pageSize == 0x1000 ? 1 : pageSize == 0x20_0000 ? 2 : 3
        precondition(va % pageSize == 0 && pa % pageSize == 0, "forge: unaligned mapping")
        let flags = Self.present | Self.writable | Self.accessedDirty | Self.softwareWrite | Self.workingSetAge
            | (user ? Self.userBit : 0) | (level > 1 ? Self.largePage : 0) | (executable ? 0 : Self.noExecute)
        ram.write64(pa | flags, at: entryAddress(root: root, va: va, level: level, user: user))
        if record { mappings.append(ForgedMapping(directoryTableBase: root, va: va, pa: pa, size: pageSize)) }
    }

    /// Maps `count` fresh 4 KiB frames from `va` on and returns the first frame's address.
    @discardableResult
    func mapFresh(root: UInt64, va: UInt64, pages count: Int, user: Bool = false, executable: Bool = false) -> UInt64 {
        var first: UInt64 = 0
        for i in 0..<UInt64(count) {
            let pa = ram.allocate(user: user) << 12
            if i == 0 { first = pa }
            map(root: root, va: va + 0x1000 * i, pa: pa, user: user, executable: executable)
        }
        return first
    }

    /// Writes a raw entry (for transition, page-file and prototype entries in tests).
    func setEntry(root: UInt64, va: UInt64, level: Int, value: UInt64) {
        ram.write64(value, at: entryAddress(root: root, va: va, level: level, user: false))
    }

    /// The forge's own translation; nil when `va` is not mapped by a present entry.
    func translate(root: UInt64, va: UInt64) -> UInt64? {
        var table = root
        for level in stride(from: 4, through: 1, by: -1) {
            let entry = ram.read64(table + 8 * Self.index(va, level: level))
            guard entry & Self.present != 0 else { return nil }
            if level > 1, level < 4, entry & Self.largePage != 0 {
                let size: UInt64 = level == 3 ? 0x4000_0000 : 0x20_0000
                return (entry & Self.frameMask & ~(size - 1)) | (va & (size - 1))
            }
            table = entry & Self.frameMask
        }
        return table | (va & 0xFFF)
    }

    func write(root: UInt64, va: UInt64, _ data: [UInt8]) {
        var done = 0
        while done < data.count {
            let address = va + UInt64(done)
            guard let pa = translate(root: root, va: address) else { fatalError("forge: write to unmapped VA 0x\(String(address, radix: 16))") }
            let take = min(0x1000 - Int(address & 0xFFF), data.count - done)
            ram.write(Array(data[done..<done + take]), at: pa)
            done += take
        }
    }

    func write(root: UInt64, va: UInt64, _ buffer: ByteBuffer) { write(root: root, va: va, buffer.bytes) }

    func write64(root: UInt64, va: UInt64, _ value: UInt64) {
        write(root: root, va: va, (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) })
    }

    func read(root: UInt64, va: UInt64, count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var address = va
        while result.count < count {
            guard let pa = translate(root: root, va: address) else { fatalError("forge: read of unmapped VA 0x\(String(address, radix: 16))") }
            let take = min(0x1000 - Int(address & 0xFFF), count - result.count)
            result += ram.read(pa, count: take)
            address += UInt64(take)
        }
        return result
    }
}

/// One mapping the forge made: `size` bytes at `va` in the address space rooted at
/// `directoryTableBase` are the physical bytes at `pa`.
public struct ForgedMapping: Sendable, Equatable {
    public var directoryTableBase: UInt64
    public var va: UInt64
    public var pa: UInt64
    public var size: UInt64
}
