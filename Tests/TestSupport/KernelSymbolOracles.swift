import Foundation

// Structure offsets as Microsoft's symbols state them, read from files we did not write: a
// Volatility ISF (the kernel PDB's types as JSON) and the per-build table in
// ../shared/docs/kernel-offsets-by-build.txt. Tests compare the parser's and the forge's
// constants with them, so a misreading shared by both sides cannot pass.

/// One Volatility ISF file (`.json` or `.json.xz`, unpacked by the `xz` tool).
public struct SymbolFileISF {
    public let path: String
    /// The kernel build the file is for, from its name (`ntkrnlmp-19041.804-GUID-AGE.json.xz`),
    /// since the ISF itself names only the PDB's GUID.
    public let build: UInt32?
    private let userTypes: [String: Any]

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public init(path: String) throws {
        self.path = path
        let name = (path as NSString).lastPathComponent
        build = name.split(separator: "-").dropFirst().first.flatMap { $0.split(separator: ".").first }.flatMap { UInt32($0) }
        let data: Data
        if path.hasSuffix(".xz") {
            guard let xz = Tools.find("xz") else { throw Failure(description: "the xz tool is not on PATH (scripts/setup installs xz-utils)") }
            let run = try Tools.run(xz, ["-dc", path])
            guard run.status == 0 else { throw Failure(description: "xz -dc \(path) exited with \(run.status)") }
            data = run.output
        } else {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        }
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let types = root["user_types"] as? [String: Any] else {
            throw Failure(description: "\(path) has no user_types: not an ISF")
        }
        userTypes = types
    }

    /// Every ISF in ../shared/fixtures/isf, or nil where the folder is absent.
    public static func all() throws -> [SymbolFileISF]? {
        guard let folder = Fixtures.sharedPath("fixtures/isf") else { return nil }
        return try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
            .filter { $0.hasSuffix(".json") || $0.hasSuffix(".json.xz") }
            .map { try SymbolFileISF(path: folder + "/" + $0) }
    }

    /// The size of a structure (`"_EPROCESS"`).
    public func size(of type: String) throws -> UInt64 {
        guard let size = try structure(type)["size"] as? Int else { throw Failure(description: "\(type) has no size in \(path)") }
        return UInt64(size)
    }

    /// The offset of a field, through nested structures: `"_KPRCB.ProcessorState.ContextFrame"`
    /// is ProcessorState's offset in _KPRCB plus ContextFrame's in _KPROCESSOR_STATE.
    public func offset(of fieldPath: String) throws -> UInt64 {
        var parts = fieldPath.split(separator: ".").map(String.init)
        var type = parts.removeFirst()
        var offset = 0
        for name in parts {
            let field = try self.field(name, in: type)
            offset += field.offset
            type = field.typeName ?? ""
        }
        return UInt64(offset)
    }

    /// The position and width of a bitfield: `"_MMPTE_TRANSITION.SwizzleBit"`.
    public func bitfield(_ fieldPath: String) throws -> (position: Int, length: Int) {
        let parts = fieldPath.split(separator: ".").map(String.init)
        guard parts.count == 2 else { throw Failure(description: "\(fieldPath): give a structure and one field") }
        let field = try self.field(parts[1], in: parts[0])
        guard let position = field.bitPosition, let length = field.bitLength else {
            throw Failure(description: "\(fieldPath) is not a bitfield in \(path)")
        }
        return (position, length)
    }

    /// The element count of an array field, outermost dimension first: `[2, 256]`.
    public func arrayCounts(_ fieldPath: String) throws -> [Int] {
        let parts = fieldPath.split(separator: ".").map(String.init)
        guard parts.count == 2 else { throw Failure(description: "\(fieldPath): give a structure and one field") }
        var counts: [Int] = []
        var type = try self.field(parts[1], in: parts[0]).type
        while type["kind"] as? String == "array", let count = type["count"] as? Int {
            counts.append(count)
            type = type["subtype"] as? [String: Any] ?? [:]
        }
        return counts
    }

    private func structure(_ name: String) throws -> [String: Any] {
        guard let type = userTypes[name] as? [String: Any] else { throw Failure(description: "\(name) is not in \(path)") }
        return type
    }

    private struct Field {
        var offset: Int
        var type: [String: Any]
        var typeName: String? { type["kind"] as? String == "struct" || type["kind"] as? String == "union" ? type["name"] as? String : nil }
        var bitPosition: Int? { type["bit_position"] as? Int }
        var bitLength: Int? { type["bit_length"] as? Int }
    }

    private func field(_ name: String, in type: String) throws -> Field {
        guard let fields = try structure(type)["fields"] as? [String: Any],
              let field = fields[name] as? [String: Any],
              let offset = field["offset"] as? Int, let fieldType = field["type"] as? [String: Any] else {
            throw Failure(description: "\(type).\(name) is not in \(path)")
        }
        return Field(offset: offset, type: fieldType)
    }
}

/// ../shared/docs/kernel-offsets-by-build.txt: for each build, `STRUCT.Field  value[, value]`
/// lines (several values where the build's updates differ, `None` where the field does not exist).
public struct OffsetTableDocument {
    /// build -> field name -> the values the build's versions have (empty for `None`).
    public let builds: [UInt32: [String: [UInt64]]]

    /// The document, or nil where ../shared/docs is absent.
    public static func load() throws -> OffsetTableDocument? {
        guard let path = Fixtures.sharedPath("docs/kernel-offsets-by-build.txt") else { return nil }
        return try OffsetTableDocument(text: String(contentsOfFile: path, encoding: .utf8))
    }

    public init(text: String) throws {
        var builds: [UInt32: [String: [UInt64]]] = [:]
        var current: UInt32?
        for line in text.split(separator: "\n") {
            if line.hasPrefix("#") { continue }
            if line.hasPrefix("== ") {
                current = line.dropFirst(3).split(separator: " ").first.flatMap { UInt32($0) }
                continue
            }
            let words = line.split(separator: " ", maxSplits: 1)
            guard let build = current, words.count == 2 else { continue }
            let values = words[1].split(separator: ",").compactMap { value -> UInt64? in
                let text = value.trimmingCharacters(in: .whitespaces)
                return text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : nil
            }
            builds[build, default: [:]][String(words[0])] = values
        }
        guard !builds.isEmpty else { throw SymbolFileISF.Failure(description: "no \"== build\" sections in the offsets document") }
        self.builds = builds
    }
}
