import Foundation

/// Captures through libvirt: `virsh dominfo` for the RAM, then `virsh dump --memory-only`
/// (with `--live` unless `--crash`: libvirt then pauses the guest itself and stops it after
/// the dump, as `virsh dump --crash` does). libvirt's QEMU writes the file; progress is its
/// size against the guest's RAM.
struct VirshDumper: GuestDumper {
    let virsh: String
    /// libvirt's connection URI (`virsh -c`); nil for virsh's default.
    let connection: String?
    let vm: String

    init(connection: String?, vm: String) throws {
        guard let virsh = ["/usr/bin/virsh", "/usr/local/bin/virsh", "/bin/virsh"].first(where: FileManager.default.isExecutableFile) else {
            throw CaptureFailure(description: "virsh is not installed (Debian's libvirt-clients); give --qmp SOCKET to talk to QEMU directly")
        }
        self.virsh = virsh
        self.connection = connection
        self.vm = vm
    }

    func guestMemory() throws -> UInt64 {
        let info = try run(["dominfo", vm])
        // "Max memory:     4194304 KiB"
        guard let line = info.split(separator: "\n").first(where: { $0.hasPrefix("Max memory:") }),
              let kibibytes = line.split(separator: " ").dropFirst(2).first.flatMap({ UInt64($0) }) else {
            throw CaptureFailure(description: "virsh dominfo \(vm) gave no \"Max memory\" line: \(info)")
        }
        return kibibytes << 10
    }

    func dump(to path: String, format: CoreFormat, crash: Bool, progress: (UInt64, UInt64) -> Void) throws {
        let total = try guestMemory()
        var arguments = ["dump", "--memory-only", "--format", format.rawValue]
        arguments += crash ? ["--crash"] : ["--live"]
        do {
            _ = try run(arguments + [vm, path]) {
                progress(((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0, total)
            }
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
        let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.uint64Value ?? 0
        progress(size, size)
    }

    /// Runs virsh with the connection first; its standard output, or its error message thrown.
    /// `whileRunning` is called every 0.2 s until it ends.
    private func run(_ arguments: [String], whileRunning: () -> Void = {}) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: virsh)
        process.arguments = (connection.map { ["-c", $0] } ?? []) + arguments
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("dumpfleet-virsh-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // Files, not pipes: a pipe nobody reads while virsh runs could fill and stall it.
        let outputFile = folder.appendingPathComponent("out"), errorFile = folder.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: outputFile)
        process.standardError = try FileHandle(forWritingTo: errorFile)
        try process.run()
        while process.isRunning {
            whileRunning()
            usleep(200_000)
        }
        process.waitUntilExit()
        let output = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
        let error = ((try? String(contentsOf: errorFile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        guard process.terminationStatus == 0 else {
            throw CaptureFailure(description: "virsh \(arguments.joined(separator: " ")) failed: \(error.isEmpty ? "exit status \(process.terminationStatus)" : error)")
        }
        return output
    }
}
