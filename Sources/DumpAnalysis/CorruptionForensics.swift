import DumpMemory

/// Turns bad pointers into evidence: when a kernel list or a faulting access holds a value that
/// is not an address, the bytes are often someone else's data, and text in them names the
/// writer. Decodes the bad value and the memory around it as UTF-16LE and ASCII.
///
/// The VDI case: a timer-list Flink read 00500044`0048005C. Its bytes are 5C 00 48 00 44 00
/// 50 00, UTF-16LE for "\HDP", and the KTIMER around it held "\HDPServer\VideoAccelerator.exe":
/// a user-mode program's path, written over kernel memory by the component that served it.
public struct Evidence: Sendable, Equatable, Codable {
    /// Where the bad value was found, in words ("CPU 0 timer list 140").
    public var location: String
    /// Address of the bad value.
    public var address: UInt64
    /// The bad value itself.
    public var value: UInt64
    /// Text decoded from the value and the memory around it.
    public var text: [String]
    /// A process or module whose name or path matches the text.
    public var attributedTo: Attribution?
    /// Text in the faulting frame's stack, not a corrupted value: a local buffer tells what
    /// the code was working on, so it is reported and compared, but blames no one. Nil in
    /// evidence of corruption (and in reports from before stack text was read).
    public var onStack: Bool? = nil
}

public struct Attribution: Sendable, Equatable, Codable {
    public enum Kind: String, Sendable, Codable { case process, module, unknownProgram = "program" }
    public var kind: Kind
    /// The matching name (`VideoAccelerator.exe`).
    public var name: String
    /// Whether a Microsoft component (by the triage rules) or a third party's.
    public var thirdParty: Bool
}

public enum CorruptionForensics {
    /// Minimum characters of a decoded run worth reporting.
    static let minimumRun = 4

    /// Printable runs in `bytes`, decoded as UTF-16LE (at both alignments) and as ASCII.
    public static func text(in bytes: [UInt8]) -> [String] {
        var found: [String] = []
        func printable(_ unit: UInt16) -> Bool { (0x20...0x7E).contains(unit) }
        for alignment in 0..<2 {
            var run: [UInt16] = []
            var index = alignment
            while index + 1 < bytes.count {
                let unit = UInt16(bytes[index]) | UInt16(bytes[index + 1]) << 8
                if printable(unit) { run.append(unit) } else {
                    if run.count >= minimumRun { found.append(String(decoding: run, as: UTF16.self)) }
                    run.removeAll()
                }
                index += 2
            }
            if run.count >= minimumRun { found.append(String(decoding: run, as: UTF16.self)) }
        }
        var ascii: [UInt8] = []
        for byte in bytes + [0] {
            if (0x21...0x7E).contains(byte) || (byte == 0x20 && !ascii.isEmpty) { ascii.append(byte) } else {
                if ascii.count >= 6 { found.append(String(decoding: ascii, as: UTF8.self)) }
                ascii.removeAll()
            }
        }
        // Longest first, without runs contained in a longer one.
        let sorted = found.sorted { $0.count > $1.count }
        return sorted.enumerated().filter { index, text in !sorted[..<index].contains { $0.contains(text) } }.map(\.element)
    }

    /// Evidence for a bad value at `address`: the value's own bytes plus up to `window` bytes
    /// around it, as far as they can be read.
    public static func examine(value: UInt64, at address: UInt64, location: String, space: any KernelAddressSpace, window: UInt64 = 0x80) -> Evidence {
        var bytes: [UInt8] = []
        // Read what is readable around the value, 16 bytes at a time.
        var chunkStart = address &- window / 2
        while chunkStart < address &+ window / 2 + 8 {
            bytes += (try? space.read(chunkStart, count: 16)) ?? []
            chunkStart &+= 16
        }
        let own = (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        let texts = text(in: bytes.isEmpty ? own : bytes)
        return Evidence(location: location, address: address, value: value, text: texts.isEmpty ? text(in: own + [0, 0]) : texts, attributedTo: nil)
    }

    /// Names the process or module the evidence's text points at.
    public static func attribute(_ evidence: Evidence, processes: [KernelProcess], modules: [LoadedModule], rules: TriageRules) -> Attribution? {
        for text in evidence.text {
            let file = String(text.split(whereSeparator: { $0 == "\\" || $0 == "/" }).last ?? Substring(text)).lowercased()
            guard file.count >= 4 else { continue }
            if let module = modules.first(where: { module in
                module.name.lowercased() == file || (module.path?.lowercased().split(separator: "\\").last.map(String.init) == file)
            }) {
                return Attribution(kind: .module, name: module.name, thirdParty: !rules.skips(module: module.name, function: nil))
            }
            // EPROCESS.ImageFileName keeps the first 15 characters of the name.
            if let process = processes.first(where: { ($0.imageName?.count ?? 0) >= 8 && file.hasPrefix($0.imageName!.lowercased()) }) {
                return Attribution(kind: .process, name: file.count > (process.imageName?.count ?? 0) ? String(text.split(separator: "\\").last ?? "") : process.imageName!, thirdParty: true)
            }
            if file.hasSuffix(".exe") || file.hasSuffix(".sys") || file.hasSuffix(".dll") {
                return Attribution(kind: .unknownProgram, name: String(text.split(separator: "\\").last ?? Substring(text)), thirdParty: true)
            }
        }
        return nil
    }
}
