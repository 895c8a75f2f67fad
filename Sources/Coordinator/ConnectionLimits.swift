import Glibc
import NIOCore
import NIOHTTPTypes
import Synchronization

/// How many connections the coordinator keeps open: at most `total` (more wait in the listen
/// backlog, taking no file descriptor; near the cap idle ones are closed to make room, see
/// `OpenConnections`), at most `perAddress` from any one address (more are closed as they
/// arrive), and none silent for longer than the idle timeout (Hummingbird's, set where the
/// server is made). Together they keep hosts that open hundreds of idle or half-sent requests
/// from taking every descriptor and leaving nothing for a health check.
enum ConnectionLimits {
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

/// The connections the coordinator holds: how many per address, and which are idle (no
/// request being read or answered: a keep-alive connection between requests, or one whose
/// request head has not arrived whole). Near the total cap the oldest idle connection is
/// closed to make room, so that however many hosts hold idle connections, a new request (a
/// health check) still gets in; a connection with a request in progress is never closed here.
final class OpenConnections: Sendable {
    struct Entry {
        var channel: any Channel
        var address: String?
        var requests = 0
        var idleSince: NIODeadline
    }

    let total: Int
    let perAddress: Int
    private let entries = Mutex<[ObjectIdentifier: Entry]>([:])

    init(total: Int, perAddress: Int) {
        self.total = total
        self.perAddress = perAddress
    }

    /// Counts a new connection in. False when its address has `perAddress` open already.
    /// Otherwise, near the total cap, returns the idle connection to close to make room.
    func open(_ channel: any Channel) -> (admitted: Bool, evict: (any Channel)?) {
        let address = channel.remoteAddress?.ipAddress
        return entries.withLock { entries in
            if perAddress > 0, let address, entries.values.count(where: { $0.address == address }) >= perAddress {
                return (false, nil)
            }
            entries[ObjectIdentifier(channel)] = Entry(channel: channel, address: address, idleSince: .now())
            guard entries.count >= total - Self.headroom else { return (true, nil) }
            let oldest = entries.filter { $0.value.requests == 0 && $0.key != ObjectIdentifier(channel) }.min { $0.value.idleSince < $1.value.idleSince }
            if let oldest { entries.removeValue(forKey: oldest.key) }
            return (true, oldest?.value.channel)
        }
    }

    /// Connections kept free below the total cap by closing idle ones.
    static let headroom = 4

    func requestStarted(_ channel: any Channel) {
        entries.withLock { $0[ObjectIdentifier(channel)]?.requests += 1 }
    }

    func requestAnswered(_ channel: any Channel) {
        entries.withLock { entries in
            guard var entry = entries[ObjectIdentifier(channel)] else { return }
            entry.requests = max(0, entry.requests - 1)
            if entry.requests == 0 { entry.idleSince = .now() }
            entries[ObjectIdentifier(channel)] = entry
        }
    }

    func closed(_ channel: any Channel) {
        _ = entries.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }
}

/// Keeps `OpenConnections` up to date from inside each connection's pipeline: a request starts
/// when its head is read and ends when its answer is written. Closes a connection whose
/// address has too many already, and the idle one `OpenConnections` picks to make room.
/// Passes every part on untouched.
final class ConnectionTracker: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    let connections: OpenConnections
    let refused: @Sendable () -> Void
    let evicted: @Sendable () -> Void

    init(connections: OpenConnections, refused: @escaping @Sendable () -> Void, evicted: @escaping @Sendable () -> Void) {
        self.connections = connections
        self.refused = refused
        self.evicted = evicted
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let (admitted, victim) = connections.open(context.channel)
        guard admitted else {
            refused()
            context.close(promise: nil)
            return
        }
        if let victim {
            evicted()
            victim.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { connections.requestStarted(context.channel) }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { connections.requestAnswered(context.channel) }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        connections.closed(context.channel)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { connections.closed(context.channel) }
}
