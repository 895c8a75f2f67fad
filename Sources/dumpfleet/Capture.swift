import ArgumentParser
import FleetAPI
import Foundation

/// `dumpfleet capture`: on a KVM host, dumps a VM's memory and uploads it; or, with `--watch`,
/// uploads the cores that appear in a folder (libvirt's auto_dump_path).
struct Capture: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Dump a VM's memory on its KVM host and upload it, or upload the cores that appear in a folder.",
        discussion: """
        CAPTURE VM: QEMU's dump-guest-memory writes the guest's RAM and vCPU registers (an ELF \
        core by default) into --directory, which must have room for the guest's RAM (checked \
        first); the core is then uploaded as `dumpfleet upload` sends a file, with the VM and \
        this host recorded, and removed once stored. A core that failed to upload is kept, and \
        its path printed. The coordinator is asked for first, so a capture never starts \
        without it.
        With --qmp, dumpfleet talks to QEMU's QMP socket (-qmp unix:PATH,server=on,wait=off) and \
        hands it the core's file descriptor, so QEMU needs no right to the folder; without \
        it, `virsh dump --memory-only` captures a libvirt domain (run as root: libvirt's QEMU \
        writes the file). QEMU pauses the guest's vCPUs while it copies the memory and resumes \
        them afterwards: the guest lives on. --crash stops it for good after the dump (QMP \
        quit; virsh dump --crash), for a hung guest that is to be restarted.
        With --qmp --stream, no file is written: QEMU writes into a pipe whose other end is the \
        body of a plain upload (PUT /v1/plain), hashed, compressed and checked by the \
        coordinator as it arrives and stored only once whole; --directory and its free-space \
        check are not used. It is not the default: the whole dump crosses the network \
        uncompressed (a file goes LZ4-compressed, and not at all when the coordinator has it \
        already), the guest stays paused for as long as the network takes, and a stream that \
        fails leaves nothing to send again (QEMU's dump ends, the guest runs on; with --crash it is \
        then not stopped). Use it where the host has no room for the guest's RAM.

        CAPTURE --watch DIR: uploads each core that appears in DIR once it is complete (its \
        size and time unchanged over --interval, no process holding it open for writing, an \
        ELF core's segments all in the file), with the VM taken from libvirt's file name \
        (ID-NAME-YYYY-MM-DD-HH:MM:SS). Uploaded cores are recorded (name, size, time) in a \
        state file, DIR/.dumpfleet-uploaded unless --state says otherwise, so a restarted \
        watcher sends nothing twice. Files that are not memory dumps are skipped.

        Exit status: 0 when done; 1 when the coordinator did not answer, the capture or its stream failed \
        (nothing uploaded, no core left) or, with --watch, any upload failed; 2 when the upload of a captured core failed (the \
        core is kept).

        Examples:
          dumpfleet capture vdi-w10-0147 --tag reason=hung     a libvirt domain, live
          dumpfleet capture vdi-w10-0147 --crash               then stop it for good
          dumpfleet capture vdi-w10-0147 --qmp /run/qemu/vdi-w10-0147.qmp --json
          dumpfleet capture vdi-w10-0147 --qmp /run/qemu/vdi-w10-0147.qmp --stream
          dumpfleet capture --watch /var/lib/libvirt/qemu/dump --remove
          dumpfleet capture --watch /var/lib/libvirt/qemu/dump --once   (from cron)
        """
    )

    @Argument(help: "The VM: a libvirt domain, or with --qmp the name recorded for it.")
    var vm: String?

    @Option(help: ArgumentHelp("QEMU's QMP unix socket; without it, virsh captures the domain.", valueName: "socket"))
    var qmp: String?

    @Option(name: .customLong("connect"), help: ArgumentHelp("libvirt URI for virsh (default: virsh's own).", valueName: "uri"))
    var connection: String?

    @Option(help: "The core's format, as QEMU writes it: elf, or kdump-zlib, kdump-lzo, kdump-snappy (each page compressed; smaller on disk and on the wire).")
    var format: CoreFormat = .elf

    @Flag(help: "With --qmp: stream the dump into the coordinator through a pipe; no file, no scratch space.")
    var stream = false

    @Flag(help: "Stop the VM for good after the dump (QMP quit; virsh dump --crash).")
    var crash = false

    @Option(help: ArgumentHelp("Folder the core is written to before its upload.", valueName: "dir"))
    var directory = "/var/tmp"

    @Option(help: "Hypervisor host recorded with the dump (default: this host's name).")
    var host: String?

    @OptionGroup var tags: TagOptions

    @OptionGroup var server: ServerOptions

    @Option(name: .customLong("watch"), help: ArgumentHelp("Upload the cores that appear in this folder instead.", valueName: "dir"))
    var watchFolder: String?

    @Flag(help: "With --watch: look once, upload what is complete, and exit.")
    var once = false

    @Flag(help: "With --watch: remove each core once it is stored.")
    var remove = false

    @Option(help: "With --watch: how long a core must stay unchanged, and how often to look.")
    var interval = Seconds(10)

    @Option(help: ArgumentHelp("With --watch: the record of uploaded cores (default: DIR/.dumpfleet-uploaded).", valueName: "file"))
    var state: String?

    @Flag(help: "Print a JSON result (one per core) instead of text.")
    var json = false

    func validate() throws {
        try server.requireToken()
        if watchFolder != nil {
            guard vm == nil else { throw ValidationError("give a VM or --watch DIR, not both") }
            guard qmp == nil, connection == nil, !crash, !stream, format == .elf else {
                throw ValidationError("--qmp, --connect, --crash, --stream and --format are for capturing a VM, not for --watch")
            }
        } else {
            guard vm != nil else { throw ValidationError("give the VM to capture, or --watch DIR") }
            guard !once, !remove, state == nil else { throw ValidationError("--once, --remove and --state go with --watch") }
            guard !stream || qmp != nil else { throw ValidationError("--stream needs --qmp: virsh dump writes only to a file") }
        }
    }

    func run() async throws {
        let sender = UploadSender(server: server)
        let host = self.host ?? Self.hostName()
        do {
            try await sender.checkCoordinator()
        } catch {
            warn("dumpfleet: \(error)")
            throw ExitCode(1)
        }
        if let watchFolder {
            var watcher = CoreWatcher(folder: watchFolder, statePath: state ?? watchFolder + "/.dumpfleet-uploaded", settle: interval.value,
                                      remove: remove, host: host, tags: tags.labels, sender: sender, json: json)
            if try await watcher.run(once: once) > 0 { throw ExitCode(1) }
        } else if let vm, stream, let qmp {
            try await captureStreaming(vm, socket: qmp, host: host, sender: sender)
        } else if let vm {
            try await capture(vm, host: host, sender: sender)
        }
    }

    private func capture(_ vm: String, host: String, sender: UploadSender) async throws {
        var result = CaptureResult(vm: vm, host: host, format: format.rawValue, crash: crash)
        let file: String
        do {
            let dumper: GuestDumper = try qmp.map { try QMPDumper(socket: $0, vm: vm) } ?? VirshDumper(connection: connection, vm: vm)
            let memory = try dumper.guestMemory()
            result.guestMemory = memory
            let free = try Self.freeBytes(directory)
            warn("\(vm): \(ProgressDisplay.bytes(memory)) of guest RAM: the core needs up to that in \(directory) (\(ProgressDisplay.bytes(free)) free)")
            // An ELF core adds its headers and vCPU notes to the RAM: well under 16 MiB.
            guard free >= memory + (16 << 20) else {
                throw CaptureFailure(description: "\(directory) has \(ProgressDisplay.bytes(free)) free, too little for the core of \(ProgressDisplay.bytes(memory)) of RAM: "
                                     + "free some space or give --directory on a larger disk")
            }
            file = "\(directory)/\(vm)-\(Self.timestamp()).\(format.fileExtension)"
            let started = Date()
            result.startedAt = ISO8601DateFormatter().string(from: started)
            try dumper.dump(to: file, format: format, crash: crash) { done, total in
                sender.display.update(file: file, phase: "dumping", done: done, total: total)
            }
            sender.display.finish()
            result.dumpSeconds = Date().timeIntervalSince(started)
            result.size = ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber)?.uint64Value
        } catch {
            sender.display.finish()
            result.error = "\(error)"
            try report(result, failure: "dumpfleet: capture \(vm): \(error)")
            throw ExitCode(1)
        }
        let sending = Date()
        do {
            let status = try await sender.send(file: file, vm: vm, host: host, tags: tags.labels)
            result.uploadSeconds = Date().timeIntervalSince(sending)
            result.status = status
            try FileManager.default.removeItem(atPath: file)
            try report(result, failure: nil, success: UploadSender.summary(file: file, status: status) + " (\(vm) on \(host)); core removed")
        } catch {
            result.error = "\(error)"
            result.kept = file
            try report(result, failure: "dumpfleet: capture \(vm): the upload failed: \(error); the core is kept at \(file)")
            throw ExitCode(2)
        }
    }

    /// Prints the result as JSON on stdout, or the text: success on stdout, failure on stderr.
    func report(_ result: CaptureResult, failure: String?, success: String = "") throws {
        if json {
            print(try JSONOutput.encode(result))
        } else if let failure {
            warn(failure)
        } else {
            print(success)
        }
    }

    /// `--json`: what was captured, how large, how long it took, and where it went.
    struct CaptureResult: Encodable {
        var vm: String
        var host: String
        var format: String
        var crash: Bool
        /// Sent as QEMU wrote it (--stream), with no file.
        var streamed = false
        /// Bytes of guest RAM, and of the core written (or streamed).
        var guestMemory: UInt64?
        var size: UInt64?
        var startedAt: String?
        var dumpSeconds: Double?
        var uploadSeconds: Double?
        /// The upload's answer: its dumpId and jobId.
        var status: UploadStatus?
        var error: String?
        /// Where a core that failed to upload was left.
        var kept: String?
    }

    static func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "unknown" }
        return String(cString: name)
    }

    static func freeBytes(_ directory: String) throws -> UInt64 {
        var facts = statvfs()
        guard statvfs(directory, &facts) == 0 else { throw CaptureFailure(description: "cannot use \(directory): \(String(cString: strerror(errno)))") }
        return UInt64(facts.f_bavail) * UInt64(facts.f_frsize)
    }

    /// A name part that sorts by time: 20250131-142501.
    static func timestamp() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        return formatter.string(from: Date())
    }
}
