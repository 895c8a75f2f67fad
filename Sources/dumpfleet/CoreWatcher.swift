import FleetAPI
import Foundation

/// `capture --watch DIR`: uploads the memory cores that appear in a folder, each once.
///
/// libvirt writes an automatic dump (`on_crash` coredump-*, into auto_dump_path) straight
/// under its final name, so a name alone does not say a core is complete. A core is sent when
/// its size and time stayed the same over `settle` seconds, no process holds it open for
/// writing, and, for an ELF core, its last segment lies in the file (for a kdump file, its last
/// page, and a flattened one's end marker ends it). What was sent is recorded
/// by name, size and time in the state file, rewritten whole (a rename) after each upload, so
/// a watcher that restarts, or runs from cron with `--once`, sends nothing twice.
struct CoreWatcher {
    let folder: String
    let statePath: String
    let settle: Double
    let remove: Bool
    let host: String
    let tags: [String: String]
    let sender: UploadSender
    let json: Bool
    /// Files already reported as skipped for good (not a core), so a long-running watcher says
    /// so once.
    private var reported: Set<CoreFile.Identity> = []

    init(folder: String, statePath: String, settle: Double, remove: Bool, host: String, tags: [String: String], sender: UploadSender, json: Bool) {
        self.folder = folder
        self.statePath = statePath
        self.settle = settle
        self.remove = remove
        self.host = host
        self.tags = tags
        self.sender = sender
        self.json = json
    }

    /// Looks every `settle` seconds (once with `once`); the number of uploads that failed.
    mutating func run(once: Bool) async throws -> Int {
        guard FileManager.default.fileExists(atPath: folder) else { throw CaptureFailure(description: "no folder \(folder) to watch") }
        // A state that cannot be written would send every core again at each look.
        try saveState(try loadState())
        if !once { warn("dumpfleet: watching \(folder) for memory cores every \(Seconds(settle))") }
        while true {
            let failed = try await pass()
            if once { return failed }
            try await Task.sleep(for: .seconds(settle))
        }
    }

    /// One look: the files not uploaded yet, twice `settle` apart; those complete are sent.
    private mutating func pass() async throws -> Int {
        var uploaded = try loadState()
        let first = files().filter { !uploaded.keys.contains($0.value) }
        guard !first.isEmpty else { return 0 }
        try await Task.sleep(for: .seconds(settle))
        let writers = CoreFile.openForWriting(in: folder)
        let resolved = URL(fileURLWithPath: folder).resolvingSymlinksInPath().path
        var failed = 0
        for (file, before) in first.sorted(by: { $0.key.name < $1.key.name }) {
            guard let now = file.identity, now == before else {
                warn("dumpfleet: \(file.name): still changing, left for the next look")
                continue
            }
            if let writer = writers[resolved + "/" + file.name] {
                warn("dumpfleet: \(file.name): open for writing by process \(writer), left for the next look")
                continue
            }
            switch file.kind {
            case .other:
                if reported.insert(now).inserted { warn("dumpfleet: \(file.name): not a memory core or dump, skipped") }
                continue
            case .elfCore where !file.elfSegmentsAreComplete:
                warn("dumpfleet: \(file.name): the ELF core ends before its last segment (still being written?), left for the next look")
                continue
            case .flattenedKdump where !file.flattenedKdumpIsComplete:
                warn("dumpfleet: \(file.name): the flattened kdump file lacks its end marker (still being written?), left for the next look")
                continue
            case .kdump where !file.kdumpPagesAreComplete, .flattenedKdump where !file.kdumpPagesAreComplete:
                warn("dumpfleet: \(file.name): the kdump file ends before its last page (still being written?), left for the next look")
                continue
            default:
                break
            }
            do {
                let status = try await sender.send(file: file.path, vm: file.vm, host: host, tags: tags)
                uploaded[now] = status.dumpId ?? 0
                try saveState(uploaded)
                if remove { try FileManager.default.removeItem(atPath: file.path) }
                if json {
                    print(try JSONOutput.encode(Watched(file: file.path, vm: file.vm, host: host, size: now.size, status: status, removed: remove)))
                } else {
                    print(UploadSender.summary(file: file.path, status: status) + " (\(file.vm) on \(host))" + (remove ? "; removed" : ""))
                }
            } catch {
                failed += 1
                warn("dumpfleet: \(file.name): \(error); kept, and tried again at the next look")
            }
        }
        return failed
    }

    /// `--json`, per core sent.
    struct Watched: Encodable {
        var file: String
        var vm: String
        var host: String
        var size: UInt64
        var status: UploadStatus
        var removed: Bool
    }

    /// The regular files in the folder but hidden ones (the state file among them), each with
    /// its identity now.
    private func files() -> [CoreFile: CoreFile.Identity] {
        var found: [CoreFile: CoreFile.Identity] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where !name.hasPrefix(".") {
            let file = CoreFile(path: folder + "/" + name, name: name)
            if let identity = file.identity { found[file] = identity }
        }
        return found
    }

    /// The state file: one line per core sent, `SIZE MTIME_NS DUMP_ID NAME` (tab-separated).
    private func loadState() throws -> [CoreFile.Identity: Int64] {
        guard let text = try? String(contentsOfFile: statePath, encoding: .utf8) else {
            guard !FileManager.default.fileExists(atPath: statePath) else { throw CaptureFailure(description: "cannot read the state file \(statePath)") }
            return [:]
        }
        var entries: [CoreFile.Identity: Int64] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: "\t", maxSplits: 3, omittingEmptySubsequences: false)
            guard fields.count == 4, let size = UInt64(fields[0]), let modified = Int64(fields[1]), let dump = Int64(fields[2]) else { continue }
            entries[CoreFile.Identity(name: String(fields[3]), size: size, modified: modified)] = dump
        }
        return entries
    }

    /// Writes the state whole and renames it into place; cores no longer in the folder are
    /// left out, so the file stays as small as the folder.
    private func saveState(_ entries: [CoreFile.Identity: Int64]) throws {
        let present = Set((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
        let lines = entries.filter { present.contains($0.key.name) }.sorted { $0.key.name < $1.key.name }
            .map { "\($0.key.size)\t\($0.key.modified)\t\($0.value)\t\($0.key.name)\n" }
        let temporary = statePath + ".new"
        guard FileManager.default.createFile(atPath: temporary, contents: Data(lines.joined().utf8)), rename(temporary, statePath) == 0 else {
            throw CaptureFailure(description: "cannot write the state file \(statePath): \(String(cString: strerror(errno)))")
        }
    }
}
