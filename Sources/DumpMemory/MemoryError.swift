import DumpFormat

/// One step of x64 4-level paging, named as the Intel manual and WinDbg's `!pte` name the entry.
public enum PagingLevel: Int, Sendable, CustomStringConvertible {
    case pml4 = 4, pdpt = 3, pd = 2, pt = 1

    /// Bit position of the VA index for this level's table.
    var shift: UInt64 { UInt64(12 + 9 * (rawValue - 1)) }

    public var description: String {
        switch self {
        case .pml4: "PML4E"
        case .pdpt: "PDPTE"
        case .pd: "PDE"
        case .pt: "PTE"
        }
    }
}

/// A failed memory read, as a value that says where and why. Carries no text until printed,
/// so failing translations stay cheap on hot paths.
public struct MemoryError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The VA's bits 63..48 are not copies of bit 47: it can never be mapped.
        case nonCanonical
        /// The paging entry at `level` has Valid = 0 and is neither transition nor page file.
        case notPresent
        /// The entry describes a page that was written to the page file (not in any dump).
        case inPageFile
        /// The entry is a prototype PTE, which points into section data a kernel dump lacks.
        case prototype
        /// Translation succeeded (or a table is needed) but that physical page was not dumped.
        case physicalPageNotInDump
        /// The page should be in the file but the file ends before it.
        case truncated
        /// A minidump: no captured block holds this VA.
        case notCaptured
        /// The page is stored compressed but does not decompress to a page (damaged bytes, or
        /// a method this reader lacks).
        case undecodable
    }

    public var code: Code
    /// The virtual (or, for physical reads, physical) address that failed.
    public var address: UInt64
    /// The paging level whose entry stopped the walk, when one did.
    public var level: PagingLevel?
    /// Physical address of that entry.
    public var entryAddress: UInt64?
    /// The entry's value.
    public var entry: UInt64?
    /// The physical address whose page was missing, for `.physicalPageNotInDump` and `.truncated`.
    public var physicalAddress: UInt64?

    public init(_ code: Code, address: UInt64, level: PagingLevel? = nil, entryAddress: UInt64? = nil, entry: UInt64? = nil, physicalAddress: UInt64? = nil) {
        self.code = code
        self.address = address
        self.level = level
        self.entryAddress = entryAddress
        self.entry = entry
        self.physicalAddress = physicalAddress
    }

    public var description: String {
        let va = "0x\(hex(address))"
        let page = physicalAddress.map { "physical page 0x\(hex($0 >> 12))" } ?? "a page it needs"
        let at = level.map { level in
            " (\(level) 0x\(hex(entry ?? 0)) at physical 0x\(hex(entryAddress ?? 0)))"
        } ?? ""
        switch code {
        case .nonCanonical: return "\(va) is not a canonical x64 address"
        case .notPresent: return "\(va) is not mapped\(at)"
        case .inPageFile: return "\(va) is paged out to the page file\(at)"
        case .prototype: return "\(va) is backed by a prototype PTE\(at)"
        case .physicalPageNotInDump: return "\(va): \(page) is not in the dump\(at)"
        case .truncated: return "\(va): \(page) lies past the end of the truncated file\(at)"
        case .notCaptured: return "\(va) is not among the memory the minidump captured"
        case .undecodable: return "\(va): \(page) is stored compressed but does not decompress to a page"
        }
    }
}
