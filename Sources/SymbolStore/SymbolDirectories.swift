import Foundation
import SymbolFiles

/// A site's symbol files, in one or more directories (`--symbols DIR`), found by the PDB
/// identity an image's CodeView record names:
///
///     DIR/ntkrnlmp.pdb/5278AFF86C341677D7D7835C85B7B8441/ntkrnlmp.pdb   (symstore's layout)
///     DIR/ntkrnlmp.pdb/5278AFF86C341677D7D7835C85B7B844-1.json.xz       (Volatility's)
///     DIR/ntkrnlmp-19041.804-5278AFF86C341677D7D7835C85B7B844-1.json.xz (any name holding
///                                                                       GUID-AGE or GUIDAGE)
///
/// Files are read when first asked for and kept (the last `cacheLimit` of them); one that cannot
/// be read is reported once (in `problems`) and treated as absent, so a damaged store never stops
/// an analysis. Analyses on several threads wait for a file another is reading.
public final class SymbolDirectories: SymbolSource, @unchecked Sendable {
    public let directories: [String]
    /// PDBs larger than this are refused; ISF JSON may unpack to `maximumJSONBytes`.
    public static let maximumFileBytes = 1 << 30
    public static let maximumJSONBytes = 256 << 20
    static let cacheLimit = 64

    private let lock = NSCondition()
    private var loaded: [PDBIdentity: ModuleSymbols?] = [:]
    private var loading: Set<PDBIdentity> = []
    private var failures: [String] = []

    /// Fails when a directory does not exist, so a mistyped `--symbols` is reported at once.
    public init(_ directories: [String]) throws {
        for directory in directories {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw SymbolFileError(.notASymbolFile, "the symbol directory \(directory) does not exist")
            }
        }
        self.directories = directories
    }

    /// Files that were found but could not be read, with why.
    public var problems: [String] { lock.withLock { failures } }

    public func symbols(for identity: PDBIdentity) -> ModuleSymbols? {
        lock.lock()
        while loading.contains(identity) { lock.wait() }
        if let cached = loaded[identity] {
            lock.unlock()
            return cached
        }
        loading.insert(identity)
        lock.unlock()
        var found: ModuleSymbols?
        var problems: [String] = []
        for path in candidates(for: identity) {
            do {
                found = try Self.read(path, identity: identity)
                break
            } catch {
                problems.append("\(path): \(error)")
            }
        }
        lock.lock()
        if loaded.count >= Self.cacheLimit, let evicted = loaded.keys.first { loaded[evicted] = nil }
        loaded[identity] = found
        loading.remove(identity)
        failures += problems
        lock.broadcast()
        lock.unlock()
        return found
    }

    /// The paths that may hold `identity`'s symbols, most specific first.
    func candidates(for identity: PDBIdentity) -> [String] {
        // The name comes from the dump: it must stay a file name inside the folder.
        guard !identity.name.isEmpty, identity.name != ".", identity.name != "..", !identity.name.contains("/") else { return [] }
        let key = identity.storeKey, dashed = "\(identity.guidText)-\(identity.age)"
        let manager = FileManager.default
        var paths: [String] = []
        for directory in directories {
            let named = directory + "/" + identity.name
            paths.append(named + "/" + key + "/" + identity.name)
            for suffix in [".json", ".json.xz"] { paths += [named + "/" + key + suffix, named + "/" + dashed + suffix] }
            let listed = (try? manager.contentsOfDirectory(atPath: directory)) ?? []
            for file in listed.sorted() where (file.hasSuffix(".json") || file.hasSuffix(".json.xz"))
                && (Self.names(file, dashed) || Self.names(file, key)) {
                paths.append(directory + "/" + file)
            }
        }
        return paths.filter { manager.fileExists(atPath: $0) }
    }

    /// Whether `file` holds `key` as a whole word: followed by a dot or a dash, so that age 1 is
    /// not found in a name for age 12.
    static func names(_ file: String, _ key: String) -> Bool {
        let upper = file.uppercased()
        var searchFrom = upper.startIndex
        while let found = upper.range(of: key, range: searchFrom..<upper.endIndex) {
            if found.upperBound == upper.endIndex || [".", "-"].contains(upper[found.upperBound]) { return true }
            searchFrom = upper.index(after: found.lowerBound)
        }
        return false
    }

    /// Reads a PDB or an ISF table; throws when it cannot, or when it is for another build.
    static func read(_ path: String, identity: PDBIdentity) throws -> ModuleSymbols {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw SymbolFileError(.notASymbolFile, "cannot open the file") }
        defer { try? handle.close() }
        guard let data = try handle.read(upToCount: maximumFileBytes + 1), data.count <= maximumFileBytes else {
            throw SymbolFileError(.corrupt, "the file is empty or larger than \(maximumFileBytes) bytes")
        }
        var bytes = [UInt8](data)
        if path.hasSuffix(".json.xz") { bytes = try XZ.decompress(bytes, limit: maximumJSONBytes) }
        let symbols: ModuleSymbols
        if path.hasSuffix(".json") || path.hasSuffix(".json.xz") {
            guard bytes.count <= maximumJSONBytes else { throw SymbolFileError(.corrupt, "the JSON is larger than \(maximumJSONBytes) bytes") }
            symbols = ModuleSymbols(try ISFFile(json: bytes), origin: path)
        } else {
            symbols = ModuleSymbols(try PDBFile(bytes, name: identity.name), origin: path)
        }
        // A file under the right name but of another build would name every frame wrongly.
        guard symbols.identity.guid == identity.guid, symbols.identity.age == identity.age else {
            throw SymbolFileError(.notASymbolFile, "the file is for \(symbols.identity), not \(identity)")
        }
        return symbols
    }
}
