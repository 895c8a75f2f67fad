import Glibc
import NIOCore
import Synchronization

/// How many connections the coordinator keeps open: at most `total` (more wait in the listen
/// backlog, taking no file descriptor), at most `perAddress` from any one address (more are
/// closed as they arrive), and none silent for longer than the idle timeout (Hummingbird's,
/// set where the server is made). Together they keep a host that opens hundreds of idle or
/// half-sent requests from taking every descriptor and leaving nothing for a health check.
struct ConnectionLimits: Sendable {
    var total: Int
    var perAddress: Int

    /// Raises this process's soft limit on open files to its hard limit, and returns the
    /// limit then in force.
    static func raiseOpenFilesLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return min(Int(clamping: limit.rlim_cur), Int(Int32.max))
    }

    /// Connections the open-files limit leaves room for: each connection is one descriptor, an
    /// upload in progress holds one more (its file), the database pool one per connection, and
    /// 64 stay for everything else (blob reads, logs, the listening socket). At most 4,096.
    static func total(openFiles: Int, uploadsInProgress: Int, databaseConnections: Int) -> Int {
        max(16, min(4096, openFiles - 64 - uploadsInProgress - databaseConnections))
    }
}

/// Open connections per remote address.
final class ConnectionsByAddress: Sendable {
    let limit: Int
    private let open = Mutex<[String: Int]>([:])

    init(limit: Int) { self.limit = limit }

    /// Counts a connection in; false when its address has `limit` open already.
    func admit(_ address: String) -> Bool {
        open.withLock { open in
            guard open[address, default: 0] < limit else { return false }
            open[address, default: 0] += 1
            return true
        }
    }

    func leave(_ address: String) {
        open.withLock { open in
            let left = open[address, default: 1] - 1
            open[address] = left > 0 ? left : nil
        }
    }
}

/// Closes a new connection whose address has as many open as `ConnectionsByAddress` allows;
/// counts the others in and out. Sits in each connection's pipeline and passes every request
/// part on untouched.
final class AddressLimitHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let connections: ConnectionsByAddress
    let refused: @Sendable () -> Void
    private var address: String?

    init(connections: ConnectionsByAddress, refused: @escaping @Sendable () -> Void) {
        self.connections = connections
        self.refused = refused
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard let remote = context.channel.remoteAddress?.ipAddress else { return }
        if connections.admit(remote) {
            address = remote
        } else {
            refused()
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        leave()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { leave() }

    private func leave() {
        if let address { connections.leave(address) }
        address = nil
    }
}
