/// One image's symbols, from whichever file the site had: function names by RVA, structure
/// layouts where the file has types, and which file it was, for the report.
public struct ModuleSymbols: Sendable {
    public let identity: PDBIdentity
    /// Named starts, sorted by RVA.
    public let functions: [FunctionSymbol]
    public let types: (any KernelTypeLayout)?
    /// Where the symbols came from (a path), for the report.
    public let origin: String
    /// What could not be read of the file.
    public let problems: [String]

    public init(_ pdb: PDBFile, origin: String) {
        identity = pdb.identity
        functions = pdb.functions
        types = pdb.types.records.isEmpty ? nil : pdb.types
        self.origin = origin
        problems = pdb.problems
    }

    public init(_ isf: ISFFile, origin: String) {
        identity = isf.identity
        functions = isf.functions
        types = isf
        self.origin = origin
        problems = []
    }

    /// The function holding `rva`: the nearest named start at or below it, unless that
    /// function's size says it ends first. Returns the name and the offset into it.
    public func function(containing rva: UInt32) -> (name: String, offset: UInt32)? {
        var low = 0, high = functions.count
        while low < high {
            let middle = (low + high) / 2
            if functions[middle].rva <= rva { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        let function = functions[low - 1]
        if let size = function.size, rva - function.rva >= size { return nil }
        return (function.name, rva - function.rva)
    }
}

/// Where an analysis gets an image's symbols: the I/O layer searches a site's symbol
/// directories; without one, nothing is named beyond exports.
public protocol SymbolSource: Sendable {
    /// The symbols of the image built with `identity`'s PDB, nil when the site has none.
    func symbols(for identity: PDBIdentity) -> ModuleSymbols?
}
