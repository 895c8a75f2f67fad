import DumpFormat
import DumpMemory
import SymbolFiles

/// Names code addresses: the module from the loaded-module list, the function's start from the
/// image's .pdata, its name from the site's symbol file for the image when there is one (found
/// by the PDB identity in the image's debug directory), else from the export directory when
/// the nearest export is that very function. Not thread-safe (it caches); one per thread.
public final class Symbolizer {
    public struct Location: Sendable, Equatable {
        public var module: LoadedModule
        /// The address's offset from the module base.
        public var rva: UInt32
        /// The containing function's start, from .pdata, when readable.
        public var function: RuntimeFunction?
        /// The export naming the containing function, when there is one.
        public var export: PEImage.Export?
        /// The function a symbol file names, and the offset into it.
        public var symbol: (name: String, offset: UInt32)?

        /// WinDbg's short module name (`nt`, `hal`, `nvlddmkm`).
        public var moduleKey: String { TriageRules.moduleKey(module.name) }

        /// `nt!KiInsertTimerTable+0x7b` when a symbol file or an export names the function,
        /// otherwise `nvlddmkm+0x1091`. For people only: signatures and buckets key on the RVA,
        /// so they stay the same when symbols appear.
        public var text: String {
            if let symbol { return "\(moduleKey)!\(symbol.name)+0x\(String(symbol.offset, radix: 16))" }
            if let export { return "\(moduleKey)!\(export.name)+0x\(String(rva - export.rva, radix: 16))" }
            return "\(moduleKey)+0x\(String(rva, radix: 16))"
        }

        public static func == (lhs: Location, rhs: Location) -> Bool {
            lhs.module == rhs.module && lhs.rva == rhs.rva && lhs.function == rhs.function && lhs.export == rhs.export
                && lhs.symbol?.name == rhs.symbol?.name && lhs.symbol?.offset == rhs.symbol?.offset
        }
    }

    public let modules: [LoadedModule]
    let space: any KernelAddressSpace
    let symbols: (any SymbolSource)?
    private var images: [UInt64: PEImage?] = [:]
    private var exports: [UInt64: [PEImage.Export]] = [:]
    private var tables: [UInt64: ExceptionTable?] = [:]
    private var symbolFiles: [UInt64: ModuleSymbols?] = [:]

    public init(modules: [LoadedModule], space: any KernelAddressSpace, symbols: (any SymbolSource)? = nil) {
        self.modules = modules.sorted { $0.base < $1.base }
        self.space = space
        self.symbols = symbols
    }

    /// The site's symbols for `module`, when it has a symbol source, the image's debug
    /// directory is in the dump, and the source has the file it names.
    public func moduleSymbols(_ module: LoadedModule) -> ModuleSymbols? {
        guard let symbols else { return nil }
        if let cached = symbolFiles[module.base] { return cached }
        let found = ((try? image(module)?.pdbIdentity(in: space)) ?? nil).flatMap(symbols.symbols(for:))
        symbolFiles[module.base] = found
        return found
    }

    public func module(containing address: UInt64) -> LoadedModule? {
        var low = 0
        var high = modules.count
        while low < high {
            let middle = (low + high) / 2
            if modules[middle].base <= address { low = middle + 1 } else { high = middle }
        }
        return low > 0 && modules[low - 1].contains(address) ? modules[low - 1] : nil
    }

    /// The image headers of `module`, if its first page is in the dump.
    func image(_ module: LoadedModule) -> PEImage? {
        if let cached = images[module.base] { return cached }
        let image = try? PEImage(reading: space, base: module.base)
        images[module.base] = image
        return image
    }

    /// .pdata: KLDR's ExceptionTable first (it survives paged-out headers), else the headers'.
    func exceptionTable(_ module: LoadedModule) -> ExceptionTable? {
        if let cached = tables[module.base] { return cached }
        var table: ExceptionTable?
        if let address = module.exceptionTable, let size = module.exceptionTableSize, address != 0, size != 0 {
            table = try? PEImage.exceptionTable(imageBase: module.base, exceptionTable: address, size: size)
        }
        if table == nil { table = (try? image(module)?.exceptionTable()) ?? nil }
        tables[module.base] = table
        return table
    }

    /// The module holding `address` and its RUNTIME_FUNCTION: nil function means a leaf (no
    /// entry in a readable .pdata). Nil altogether when outside any module, or when the module
    /// has no readable .pdata or the lookup hit a missing page, so the caller must scan.
    public func runtimeFunction(at address: UInt64) -> (LoadedModule, RuntimeFunction?)? {
        guard let module = module(containing: address), let table = exceptionTable(module) else { return nil }
        do {
            return (module, try table.runtimeFunction(containing: UInt32(address - module.base), in: space))
        } catch {
            return nil
        }
    }

    func exportList(_ module: LoadedModule) -> [PEImage.Export] {
        if let cached = exports[module.base] { return cached }
        let list = ((try? image(module)?.exports(in: space)) ?? nil) ?? []
        exports[module.base] = list
        return list
    }

    public func locate(_ address: UInt64) -> Location? {
        guard let module = module(containing: address) else { return nil }
        let rva = UInt32(address - module.base)
        let function = (try? exceptionTable(module)?.runtimeFunction(containing: rva, in: space)) ?? nil
        let list = exportList(module)
        // The nearest export at or below the address names it only when it is the function's own
        // start (with .pdata) or, without .pdata, when it is the closest name below.
        var low = 0
        var high = list.count
        while low < high {
            let middle = (low + high) / 2
            if list[middle].rva <= rva { low = middle + 1 } else { high = middle }
        }
        var export = low > 0 ? list[low - 1] : nil
        if let function, let candidate = export, candidate.rva != function.beginAddress { export = nil }
        return Location(module: module, rva: rva, function: function, export: export, symbol: moduleSymbols(module)?.function(containing: rva))
    }
}
