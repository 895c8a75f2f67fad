import DumpMemory

/// Walks a kernel LIST_ENTRY chain defensively.
///
/// A corrupted list is evidence, not an error: the walk stops at the first link it cannot
/// follow and says where it broke and what the bad value was, so corruption forensics can
/// decode it (a Flink holding UTF-16 text instead of a pointer is how the 0x3B case named its
/// culprit). A seen-set and a hard cap stop cycles that never return to the head.
public struct ListWalk: Sendable, Equatable {
    /// Addresses of the LIST_ENTRYs in the list, head excluded.
    public var entries: [UInt64]
    public var broken: ListBreak?
}

public struct ListBreak: Sendable, Equatable {
    public enum Reason: String, Sendable {
        /// The Flink is not a canonical address.
        case nonCanonical
        /// The Flink points somewhere the dump cannot read.
        case unreadable
        /// The entry the Flink points to does not point back (its Blink disagrees).
        case backLinkMismatch
        /// The walk came back to an entry other than the head.
        case cycle
        /// More entries than any kernel list holds.
        case tooLong
    }

    /// The LIST_ENTRY whose Flink could not be followed.
    public var entry: UInt64
    /// That Flink's value.
    public var flink: UInt64
    public var reason: Reason
}

public enum ListWalker {
    public static func walk(head: UInt64, in space: any KernelAddressSpace, limit: Int = 100_000, checkBackLinks: Bool = true) -> ListWalk {
        var entries: [UInt64] = []
        var seen: Set<UInt64> = [head]
        var current = head
        while true {
            let flink: UInt64
            do { flink = try space.u64(current) } catch {
                return ListWalk(entries: entries, broken: ListBreak(entry: current, flink: 0, reason: .unreadable))
            }
            if flink == head { return ListWalk(entries: entries, broken: nil) }
            guard isCanonical(flink), flink != 0 else {
                return ListWalk(entries: entries, broken: ListBreak(entry: current, flink: flink, reason: .nonCanonical))
            }
            guard let blink = try? space.u64(flink &+ 8) else {
                return ListWalk(entries: entries, broken: ListBreak(entry: current, flink: flink, reason: .unreadable))
            }
            if checkBackLinks, blink != current {
                return ListWalk(entries: entries, broken: ListBreak(entry: current, flink: flink, reason: .backLinkMismatch))
            }
            guard seen.insert(flink).inserted else {
                return ListWalk(entries: entries, broken: ListBreak(entry: current, flink: flink, reason: .cycle))
            }
            guard entries.count < limit else {
                return ListWalk(entries: entries, broken: ListBreak(entry: current, flink: flink, reason: .tooLong))
            }
            entries.append(flink)
            current = flink
        }
    }
}
