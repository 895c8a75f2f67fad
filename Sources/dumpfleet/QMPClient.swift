import Foundation

/// A connection to QEMU's machine protocol (QMP) on a unix socket, as QEMU serves it with
/// `-qmp unix:PATH,server=on,wait=off`: a greeting line holding "QMP", then one JSON command per
/// line, each answered by a line holding "return" or "error"; lines holding "event" may come
/// in between and are kept for `event(_:)`.
///
/// The socket also carries file descriptors (SCM_RIGHTS): `getfd` hands QEMU a file this
/// process opened, so QEMU needs no right to the folder the core goes to (libvirt does the
/// same, QEMU often runs as its own user).
///
/// One command at a time: `execute` holds a lock from its request to its answer, so that a
/// stream's reader and its progress loop can both ask QEMU (`capture --stream`).
final class QMPClient: @unchecked Sendable {
    /// What QEMU answered with `{"error": {"class": ..., "desc": ...}}`, or a failure to talk.
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let path: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var events: [[String: Any]] = []
    private let lock = NSLock()

    /// Connects and leaves the greeting's capability negotiation done (`qmp_capabilities`).
    /// Every read waits at most `timeout` seconds: a QEMU that stopped answering is an error,
    /// not a hang.
    init(path: String, timeout: Int = 30) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "cannot make a socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw Failure(description: "the QMP socket path \(path) is longer than a unix socket path may be")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes + [0]) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let reason = errno
            close(fd)
            switch reason {
            case ENOENT: throw Failure(description: "no QMP socket at \(path) (start QEMU with -qmp unix:\(path),server=on,wait=off)")
            case ECONNREFUSED: throw Failure(description: "nothing listens on \(path): QEMU has exited, or it is not a socket")
            default: throw Failure(description: "cannot connect to the QMP socket \(path): \(String(cString: strerror(reason)))")
            }
        }
        var wait = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        do {
            let greeting = try message()
            guard greeting["QMP"] != nil else { throw Failure(description: "\(path) did not greet as QMP does: \(Self.text(greeting))") }
            _ = try execute("qmp_capabilities")
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    /// Runs `command` and returns what its "return" holds; QEMU's error is thrown with its class
    /// and description, as QEMU wrote them.
    @discardableResult
    func execute(_ command: String, _ arguments: [String: Any] = [:], passing descriptor: Int32? = nil) throws -> Any {
        lock.lock()
        defer { lock.unlock() }
        var request: [String: Any] = ["execute": command]
        if !arguments.isEmpty { request["arguments"] = arguments }
        let line = Array(try JSONSerialization.data(withJSONObject: request)) + [0x0A]
        try send(line, passing: descriptor)
        while true {
            let reply = try message()
            if let answer = reply["return"] { return answer }
            if let error = reply["error"] as? [String: Any] {
                throw Failure(description: "QEMU refused \(command): \(error["class"] as? String ?? "?"): \(error["desc"] as? String ?? Self.text(error))")
            }
            guard reply["event"] != nil else { throw Failure(description: "QEMU answered \(command) with neither return nor error: \(Self.text(reply))") }
            events.append(reply)
        }
    }

    /// The data of the last event named `name` received so far, if any.
    func event(_ name: String) -> [String: Any]? {
        lock.lock()
        defer { lock.unlock() }
        return events.last { $0["event"] as? String == name }?["data"] as? [String: Any]
    }

    private func send(_ bytes: [UInt8], passing descriptor: Int32?) throws {
        var bytes = bytes
        // The descriptor rides in a control message: a cmsghdr (16 bytes on 64-bit Linux), then
        // the int, padded to 8 bytes (CMSG_SPACE). QEMU takes it with the command's first byte.
        let headerSize = MemoryLayout<cmsghdr>.size
        var control = [UInt8](repeating: 0, count: descriptor == nil ? 0 : (headerSize + 4 + 7) & ~7)
        if let descriptor {
            control.withUnsafeMutableBytes { raw in
                var header = cmsghdr()
                header.cmsg_len = headerSize + 4
                header.cmsg_level = SOL_SOCKET
                header.cmsg_type = Int32(SCM_RIGHTS)
                raw.storeBytes(of: header, as: cmsghdr.self)
                raw.storeBytes(of: descriptor, toByteOffset: headerSize, as: Int32.self)
            }
        }
        let sent = bytes.withUnsafeMutableBytes { data in
            control.withUnsafeMutableBytes { controlBytes in
                var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                return withUnsafeMutablePointer(to: &vector) { vectorPointer in
                    var header = msghdr()
                    header.msg_iov = vectorPointer
                    header.msg_iovlen = 1
                    header.msg_control = controlBytes.isEmpty ? nil : controlBytes.baseAddress
                    header.msg_controllen = controlBytes.count
                    return sendmsg(fd, &header, Int32(MSG_NOSIGNAL))
                }
            }
        }
        guard sent >= 0 else { throw Failure(description: "cannot write to the QMP socket \(path): \(String(cString: strerror(errno)))") }
        if sent < bytes.count {
            let rest = Array(bytes[sent...])
            try send(rest, passing: nil)
        }
    }

    /// The next JSON object QEMU wrote.
    private func message() throws -> [String: Any] {
        while true {
            if let end = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[..<end])
                buffer.removeSubrange(...end)
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) { continue }
                guard let object = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] else {
                    throw Failure(description: "\(path) does not speak QMP: it wrote \"\(String(decoding: line.prefix(200), as: UTF8.self))\"")
                }
                return object
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw Failure(description: "QEMU did not answer on \(path) in time (QMP serves one client at a time: is another one connected?)") }
            guard count >= 0 else { throw Failure(description: "cannot read the QMP socket \(path): \(String(cString: strerror(errno)))") }
            guard count > 0 else { throw Failure(description: "QEMU closed the QMP socket \(path)") }
            buffer += chunk[..<count]
        }
    }

    static func text(_ object: Any) -> String {
        (try? JSONSerialization.data(withJSONObject: object)).map { String(decoding: $0, as: UTF8.self) } ?? "\(object)"
    }
}
