import Synchronization

/// A shared yes-or-no that says when it changes: the health check logs the database going and
/// coming once each, and a race between an answer and its timeout is won once.
final class Flag: Sendable {
    private let value = Mutex(false)

    /// Sets the flag; true when that changed it.
    func change(to new: Bool) -> Bool { value.withLock { old in defer { old = new }; return old != new } }
}
