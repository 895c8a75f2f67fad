import Synchronization

/// The upload sessions that requests are working on right now, by canonical (lower-case) id:
/// one request at a time per session, PATCH or finish, so two connections never write one file
/// and a finish never moves a file a PATCH is still writing. And how many PATCHes are streaming
/// at once, which is capped (each holds a file open and a share of the verification threads).
final class ActiveUploads: Sendable {
    private struct State {
        var busy: Set<String> = []
        var streaming = 0
    }
    private let state = Mutex(State())

    /// Takes the session; false when another request has it.
    func take(_ id: String) -> Bool { state.withLock { $0.busy.insert(id).inserted } }
    func release(_ id: String) { _ = state.withLock { $0.busy.remove(id) } }

    /// The sessions taken right now (the expiry sweep leaves them alone).
    var busy: [String] { state.withLock { Array($0.busy) } }

    /// Counts a PATCH in; false when `limit` are streaming already.
    func startStreaming(limit: Int) -> Bool {
        state.withLock { state in
            guard state.streaming < limit else { return false }
            state.streaming += 1
            return true
        }
    }

    func stopStreaming() { state.withLock { $0.streaming -= 1 } }
}
