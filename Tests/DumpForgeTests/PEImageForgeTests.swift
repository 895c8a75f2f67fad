import Testing
@testable import DumpForge

// These tests read the forged image back with their own little-endian loads and their own
// notion of every PE offset, so a slip in the forge shows up as a disagreement here.

/// Little-endian loads over the forged bytes (deliberately not the forge's ByteBuffer).
private struct LE {
    let bytes: [UInt8]
    func u8(_ at: Int) -> UInt8 { bytes[at] }
    func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
    func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
    func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }
    func u8s(_ at: Int, _ count: Int) -> [UInt8] { Array(bytes[at..<at + count]) }
    func cString(_ at: Int) -> String {
        var end = at
        while bytes[end] != 0 { end += 1 }
        return String(decoding: bytes[at..<end], as: UTF8.self)
    }
}

/// Register numbers as the unwind codes use them.
private let rbx: UInt8 = 3, rbp: UInt8 = 5, r12: UInt8 = 12, r14: UInt8 = 14

private let sample: [ForgedFunction] = [
    ForgedFunction(name: "NtWriteFile", size: 0x60,
                   prolog: [.pushNonvolatile(register: rbp), .pushNonvolatile(register: rbx), .allocate(bytes: 0x28)]),
    ForgedFunction(name: "KiSystemServiceHelper", exported: false, size: 0x30, prolog: [.allocate(bytes: 0x1000)]),
    ForgedFunction(name: "ExAllocatePool", size: 0x25, prolog: [.allocate(bytes: 0x10_0000)]),
    ForgedFunction(name: "NtWriteFile$fin$0", exported: false, size: 0x20,
                   prolog: [.pushNonvolatile(register: r12)], chainedTo: "NtWriteFile"),
    ForgedFunction(name: "KiPageFault", size: 0x80,
                   prolog: [.pushMachineFrame(errorCode: true), .pushNonvolatile(register: rbp),
                            .allocate(bytes: 0x158), .setFramePointer(register: rbp, offset: 8)]),
    ForgedFunction(name: "KeBugCheckEx", size: 0x50,
                   prolog: [.allocate(bytes: 0x48), .saveNonvolatile(register: rbx, offset: 0x50),
                            .saveXMM128(register: 6, offset: 0x30), .saveNonvolatile(register: r14, offset: 0x80)]),
    ForgedFunction(name: "KiInterruptStub", exported: false, size: 0x10, prolog: [.pushMachineFrame(errorCode: false)]),
    ForgedFunction(name: "memcpy", size: 0x18),
    ForgedFunction(name: "_guard_check", size: 0x08),
    ForgedFunction(name: "Aardvark", size: 1),
]

private func forgeSample() -> ForgedImage {
    forgePEImage(name: "ntoskrnl.exe", timeDateStamp: 0x5A1B_2C3D, checkSum: 0x00A1_B2C3, functions: sample)
}

private struct Section: Equatable {
    var name: String, virtualSize: UInt32, virtualAddress: UInt32, rawSize: UInt32, rawPointer: UInt32, characteristics: UInt32
}

private func sections(_ image: ForgedImage) -> [Section] {
    let le = LE(bytes: image.bytes)
    let pe = Int(le.u32(0x3C))
    let count = Int(le.u16(pe + 6))
    let table = pe + 24 + Int(le.u16(pe + 20))
    return (0..<count).map { index in
        let at = table + 40 * index
        return Section(name: String(decoding: le.u8s(at, 8).filter { $0 != 0 }, as: UTF8.self),
                       virtualSize: le.u32(at + 8), virtualAddress: le.u32(at + 12),
                       rawSize: le.u32(at + 16), rawPointer: le.u32(at + 20), characteristics: le.u32(at + 36))
    }
}

private struct RuntimeFunction: Equatable { var begin, end, unwind: UInt32 }

private func pdata(_ image: ForgedImage) -> [RuntimeFunction] {
    let le = LE(bytes: image.bytes)
    return stride(from: Int(image.exceptionTableRVA), to: Int(image.exceptionTableRVA + image.exceptionTableSize), by: 12).map {
        RuntimeFunction(begin: le.u32($0), end: le.u32($0 + 4), unwind: le.u32($0 + 8))
    }
}

private struct UnwindInfo {
    var version, flags, sizeOfProlog, countOfCodes, frameRegister, frameOffset: UInt8
    var slots: [UInt16]
    var chained: RuntimeFunction?
}

private func unwindInfo(_ image: ForgedImage, _ function: String) -> UnwindInfo {
    let le = LE(bytes: image.bytes)
    let begin = image.functions[function]!.lowerBound
    let at = Int(pdata(image).first { $0.begin == begin }!.unwind)
    let count = Int(le.u8(at + 2))
    var info = UnwindInfo(version: le.u8(at) & 7, flags: le.u8(at) >> 3, sizeOfProlog: le.u8(at + 1),
                          countOfCodes: le.u8(at + 2), frameRegister: le.u8(at + 3) & 0xF, frameOffset: le.u8(at + 3) >> 4,
                          slots: (0..<count).map { le.u16(at + 4 + 2 * $0) })
    if info.flags & 4 != 0 {
        let tail = at + 4 + 2 * (count + count % 2)
        info.chained = RuntimeFunction(begin: le.u32(tail), end: le.u32(tail + 4), unwind: le.u32(tail + 8))
    }
    return info
}

/// Builds an UNWIND_CODE slot the way the x64 ABI documents it.
private func code(offset: UInt8, op: UInt8, info: UInt8) -> UInt16 {
    UInt16(offset) | UInt16(op) << 8 | UInt16(info) << 12
}

/// Resolves an export name the way the loader does: binary search over the sorted name
/// pointer table, then the ordinal table, then the address table.
private func resolveExport(_ image: ForgedImage, _ name: String) -> UInt32? {
    let le = LE(bytes: image.bytes)
    let directory = Int(le.u32(Int(le.u32(0x3C)) + 24 + 112))
    let names = Int(le.u32(directory + 32)), ordinals = Int(le.u32(directory + 36)), addresses = Int(le.u32(directory + 28))
    var low = 0, high = Int(le.u32(directory + 24)) - 1
    while low <= high {
        let middle = (low + high) / 2
        let candidate = Array(le.cString(Int(le.u32(names + 4 * middle))).utf8)
        if candidate == Array(name.utf8) { return le.u32(addresses + 4 * Int(le.u16(ordinals + 2 * middle))) }
        if candidate.lexicographicallyPrecedes(name.utf8) { low = middle + 1 } else { high = middle - 1 }
    }
    return nil
}

@Test func headersCarrySignaturesAndIdentity() {
    let image = forgeSample()
    let le = LE(bytes: image.bytes)
    #expect(le.u8s(0, 2) == Array("MZ".utf8))
    let pe = Int(le.u32(0x3C))
    #expect(pe >= 0x40 && pe % 8 == 0)
    #expect(le.u8s(pe, 4) == [0x50, 0x45, 0, 0])
    #expect(le.u16(pe + 4) == 0x8664)
    #expect(le.u16(pe + 6) == 3)
    #expect(le.u32(pe + 8) == 0x5A1B_2C3D)
    #expect(le.u16(pe + 20) == 0xF0)
    #expect(le.u16(pe + 22) == 0x22)

    let optional = pe + 24
    #expect(le.u16(optional) == 0x20B)
    #expect(le.u32(optional + 16) == image.entryPointRVA)
    #expect(image.entryPointRVA == image.functions["NtWriteFile"]!.lowerBound)
    #expect(le.u64(optional + 24) == 0xFFFF_F800_0000_0000)
    #expect(le.u32(optional + 32) == 0x1000)
    #expect(le.u32(optional + 36) == 0x200)
    #expect(le.u32(optional + 56) == image.sizeOfImage)
    #expect(image.sizeOfImage % 0x1000 == 0)
    #expect(image.bytes.count == Int(image.sizeOfImage))
    #expect(le.u32(optional + 60) % 0x200 == 0)
    #expect(le.u32(optional + 64) == 0x00A1_B2C3)
    #expect(image.checkSum == 0x00A1_B2C3 && image.timeDateStamp == 0x5A1B_2C3D)
    #expect(le.u16(optional + 68) == 1)
    #expect(le.u32(optional + 108) == 16)
    #expect(le.u32(optional + 112 + 3 * 8) == image.exceptionTableRVA)
    #expect(le.u32(optional + 112 + 3 * 8 + 4) == image.exceptionTableSize)
    #expect(image.exceptionTableSize == 12 * UInt32(sample.count))

    let other = forgePEImage(name: "hal.dll", timeDateStamp: 1, checkSum: 2, functions: [ForgedFunction(name: "HalStart", size: 4)],
                             preferredBase: 0xFFFF_F806_1234_0000)
    #expect(LE(bytes: other.bytes).u64(Int(LE(bytes: other.bytes).u32(0x3C)) + 24 + 24) == 0xFFFF_F806_1234_0000)
}

@Test func sectionTableDescribesTheLayout() {
    let image = forgeSample()
    let table = sections(image)
    #expect(table.map(\.name) == [".text", ".rdata", ".pdata"])
    #expect(table.map(\.characteristics) == [0x6000_0020, 0x4000_0040, 0x4000_0040])
    let sizeOfHeaders = LE(bytes: image.bytes).u32(Int(LE(bytes: image.bytes).u32(0x3C)) + 24 + 60)
    var rawPointer = sizeOfHeaders
    var previousEnd: UInt32 = 0x1000
    for section in table {
        #expect(section.virtualAddress % 0x1000 == 0)
        #expect(section.virtualAddress >= previousEnd)
        #expect(section.rawSize % 0x200 == 0 && section.rawSize >= section.virtualSize)
        #expect(section.rawPointer == rawPointer)
        rawPointer += section.rawSize
        previousEnd = section.virtualAddress + section.virtualSize
    }
    #expect(previousEnd <= image.sizeOfImage)

    let text = table[0]
    for range in image.functions.values {
        #expect(range.lowerBound >= text.virtualAddress && range.upperBound <= text.virtualAddress + text.virtualSize)
        #expect(range.lowerBound % 16 == 0)
    }
    #expect(table[2].virtualAddress == image.exceptionTableRVA && table[2].virtualSize == image.exceptionTableSize)
}

@Test func exportNamesResolveThroughTheOrdinalTable() {
    let image = forgeSample()
    let le = LE(bytes: image.bytes)
    let optional = Int(le.u32(0x3C)) + 24
    let directory = Int(le.u32(optional + 112))
    let directorySize = Int(le.u32(optional + 116))
    #expect(sections(image)[1].virtualAddress == UInt32(directory))
    #expect(le.cString(Int(le.u32(directory + 12))) == "ntoskrnl.exe")
    #expect(le.u32(directory + 16) == 1)

    let exported = sample.filter(\.exported)
    #expect(le.u32(directory + 20) == UInt32(exported.count))
    #expect(le.u32(directory + 24) == UInt32(exported.count))

    // Names are sorted by raw bytes: capitals, then '_', then lower case.
    let names = (0..<exported.count).map { le.cString(Int(le.u32(Int(le.u32(directory + 32)) + 4 * $0))) }
    #expect(names == ["Aardvark", "ExAllocatePool", "KeBugCheckEx", "KiPageFault", "NtWriteFile", "_guard_check", "memcpy"])

    for function in sample {
        let rva = resolveExport(image, function.name)
        #expect(rva == (function.exported ? image.functions[function.name]!.lowerBound : nil), "\(function.name)")
    }
    // Every address-table entry is a real function, outside the export data (so no forwarders).
    let addresses = Int(le.u32(directory + 28))
    for index in 0..<exported.count {
        let rva = le.u32(addresses + 4 * index)
        #expect(image.functions.values.contains { $0.lowerBound == rva })
        #expect(!(directory..<directory + directorySize).contains(Int(rva)))
    }
}

@Test func pdataIsSortedAndMatchesTheFunctions() {
    let image = forgeSample()
    let entries = pdata(image)
    #expect(entries.count == sample.count)
    #expect(entries.map(\.begin) == entries.map(\.begin).sorted())
    #expect(Set(entries.map { $0.begin..<$0.end }) == Set(image.functions.values))
    let rdata = sections(image)[1]
    for entry in entries {
        #expect(entry.unwind % 4 == 0)
        #expect(entry.unwind >= rdata.virtualAddress && entry.unwind < rdata.virtualAddress + rdata.virtualSize)
    }
}

@Test func pushesAndSmallAllocationUnwindInReverse() {
    let image = forgeSample()
    let info = unwindInfo(image, "NtWriteFile")
    #expect(info.version == 1 && info.flags == 0)
    #expect(info.sizeOfProlog == 6)              // push rbp (1) + push rbx (1) + sub rsp, 0x28 (4)
    #expect(info.countOfCodes == 3)
    #expect(info.frameRegister == 0 && info.frameOffset == 0)
    let expected: [UInt16] = [code(offset: 6, op: 2, info: 0x28 / 8 - 1), code(offset: 2, op: 0, info: rbx), code(offset: 1, op: 0, info: rbp)]
    #expect(info.slots == expected)

    // The code itself: the prolog up front, the matching epilog at the end, int3 padding after.
    let le = LE(bytes: image.bytes)
    let range = image.functions["NtWriteFile"]!
    #expect(le.u8s(Int(range.lowerBound), 6) == [0x55, 0x53, 0x48, 0x83, 0xEC, 0x28])
    #expect(le.u8s(Int(range.upperBound) - 7, 7) == [0x48, 0x83, 0xC4, 0x28, 0x5B, 0x5D, 0xC3])
    let pool = image.functions["ExAllocatePool"]!
    let next = image.functions.values.map(\.lowerBound).filter { $0 > pool.lowerBound }.min()!
    #expect(le.u8s(Int(pool.upperBound), Int(next - pool.upperBound)).allSatisfy { $0 == 0xCC })
    #expect(next > pool.upperBound)
}

@Test func largeAllocationsUseBothForms() {
    let image = forgeSample()
    let scaled = unwindInfo(image, "KiSystemServiceHelper")
    #expect(scaled.sizeOfProlog == 7)            // sub rsp, imm32
    #expect(scaled.countOfCodes == 2)
    #expect(scaled.slots == [code(offset: 7, op: 1, info: 0), 0x1000 / 8])
    let unscaled = unwindInfo(image, "ExAllocatePool")
    #expect(unscaled.countOfCodes == 3)
    #expect(unscaled.slots == [code(offset: 7, op: 1, info: 1), 0x0000, 0x0010])

    // The edges: 128 is the largest small allocation, 512K - 8 the largest scaled one.
    let edges = forgePEImage(name: "edges.sys", timeDateStamp: 0, checkSum: 0, functions: [
        ForgedFunction(name: "A", size: 16, prolog: [.allocate(bytes: 128)]),
        ForgedFunction(name: "B", size: 16, prolog: [.allocate(bytes: 136)]),
        ForgedFunction(name: "C", size: 16, prolog: [.allocate(bytes: 0x7_FFF8)]),
        ForgedFunction(name: "D", size: 16, prolog: [.allocate(bytes: 0x8_0000)]),
        ForgedFunction(name: "E", size: 16, prolog: [.allocate(bytes: 0x78)]),
    ])
    #expect(unwindInfo(edges, "A").slots == [code(offset: 7, op: 2, info: 15)])     // 0x80 needs imm32
    #expect(unwindInfo(edges, "B").slots == [code(offset: 7, op: 1, info: 0), 17])
    #expect(unwindInfo(edges, "C").slots == [code(offset: 7, op: 1, info: 0), 0xFFFF])
    #expect(unwindInfo(edges, "D").slots == [code(offset: 7, op: 1, info: 1), 0x0000, 0x0008])
    #expect(unwindInfo(edges, "E").slots == [code(offset: 4, op: 2, info: 14)])     // imm8 fits
}

@Test func savesAndFramePointer() {
    let image = forgeSample()
    let info = unwindInfo(image, "KeBugCheckEx")
    #expect(info.sizeOfProlog == 22)
    #expect(info.countOfCodes == 7)
    let expected: [UInt16] = [
        code(offset: 22, op: 4, info: r14), 0x80 / 8,
        code(offset: 14, op: 8, info: 6), 0x30 / 16,
        code(offset: 9, op: 4, info: rbx), 0x50 / 8,
        code(offset: 4, op: 2, info: 0x48 / 8 - 1),
    ]
    #expect(info.slots == expected)
    let start = Int(image.functions["KeBugCheckEx"]!.lowerBound)
    #expect(LE(bytes: image.bytes).u8s(start, 22) == [
        0x48, 0x83, 0xEC, 0x48,                          // sub rsp, 0x48
        0x48, 0x89, 0x5C, 0x24, 0x50,                    // mov [rsp+0x50], rbx
        0x0F, 0x29, 0x74, 0x24, 0x30,                    // movaps [rsp+0x30], xmm6
        0x4C, 0x89, 0xB4, 0x24, 0x80, 0x00, 0x00, 0x00,  // mov [rsp+0x80], r14
    ])

    let far = forgePEImage(name: "far.sys", timeDateStamp: 0, checkSum: 0, functions: [
        ForgedFunction(name: "Far", size: 64, prolog: [.allocate(bytes: 0x20_0000),
                                                      .saveNonvolatile(register: rbx, offset: 0x8_0000),
                                                      .saveXMM128(register: 8, offset: 0x10_0000)]),
    ])
    let farInfo = unwindInfo(far, "Far")
    #expect(farInfo.sizeOfProlog == 7 + 8 + 9)
    let expectedFar: [UInt16] = [
        code(offset: 24, op: 9, info: 8), 0x0000, 0x0010,
        code(offset: 15, op: 5, info: rbx), 0x0000, 0x0008,
        code(offset: 7, op: 1, info: 1), 0x0000, 0x0020,
    ]
    #expect(farInfo.slots == expectedFar)
}

@Test func chainedFragmentEndsWithParentRuntimeFunction() {
    let image = forgeSample()
    let info = unwindInfo(image, "NtWriteFile$fin$0")
    #expect(info.version == 1 && info.flags == 4)
    #expect(info.slots == [code(offset: 2, op: 0, info: r12)])
    let fragment = image.functions["NtWriteFile$fin$0"]!
    let le = LE(bytes: image.bytes)
    #expect(le.u8s(Int(fragment.lowerBound), 2) == [0x41, 0x54])                  // push r12 (REX.B)
    // Its epilog tears down the parent's frame too, last step first:
    // pop r12; add rsp, 0x28; pop rbx; pop rbp; ret.
    #expect(le.u8s(Int(fragment.upperBound) - 9, 9) == [0x41, 0x5C, 0x48, 0x83, 0xC4, 0x28, 0x5B, 0x5D, 0xC3])
    let parent = image.functions["NtWriteFile"]!
    let parentEntry = pdata(image).first { $0.begin == parent.lowerBound }!
    #expect(info.chained == parentEntry)
    #expect(info.chained?.end == parent.upperBound)
    #expect(unwindInfo(image, "NtWriteFile").chained == nil)
}

@Test func machineFrameDummyProlog() {
    let image = forgeSample()
    let trap = unwindInfo(image, "KiPageFault")
    // push rbp (1), sub rsp, 0x158 (7), lea rbp, [rsp+0x80] (8: disp32 as 0x80 > 127)
    #expect(trap.sizeOfProlog == 16)
    #expect(trap.frameRegister == rbp && trap.frameOffset == 8)
    let expectedTrap: [UInt16] = [
        code(offset: 16, op: 3, info: 0),
        code(offset: 8, op: 1, info: 0), 0x158 / 8,
        code(offset: 1, op: 0, info: rbp),
        code(offset: 0, op: 10, info: 1),
    ]
    #expect(trap.slots == expectedTrap)
    #expect(unwindInfo(image, "KiInterruptStub").slots == [code(offset: 0, op: 10, info: 0)])
    #expect(unwindInfo(image, "KiInterruptStub").sizeOfProlog == 0)
    let range = image.functions["KiPageFault"]!
    #expect(LE(bytes: image.bytes).u8s(Int(range.upperBound) - 2, 2) == [0x48, 0xCF])   // iretq
}

@Test func frameSizes() {
    let sizes = Dictionary(uniqueKeysWithValues: sample.map { ($0.name, $0.frameSize) })
    let expected: [String: UInt32] = [
        "NtWriteFile": 8 + 8 + 0x28,
        "KiSystemServiceHelper": 0x1000,
        "ExAllocatePool": 0x10_0000,
        "NtWriteFile$fin$0": 8,                  // the fragment's own push; the parent's frame comes on top
        "KiPageFault": 48 + 8 + 0x158,           // machine frame with error code, push rbp, sub rsp
        "KeBugCheckEx": 0x48,                    // saves move nothing
        "KiInterruptStub": 40,                   // machine frame without error code
        "memcpy": 0,
        "_guard_check": 0,
        "Aardvark": 0,
    ]
    #expect(sizes == expected)
}
