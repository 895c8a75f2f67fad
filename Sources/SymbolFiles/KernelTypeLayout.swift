/// Structure layouts from a symbol file, whatever its format (a PDB's types, an ISF table):
/// what the analysis asks when a build has no offset table.
public protocol KernelTypeLayout: Sendable {
    /// The size of structure `type` (`_EPROCESS`), nil when the file does not define it.
    func size(of type: String) -> UInt64?
    /// Where `path` (a member name, or names through nested structures: `ApcState.Process`)
    /// lies in `type`, and how big it is; nil when any step is missing.
    func field(_ path: String, in type: String) -> FieldLayout?
}

public struct FieldLayout: Sendable, Equatable {
    public var offset: UInt64
    /// Nil when the member's type has no size the file states.
    public var size: UInt64?

    public init(offset: UInt64, size: UInt64?) {
        self.offset = offset
        self.size = size
    }
}
