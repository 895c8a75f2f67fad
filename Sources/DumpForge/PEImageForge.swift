// Forges a small but structurally faithful PE32+ (x64) kernel image, laid out as the loader
// maps it: every section sits at its RVA, so an RVA is simply an index into `bytes`.
//
// What a dump analyser needs from a module is exactly what is forged here: the headers
// (to find SizeOfImage, TimeDateStamp and CheckSum, the keys symbol servers use), the export
// directory (to name addresses without symbols) and the exception directory (.pdata) with its
// UNWIND_INFO records (to walk x64 stacks). Offsets are spelled out at each call site on
// purpose: this file shares no layout code with the parser, so each checks the other.

/// One register-changing step of a function prolog, in the order the instructions execute.
public enum PrologStep: Sendable, Equatable {
    /// `push r` -> UWOP_PUSH_NONVOL (0), OpInfo = register.
    case pushNonvolatile(register: UInt8)
    /// `sub rsp, n` -> UWOP_ALLOC_SMALL (2) for 8...128, otherwise UWOP_ALLOC_LARGE (1).
    /// `bytes` must be a non-zero multiple of 8.
    case allocate(bytes: UInt32)
    /// `lea reg, [rsp+16*offset]` -> UWOP_SET_FPREG (3); the register and offset live in
    /// UNWIND_INFO byte 3, not in the code slot. `offset` is 0...15.
    case setFramePointer(register: UInt8, offset: UInt8)
    /// `mov [rsp+offset], r` -> UWOP_SAVE_NONVOL (4) or UWOP_SAVE_NONVOL_FAR (5).
    /// `offset` must be a multiple of 8.
    case saveNonvolatile(register: UInt8, offset: UInt32)
    /// `movaps [rsp+offset], xmmN` -> UWOP_SAVE_XMM128 (8) or UWOP_SAVE_XMM128_FAR (9).
    /// `offset` must be a multiple of 16.
    case saveXMM128(register: UInt8, offset: UInt32)
    /// The CPU pushed a machine frame (SS, RSP, RFLAGS, CS, RIP and maybe an error code) before
    /// the first instruction ran -> UWOP_PUSH_MACHFRAME (10). Interrupt and trap entry stubs
    /// describe this with a "dummy prolog": the code has no instruction for it, so it takes
    /// zero bytes and normally comes first.
    case pushMachineFrame(errorCode: Bool)
}

public struct ForgedFunction: Sendable, Equatable {
    public var name: String
    /// Exported functions get a name (and an ordinal) in the export directory.
    public var exported: Bool
    /// Bytes of code; must hold at least the prolog.
    public var size: UInt32
    public var prolog: [PrologStep]
    /// When set, this function is a fragment of the named function: its UNWIND_INFO carries
    /// UNW_FLAG_CHAININFO and ends with the parent's RUNTIME_FUNCTION.
    public var chainedTo: String?

    public init(name: String, exported: Bool = true, size: UInt32, prolog: [PrologStep] = [], chainedTo: String? = nil) {
        self.name = name
        self.exported = exported
        self.size = size
        self.prolog = prolog
        self.chainedTo = chainedTo
    }

    /// Bytes this function's own prolog moves RSP by: 8 per push, the allocations, and 40
    /// (48 with an error code) for a machine frame. Saves and the frame pointer move nothing.
    /// For a chained fragment the parent's frameSize comes on top of this.
    public var frameSize: UInt32 {
        prolog.reduce(0) { total, step in
            switch step {
            case .pushNonvolatile: return total + 8
            case .allocate(let bytes): return total + bytes
            case .pushMachineFrame(let errorCode): return total + (errorCode ? 48 : 40)
            case .setFramePointer, .saveNonvolatile, .saveXMM128: return total
            }
        }
    }
}

public struct ForgedImage: Sendable {
    /// The whole image as mapped in memory (sections at their RVAs); count == sizeOfImage.
    public var bytes: [UInt8]
    /// A multiple of the 0x1000 section alignment.
    public var sizeOfImage: UInt32
    public var timeDateStamp: UInt32
    public var checkSum: UInt32
    /// Start RVA of .pdata (data directory 3).
    public var exceptionTableRVA: UInt32
    /// Bytes of .pdata: 12 per RUNTIME_FUNCTION.
    public var exceptionTableSize: UInt32
    /// Function name -> [BeginAddress, EndAddress) as RVAs.
    public var functions: [String: Range<UInt32>]
    public var entryPointRVA: UInt32
}

/// Builds a mapped PE32+ image holding `functions` in .text (in the given order), an export
/// directory for the exported ones, and .pdata/UNWIND_INFO describing every prolog.
///
/// The debug directory names the image's PDB (a CodeView "RSDS" record) and, for a
/// `reproducible` image (Microsoft's, linked with /Brepro), has a REPRO entry: its TimeDateStamp
/// is then a hash of the build, not a time.
public func forgePEImage(name: String, timeDateStamp: UInt32, checkSum: UInt32, functions: [ForgedFunction],
                         reproducible: Bool = false, codeView: CodeViewRecord? = nil, preferredBase: UInt64 = 0xFFFF_F800_0000_0000) -> ForgedImage {
    precondition(!functions.isEmpty, "an image needs at least one function")
    precondition(name.utf8.allSatisfy { $0 > 0 && $0 < 0x80 }, "the module name is ASCII")
    var byName: [String: ForgedFunction] = [:]
    for function in functions {
        precondition(byName.updateValue(function, forKey: function.name) == nil, "duplicate function \(function.name)")
    }

    let pageSize: UInt32 = 0x1000, fileAlignment: UInt32 = 0x200
    var image = ByteBuffer()

    // --- .text: functions back to back, each starting on a 16-byte boundary (as MSVC aligns
    // them), the gaps filled with int3 (0xCC) the way the linker pads.
    let textRVA = pageSize
    let prologs = functions.map { encodeProlog($0.prolog) }
    var ranges: [String: Range<UInt32>] = [:]
    var cursor = textRVA
    for (function, prolog) in zip(functions, prologs) {
        precondition(prolog.code.count <= Int(function.size), "prolog of \(function.name) is longer than the function")
        let begin = alignUp(cursor, 16)
        image.put([UInt8](repeating: 0xCC, count: Int(begin - cursor)), at: Int(cursor))
        image.put(functionBody(function, prolog: prolog.code, byName: byName), at: Int(begin))
        ranges[function.name] = begin..<begin + function.size
        cursor = begin + function.size
    }
    let textSize = cursor - textRVA

    // --- .rdata: export directory with its tables and strings, then the UNWIND_INFOs.
    let rdataRVA = alignUp(cursor, pageSize)
    let exports = functions.filter(\.exported)
    let exportRVA = rdataRVA
    let addressTableRVA = exportRVA + 40
    let nameTableRVA = addressTableRVA + 4 * UInt32(exports.count)
    let ordinalTableRVA = nameTableRVA + 4 * UInt32(exports.count)
    var stringRVA = ordinalTableRVA + 2 * UInt32(exports.count)

    // Export address table: one slot per exported function in the order given; the ordinal of
    // slot i is Base + i (Base is 1, as the linker sets it when no ordinals are pinned).
    for (index, function) in exports.enumerated() {
        image.put32(ranges[function.name]!.lowerBound, at: Int(addressTableRVA) + 4 * index)
    }
    image.put32(0, at: Int(exportRVA) + 0)                    // Characteristics (reserved)
    image.put32(timeDateStamp, at: Int(exportRVA) + 4)
    image.put16(0, at: Int(exportRVA) + 8)                    // MajorVersion
    image.put16(0, at: Int(exportRVA) + 10)                   // MinorVersion
    image.put32(stringRVA, at: Int(exportRVA) + 12)           // Name (module name)
    image.put32(1, at: Int(exportRVA) + 16)                   // Base
    image.put32(UInt32(exports.count), at: Int(exportRVA) + 20) // NumberOfFunctions
    image.put32(UInt32(exports.count), at: Int(exportRVA) + 24) // NumberOfNames
    image.put32(addressTableRVA, at: Int(exportRVA) + 28)     // AddressOfFunctions
    image.put32(nameTableRVA, at: Int(exportRVA) + 32)        // AddressOfNames
    image.put32(ordinalTableRVA, at: Int(exportRVA) + 36)     // AddressOfNameOrdinals
    stringRVA = putCString(name, in: &image, at: stringRVA)

    // The loader (and GetProcAddress) binary-searches the name table with strcmp, so the names
    // must be sorted by their raw bytes. The parallel ordinal table holds, for each sorted name,
    // the unbiased index of its function in the address table (not the ordinal; no Base added).
    let sortedExports = exports.enumerated().sorted {
        Array($0.element.name.utf8).lexicographicallyPrecedes(Array($1.element.name.utf8))
    }
    for (position, entry) in sortedExports.enumerated() {
        precondition(entry.element.name.utf8.allSatisfy { $0 > 0 && $0 < 0x80 }, "export names are ASCII")
        image.put32(stringRVA, at: Int(nameTableRVA) + 4 * position)
        image.put16(UInt16(entry.offset), at: Int(ordinalTableRVA) + 2 * position)
        stringRVA = putCString(entry.element.name, in: &image, at: stringRVA)
    }
    let exportSize = stringRVA - exportRVA

    // UNWIND_INFO records must be DWORD aligned. Their addresses are fixed first, because a
    // chained fragment quotes its parent's RUNTIME_FUNCTION, UnwindInfoAddress included.
    var unwindRVAs: [String: UInt32] = [:]
    var unwindCursor = alignUp(stringRVA, 4)
    for (function, prolog) in zip(functions, prologs) {
        unwindRVAs[function.name] = unwindCursor
        let slots = (prolog.slots.count + 1) & ~1                // the array is padded to an even count
        unwindCursor += 4 + 2 * UInt32(slots) + (function.chainedTo == nil ? 0 : 12)
    }
    for (function, prolog) in zip(functions, prologs) {
        let at = Int(unwindRVAs[function.name]!)
        precondition(prolog.code.count <= 0xFF && prolog.slots.count <= 0xFF, "prolog of \(function.name) too long")
        // Byte 0: Version (1) in bits 0-2, Flags in bits 3-7. UNW_FLAG_CHAININFO is 4; the
        // exception/termination handler flags (1, 2) are never forged.
        image.put8(1 | (function.chainedTo == nil ? 0 : 4) << 3, at: at)
        image.put8(UInt8(prolog.code.count), at: at + 1)         // SizeOfProlog
        image.put8(UInt8(prolog.slots.count), at: at + 2)        // CountOfCodes, padding not counted
        image.put8(prolog.frameRegister | prolog.frameOffset << 4, at: at + 3)
        for (index, slot) in prolog.slots.enumerated() { image.put16(slot, at: at + 4 + 2 * index) }
        if let parent = function.chainedTo {
            precondition(parent != function.name, "\(parent) cannot chain to itself")
            guard let parentRange = ranges[parent] else { preconditionFailure("\(function.name) chains to unknown \(parent)") }
            let tail = at + 4 + 2 * ((prolog.slots.count + 1) & ~1)
            image.put32(parentRange.lowerBound, at: tail)
            image.put32(parentRange.upperBound, at: tail + 4)
            image.put32(unwindRVAs[parent]!, at: tail + 8)
        }
    }
    // IMAGE_DEBUG_DIRECTORY entries (28 bytes): Characteristics, TimeDateStamp, Major/MinorVersion,
    // Type (2 CodeView, 16 REPRO), SizeOfData, AddressOfRawData, PointerToRawData. The CodeView
    // data is "RSDS", the PDB's GUID, its Age and its path; the REPRO entry carries no data here.
    let debugRVA = alignUp(unwindCursor, 4)
    let debugEntries = reproducible ? 2 : 1
    let codeViewRVA = debugRVA + 28 * UInt32(debugEntries)
    let pdbName = codeView?.pdbName ?? String(name.prefix { $0 != "." }) + ".pdb"
    image.putASCII("RSDS", at: Int(codeViewRVA))
    if let codeView {
        image.put(codeView.guid, at: Int(codeViewRVA) + 4)
    } else {
        let nameHash = name.utf8.reduce(UInt64(0xCBF2_9CE4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }  // FNV-1a: a stable GUID per name
        image.put64(nameHash, at: Int(codeViewRVA) + 4)
        image.put64(nameHash ^ UInt64(timeDateStamp), at: Int(codeViewRVA) + 12)
    }
    image.put32(codeView?.age ?? 1, at: Int(codeViewRVA) + 20)  // Age
    let debugEnd = putCString(pdbName, in: &image, at: codeViewRVA + 24)
    let entries: [(type: UInt32, size: UInt32, rva: UInt32)] = [(2, debugEnd - codeViewRVA, codeViewRVA), (16, 0, 0)]
    for (index, entry) in entries.prefix(debugEntries).enumerated() {
        let at = Int(debugRVA) + 28 * index
        image.put32(0, at: at)
        image.put32(timeDateStamp, at: at + 4)
        image.put32(0, at: at + 8)
        image.put32(entry.type, at: at + 12)
        image.put32(entry.size, at: at + 16)
        image.put32(entry.rva, at: at + 20)
        image.put32(entry.rva == 0 ? 0 : 0x400 + alignUp(textSize, 0x200) + (entry.rva - rdataRVA), at: at + 24)  // its place in the file
    }
    let rdataSize = debugEnd - rdataRVA

    // --- .pdata: RUNTIME_FUNCTION {BeginAddress, EndAddress, UnwindInfoAddress}, sorted by
    // BeginAddress because RtlLookupFunctionEntry binary-searches it.
    let pdataRVA = alignUp(debugEnd, pageSize)
    let sortedFunctions = functions.sorted { ranges[$0.name]!.lowerBound < ranges[$1.name]!.lowerBound }
    for (index, function) in sortedFunctions.enumerated() {
        let at = Int(pdataRVA) + 12 * index
        image.put32(ranges[function.name]!.lowerBound, at: at)
        image.put32(ranges[function.name]!.upperBound, at: at + 4)
        image.put32(unwindRVAs[function.name]!, at: at + 8)
    }
    let pdataSize = 12 * UInt32(functions.count)
    let sizeOfImage = alignUp(pdataRVA + pdataSize, pageSize)

    // --- Headers. The DOS header is a fossil: only "MZ" and e_lfanew (at 0x3C) matter, but the
    // classic stub is kept so the image looks like what link.exe writes.
    let peOffset = 0x80
    image.putASCII("MZ", at: 0)
    image.put16(0x90, at: 0x02)                               // e_cblp: bytes on the last page
    image.put16(3, at: 0x04)                                  // e_cp: pages in the file
    image.put16(4, at: 0x08)                                  // e_cparhdr: header paragraphs
    image.put16(0xFFFF, at: 0x0C)                             // e_maxalloc
    image.put16(0xB8, at: 0x10)                               // e_sp
    image.put16(0x40, at: 0x18)                               // e_lfarlc
    image.put32(UInt32(peOffset), at: 0x3C)                   // e_lfanew
    // push cs; pop ds; mov dx, 0xE; mov ah, 9; int 21h; mov ax, 0x4C01; int 21h
    image.put([0x0E, 0x1F, 0xBA, 0x0E, 0x00, 0xB4, 0x09, 0xCD, 0x21, 0xB8, 0x01, 0x4C, 0xCD, 0x21], at: 0x40)
    image.putASCII("This program cannot be run in DOS mode.\r\r\n$", at: 0x4E)

    let sections: [(name: String, rva: UInt32, size: UInt32, characteristics: UInt32)] = [
        (".text", textRVA, textSize, 0x6000_0020),            // CODE | EXECUTE | READ
        (".rdata", rdataRVA, rdataSize, 0x4000_0040),         // INITIALIZED_DATA | READ
        (".pdata", pdataRVA, pdataSize, 0x4000_0040),
    ]

    image.putASCII("PE", at: peOffset)                        // "PE\0\0"
    let fileHeader = peOffset + 4
    image.put16(0x8664, at: fileHeader)                       // Machine: AMD64
    image.put16(UInt16(sections.count), at: fileHeader + 2)
    image.put32(timeDateStamp, at: fileHeader + 4)
    image.put32(0, at: fileHeader + 8)                        // PointerToSymbolTable (none in images)
    image.put32(0, at: fileHeader + 12)                       // NumberOfSymbols
    image.put16(0xF0, at: fileHeader + 16)                    // SizeOfOptionalHeader (PE32+ with 16 dirs)
    image.put16(0x22, at: fileHeader + 18)                    // EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE

    let sizeOfHeaders: UInt32 = 0x400
    let rawSizes = sections.map { alignUp($0.size, fileAlignment) }
    let optional = fileHeader + 20
    image.put16(0x20B, at: optional)                          // Magic: PE32+
    image.put8(14, at: optional + 2)                          // MajorLinkerVersion
    image.put8(0, at: optional + 3)                           // MinorLinkerVersion
    image.put32(rawSizes[0], at: optional + 4)                // SizeOfCode
    image.put32(rawSizes[1] + rawSizes[2], at: optional + 8)  // SizeOfInitializedData
    image.put32(0, at: optional + 12)                         // SizeOfUninitializedData
    image.put32(ranges[functions[0].name]!.lowerBound, at: optional + 16) // AddressOfEntryPoint
    image.put32(textRVA, at: optional + 20)                   // BaseOfCode (PE32+ has no BaseOfData)
    image.put64(preferredBase, at: optional + 24)             // ImageBase
    image.put32(pageSize, at: optional + 32)                  // SectionAlignment
    image.put32(fileAlignment, at: optional + 36)             // FileAlignment
    image.put16(10, at: optional + 40)                        // MajorOperatingSystemVersion
    image.put16(0, at: optional + 42)
    image.put16(10, at: optional + 44)                        // MajorImageVersion
    image.put16(0, at: optional + 46)
    image.put16(10, at: optional + 48)                        // MajorSubsystemVersion
    image.put16(0, at: optional + 50)
    image.put32(0, at: optional + 52)                         // Win32VersionValue
    image.put32(sizeOfImage, at: optional + 56)
    image.put32(sizeOfHeaders, at: optional + 60)
    image.put32(checkSum, at: optional + 64)
    image.put16(1, at: optional + 68)                         // Subsystem: NATIVE (drivers, the kernel)
    image.put16(0x0160, at: optional + 70)                    // DllCharacteristics: HIGH_ENTROPY_VA | DYNAMIC_BASE | NX_COMPAT
    image.put64(0x40000, at: optional + 72)                   // SizeOfStackReserve
    image.put64(0x1000, at: optional + 80)                    // SizeOfStackCommit
    image.put64(0x100000, at: optional + 88)                  // SizeOfHeapReserve
    image.put64(0x1000, at: optional + 96)                    // SizeOfHeapCommit
    image.put32(0, at: optional + 104)                        // LoaderFlags
    image.put32(16, at: optional + 108)                       // NumberOfRvaAndSizes
    let directories = optional + 112                          // 16 x {VirtualAddress, Size}
    image.put32(exportRVA, at: directories + 0 * 8)           // [0] export
    image.put32(exportSize, at: directories + 0 * 8 + 4)
    image.put32(pdataRVA, at: directories + 3 * 8)            // [3] exception
    image.put32(pdataSize, at: directories + 3 * 8 + 4)
    image.put32(debugRVA, at: directories + 6 * 8)            // [6] debug
    image.put32(28 * UInt32(debugEntries), at: directories + 6 * 8 + 4)

    // Section headers follow the optional header. PointerToRawData/SizeOfRawData describe the
    // file layout the image would have on disk (file-aligned, packed after the headers), even
    // though `bytes` holds the mapped layout.
    var sectionHeader = optional + 0xF0
    var rawPointer = sizeOfHeaders
    for (section, rawSize) in zip(sections, rawSizes) {
        image.putASCII(section.name, at: sectionHeader)       // Name: 8 bytes, NUL padded
        image.put32(section.size, at: sectionHeader + 8)      // VirtualSize
        image.put32(section.rva, at: sectionHeader + 12)      // VirtualAddress
        image.put32(rawSize, at: sectionHeader + 16)          // SizeOfRawData
        image.put32(rawPointer, at: sectionHeader + 20)       // PointerToRawData
        image.put32(section.characteristics, at: sectionHeader + 36)
        rawPointer += rawSize
        sectionHeader += 40
    }
    precondition(UInt32(sectionHeader) <= sizeOfHeaders)

    image.put8(0, at: Int(sizeOfImage) - 1)                   // zero-fill up to the end of the last page
    return ForgedImage(bytes: image.bytes, sizeOfImage: sizeOfImage, timeDateStamp: timeDateStamp,
                       checkSum: checkSum, exceptionTableRVA: pdataRVA, exceptionTableSize: pdataSize,
                       functions: ranges, entryPointRVA: ranges[functions[0].name]!.lowerBound)
}

// MARK: - Prolog encoding

/// A prolog as machine code plus the unwind codes that describe it.
struct EncodedProlog {
    var code: [UInt8] = []
    /// UNWIND_CODE slots in the order they are stored: last instruction first.
    var slots: [UInt16] = []
    var frameRegister: UInt8 = 0
    var frameOffset: UInt8 = 0
}

/// Encodes each step as a real instruction and its unwind code(s).
///
/// An UNWIND_CODE slot is 16 bits: CodeOffset (the prolog offset just past the instruction) in
/// the low byte, UnwindOp in bits 8-11 and OpInfo in bits 12-15. Some ops take one or two more
/// slots for an operand (a 32-bit operand is stored low half first). The unwinder undoes the
/// prolog backwards, so the codes are stored in reverse execution order; an instruction's
/// extra slots still follow its own slot.
func encodeProlog(_ steps: [PrologStep]) -> EncodedProlog {
    var prolog = EncodedProlog()
    var groups: [[UInt16]] = []
    for step in steps {
        let (code, op, info, operands) = encodeStep(step)
        prolog.code += code
        precondition(prolog.code.count <= 0xFF, "a prolog is at most 255 bytes")
        groups.append([UInt16(prolog.code.count) | UInt16(op) << 8 | UInt16(info) << 12] + operands)
        if case .setFramePointer(let register, let offset) = step {
            precondition(prolog.frameRegister == 0, "only one frame pointer per function")
            prolog.frameRegister = register
            prolog.frameOffset = offset
        }
    }
    prolog.slots = groups.reversed().flatMap { $0 }
    return prolog
}

/// Registers are numbered as in the ModRM encoding: RAX 0, RCX 1, RDX 2, RBX 3, RSP 4, RBP 5,
/// RSI 6, RDI 7, R8-R15 8-15 (and XMM0-XMM15 likewise). Numbers 8-15 need a REX prefix bit.
private func encodeStep(_ step: PrologStep) -> (code: [UInt8], op: UInt8, info: UInt8, operands: [UInt16]) {
    switch step {
    case .pushNonvolatile(let register):
        precondition(register < 16)
        return (pushPop(0x50, register), 0, register, [])

    case .allocate(let bytes):
        precondition(bytes > 0 && bytes % 8 == 0, "allocations are non-zero multiples of 8")
        // sub rsp, imm8 (48 83 EC ib) when the size fits a signed byte, else imm32 (48 81 EC id).
        let code: [UInt8] = bytes <= 0x7F ? [0x48, 0x83, 0xEC, UInt8(bytes)] : [0x48, 0x81, 0xEC] + le32(bytes)
        // ALLOC_SMALL covers 8...128 with OpInfo = size/8 - 1. ALLOC_LARGE with OpInfo 0 stores
        // size/8 in one slot (up to 512K - 8); OpInfo 1 stores the size unscaled in two slots.
        if bytes <= 128 { return (code, 2, UInt8(bytes / 8 - 1), []) }
        if bytes / 8 <= 0xFFFF { return (code, 1, 0, [UInt16(bytes / 8)]) }
        return (code, 1, 1, split32(bytes))

    case .setFramePointer(let register, let offset):
        precondition(register < 16 && register != 0 && register != 4 && offset < 16,
                     "frame register is not RAX (0 means 'none') or RSP; offset is 0...15")
        // lea reg, [rsp + 16*offset]. The op's OpInfo is unused: register and scaled offset
        // are in UNWIND_INFO byte 3, so a function can establish one frame pointer at most.
        return (rex(register, w: true) + [0x8D] + rspOperand(register, UInt32(offset) * 16), 3, 0, [])

    case .saveNonvolatile(let register, let offset):
        precondition(register < 16 && offset % 8 == 0, "save offsets are multiples of 8")
        // mov [rsp + offset], reg (48/4C 89 /r).
        let code = rex(register, w: true) + [0x89] + rspOperand(register, offset)
        if offset / 8 <= 0xFFFF { return (code, 4, register, [UInt16(offset / 8)]) }
        return (code, 5, register, split32(offset))

    case .saveXMM128(let register, let offset):
        precondition(register < 16 && offset % 16 == 0, "xmm save offsets are multiples of 16")
        // movaps [rsp + offset], xmm (0F 29 /r; a 44 prefix for XMM8-XMM15). Ops 6 and 7 were
        // the 64-bit XMM saves in early drafts; 6 is now UWOP_EPILOG (version 2 only).
        // Only the short form is scaled by 16: the far form holds the byte offset itself, as
        // Microsoft documents it and llvm-readobj decodes it (binutils' objdump and some older
        // unwinders scale it by 16 as well, so a parser may meet both readings in the wild).
        let code = rex(register, w: false) + [0x0F, 0x29] + rspOperand(register, offset)
        if offset / 16 <= 0xFFFF { return (code, 8, register, [UInt16(offset / 16)]) }
        return (code, 9, register, split32(offset))

    case .pushMachineFrame(let errorCode):
        return ([], 10, errorCode ? 1 : 0, [])
    }
}

/// `push r` (0x50+r) or `pop r` (0x58+r): the register lives in the opcode's low three bits,
/// so R8-R15 take a REX.B prefix (0x41): `push r12` is 41 54.
private func pushPop(_ opcode: UInt8, _ register: UInt8) -> [UInt8] {
    (register >= 8 ? [0x41] : []) + [opcode + (register & 7)]
}

/// REX prefix for an instruction with `register` in ModRM.reg: W (0x08) for a 64-bit operand,
/// R (0x04) for registers 8-15. None at all when neither is needed.
private func rex(_ register: UInt8, w: Bool) -> [UInt8] {
    let bits: UInt8 = (w ? 0x08 : 0) | (register >= 8 ? 0x04 : 0)
    return bits == 0 ? [] : [0x40 | bits]
}

/// ModRM + SIB + displacement for `[rsp + displacement]` with `register` in ModRM.reg.
/// RSP as a base always needs a SIB byte (0x24); disp8 when it fits a signed byte, else disp32.
private func rspOperand(_ register: UInt8, _ displacement: UInt32) -> [UInt8] {
    if displacement <= 0x7F { return [0x44 | (register & 7) << 3, 0x24, UInt8(displacement)] }
    return [0x84 | (register & 7) << 3, 0x24] + le32(displacement)
}

// MARK: - Function bodies

/// Prolog, then nop filler, then an epilog that undoes the whole frame (add rsp, pops, ret).
/// x64 epilogs have a fixed shape because the unwinder recognises them by reading code at the
/// faulting RIP: a RIP inside one must be unwound by simulating the remaining instructions,
/// so a forged `ret` without its `add`/`pop`s would mislead an unwinder that implements this.
/// A machine-frame (trap) stub returns with iretq instead. If the epilog does not fit after
/// the prolog, only a trailing `ret` (or nothing) is written.
private func functionBody(_ function: ForgedFunction, prolog: [UInt8], byName: [String: ForgedFunction]) -> [UInt8] {
    // A chained fragment's epilog also tears down its parents' frames.
    var steps = function.prolog
    var parent = function.chainedTo
    var seen: Set<String> = [function.name]
    while let name = parent, let next = byName[name] {
        precondition(seen.insert(name).inserted, "chain cycle through \(name)")
        steps = next.prolog + steps
        parent = next.chainedTo
    }

    // Undo the steps last-first: adjacent allocations fold into one `add rsp`, each push
    // becomes a pop. For the usual "pushes, then one sub rsp" prolog this is exactly the
    // canonical epilog shape.
    var epilog: [UInt8] = []
    var allocation: UInt32 = 0
    var machineFrame: Bool?
    for step in steps.reversed() {
        switch step {
        case .allocate(let bytes): allocation += bytes; continue
        case .pushNonvolatile(let register): epilog += addRSP(allocation) + pushPop(0x58, register)
        case .pushMachineFrame(let errorCode): epilog += addRSP(allocation); machineFrame = errorCode
        case .setFramePointer, .saveNonvolatile, .saveXMM128: continue
        }
        allocation = 0
    }
    epilog += addRSP(allocation)
    switch machineFrame {
    case nil: epilog += [0xC3]                                   // ret
    case false?: epilog += [0x48, 0xCF]                          // iretq
    case true?: epilog += addRSP(8) + [0x48, 0xCF]               // drop the error code; iretq
    }

    let size = Int(function.size)
    var body = prolog + [UInt8](repeating: 0x90, count: size - prolog.count)   // nops
    if prolog.count + epilog.count <= size {
        body.replaceSubrange(size - epilog.count..<size, with: epilog)
    } else if prolog.count < size {
        body[size - 1] = 0xC3
    }
    return body
}

// MARK: - Small helpers

/// `add rsp, n` (48 83 C4 ib, or 48 81 C4 id when n does not fit a signed byte); nothing for 0.
private func addRSP(_ bytes: UInt32) -> [UInt8] {
    if bytes == 0 { return [] }
    return bytes <= 0x7F ? [0x48, 0x83, 0xC4, UInt8(bytes)] : [0x48, 0x81, 0xC4] + le32(bytes)
}

private func alignUp(_ value: UInt32, _ alignment: UInt32) -> UInt32 { (value + alignment - 1) / alignment * alignment }

private func le32(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

/// A 32-bit unwind operand as two slots, low half first.
private func split32(_ value: UInt32) -> [UInt16] { [UInt16(truncatingIfNeeded: value), UInt16(value >> 16)] }

/// Writes `text` and its NUL terminator; returns the RVA just past them.
private func putCString(_ text: String, in image: inout ByteBuffer, at rva: UInt32) -> UInt32 {
    image.putASCII(text, at: Int(rva))
    image.put8(0, at: Int(rva) + text.utf8.count)
    return rva + UInt32(text.utf8.count) + 1
}
