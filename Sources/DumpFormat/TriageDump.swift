/// TRIAGE_DUMP64 (0x80 bytes at 0x2000): the table of contents of a kernel minidump.
///
/// Every `...Offset` is an absolute file offset. A minidump holds no physical memory: only the
/// crashing thread's stack window, copies of its KPRCB/EPROCESS/ETHREAD, the driver list, and
/// "data blocks" (byte ranges of kernel virtual memory such as the page around the faulting RIP).
public struct TriageDump: Sendable {
    public static let offset: UInt64 = 0x2000

    public var servicePackBuild: UInt32
    public var sizeOfDump: UInt32
    public var validOffset: UInt32
    public var contextOffset: UInt32
    public var exceptionOffset: UInt32
    public var mmOffset: UInt32
    public var unloadedDriversOffset: UInt32
    public var prcbOffset: UInt32
    public var processOffset: UInt32
    public var threadOffset: UInt32
    public var callStackOffset: UInt32
    public var sizeOfCallStack: UInt32
    public var driverListOffset: UInt32
    public var driverCount: UInt32
    public var stringPoolOffset: UInt32
    public var stringPoolSize: UInt32
    public var brokenDriverOffset: UInt32
    public var triageOptions: UInt32
    /// VA of the first stack byte stored at `callStackOffset` (RSP inside KeBugCheckEx).
    public var topOfStack: UInt64
    public var dataPageAddress: UInt64
    public var dataPageOffset: UInt32
    public var dataPageSize: UInt32
    public var debuggerDataOffset: UInt32
    public var debuggerDataSize: UInt32
    public var dataBlocksOffset: UInt32
    public var dataBlocksCount: UInt32
    /// Whether the 4 bytes at `validOffset` read "TRGD", the writer's end marker.
    public var hasEndMarker: Bool

    /// Driver list entries are 0x90 bytes in every dump seen (§3.3 of the format notes).
    public static let driverEntrySize: UInt64 = 0x90

    /// The string pool follows the driver list directly, so the list's length divided by the
    /// count gives the entry size. Whether that is the 0x90 this reader assumes (one
    /// unconfirmed report claims other sizes on some builds).
    public var driverEntrySizeIsExpected: Bool {
        guard driverCount > 0, stringPoolOffset > driverListOffset else { return true }
        return UInt64(stringPoolOffset - driverListOffset) / UInt64(driverCount) == Self.driverEntrySize
    }

    public init(parsing source: ByteSource) throws {
        let t = try source.record(at: Self.offset, length: 0x80, "TRIAGE_DUMP64 at 0x2000")
        servicePackBuild = try t.u32(0x00)
        sizeOfDump = try t.u32(0x04)
        validOffset = try t.u32(0x08)
        contextOffset = try t.u32(0x0C)
        exceptionOffset = try t.u32(0x10)
        mmOffset = try t.u32(0x14)
        unloadedDriversOffset = try t.u32(0x18)
        prcbOffset = try t.u32(0x1C)
        processOffset = try t.u32(0x20)
        threadOffset = try t.u32(0x24)
        callStackOffset = try t.u32(0x28)
        sizeOfCallStack = try t.u32(0x2C)
        driverListOffset = try t.u32(0x30)
        driverCount = try t.u32(0x34)
        stringPoolOffset = try t.u32(0x38)
        stringPoolSize = try t.u32(0x3C)
        brokenDriverOffset = try t.u32(0x40)
        triageOptions = try t.u32(0x44)
        topOfStack = try t.u64(0x48)
        dataPageAddress = try t.u64(0x60)
        dataPageOffset = try t.u32(0x68)
        dataPageSize = try t.u32(0x6C)
        debuggerDataOffset = try t.u32(0x70)
        debuggerDataSize = try t.u32(0x74)
        dataBlocksOffset = try t.u32(0x78)
        dataBlocksCount = try t.u32(0x7C)
        hasEndMarker = (try? source.u32(at: UInt64(validOffset))) == 0x4447_5254  // "TRGD"
    }
}

/// One entry of the minidump's driver list (DUMP_DRIVER_ENTRY64).
///
/// The writer synthesises a KLDR_DATA_TABLE_ENTRY-shaped record at +8 but fills only DllBase,
/// SizeOfImage, CheckSum and TimeDateStamp; note TimeDateStamp sits at record+0x80 here, not at
/// the live kernel's KLDR offset 0x9C.
public struct TriageDriver: Sendable, Equatable {
    /// Full path as stored, such as `\SystemRoot\system32\ntoskrnl.exe`; nil if unreadable.
    public var path: String?
    public var base: UInt64
    public var size: UInt32
    public var checkSum: UInt32
    public var timeDateStamp: UInt32

    /// The file name part of `path`.
    public var name: String? {
        path.map { String($0.split(separator: "\\", omittingEmptySubsequences: false).last ?? Substring($0)) }
    }
}

/// An unloaded driver remembered by the kernel (MmUnloadedDrivers), as the minidump copies it.
public struct TriageUnloadedDriver: Sendable, Equatable {
    /// Up to 12 characters: the writer truncates names to its inline buffer.
    public var name: String
    public var startAddress: UInt64
    public var endAddress: UInt64
}

/// TRIAGE_DATA_BLOCK: `size` bytes of kernel virtual memory at `address`, stored at `offset`.
public struct TriageDataBlock: Sendable, Equatable {
    public var address: UInt64
    public var offset: UInt32
    public var size: UInt32
}

extension TriageDump {
    /// The driver list. A driver whose name cannot be read, or does not lie in the string pool,
    /// keeps its other fields (`path` nil); a list that runs past the end of the file throws.
    public func drivers(in source: ByteSource) throws -> [TriageDriver] {
        let stride = Self.driverEntrySize
        let length = try Checked.multiply(UInt64(driverCount), stride, "driver list size")
        let list = try source.record(at: UInt64(driverListOffset), length: length, "the driver list (\(driverCount) entries)")
        let pool = UInt64(stringPoolOffset)..<UInt64(stringPoolOffset) + UInt64(stringPoolSize)
        // Entries that share a name share its decoded string, so a hostile list pointing every
        // entry at one long string costs one copy, not one per entry.
        var names: [UInt64: String] = [:]
        return try (0..<UInt64(driverCount)).map { index in
            let entry = index * stride
            let nameOffset = UInt64(try list.u32(entry))
            if names[nameOffset] == nil, pool.contains(nameOffset), let name = try? dumpString(in: source, at: nameOffset, within: pool) {
                names[nameOffset] = name
            }
            return TriageDriver(
                path: names[nameOffset],
                base: try list.u64(entry + 0x38),
                size: try list.u32(entry + 0x48),
                checkSum: try list.u32(entry + 0x80),
                timeDateStamp: try list.u32(entry + 0x88))
        }
    }

    /// The unloaded-driver list: a u32 count, then 0x38-byte entries.
    public func unloadedDrivers(in source: ByteSource) throws -> [TriageUnloadedDriver] {
        guard unloadedDriversOffset != 0 else { return [] }
        let start = UInt64(unloadedDriversOffset)
        let count = UInt64(try source.u32(at: start, "the unloaded driver count"))
        let length = try Checked.multiply(count, 0x38, "unloaded driver list size")
        let list = try source.record(at: start + 8, length: length, "the unloaded driver list (\(count) entries)")
        return try (0..<count).map { index in
            let entry = index * 0x38
            let units = min(Int(try list.u16(entry)) / 2, 12)
            let inline = try list.bytes(entry + 0x10, 24)
            return TriageUnloadedDriver(
                name: decodeUTF16(inline, units: units),
                startAddress: try list.u64(entry + 0x28),
                endAddress: try list.u64(entry + 0x30))
        }
    }

    /// The data block descriptors the file holds, and how many of the promised ones lie past its
    /// end (a cut-short or lying table still yields the entries that are there). The bytes each
    /// block points to are checked when the blocks are indexed.
    public func dataBlocks(in source: ByteSource) -> (blocks: [TriageDataBlock], missing: UInt32) {
        let start = UInt64(dataBlocksOffset)
        let fit = start <= source.count ? (source.count - start) / 16 : 0
        let count = min(UInt64(dataBlocksCount), fit)
        let blocks = (0..<count).compactMap { index -> TriageDataBlock? in
            let entry = start + 16 * index
            guard let address = try? source.u64(at: entry), let offset = try? source.u32(at: entry + 8),
                  let size = try? source.u32(at: entry + 12) else { return nil }
            return TriageDataBlock(address: address, offset: offset, size: size)
        }
        return (blocks, dataBlocksCount - UInt32(count))
    }
}

/// Reads a DUMP_STRING: u32 length in UTF-16 code units, then the characters and a NUL.
/// Driver paths are at most a few hundred characters; longer lengths mean a corrupt pool.
public func dumpString(in source: ByteSource, at offset: UInt64, within pool: Range<UInt64>? = nil) throws -> String {
    let units = UInt64(try source.u32(at: offset, "a DUMP_STRING length"))
    guard units <= 0x400 else {
        throw DumpError(.corrupt, "DUMP_STRING claims \(units) characters", offset: offset)
    }
    if let pool, offset + 4 + units * 2 > pool.upperBound {
        throw DumpError(.corrupt, "DUMP_STRING of \(units) characters runs past the string pool", offset: offset)
    }
    return decodeUTF16(try source.bytes(at: offset + 4, count: units * 2, "a DUMP_STRING"), units: Int(units))
}

/// Decodes up to `units` UTF-16LE code units, stopping at a NUL; invalid sequences become U+FFFD.
public func decodeUTF16(_ bytes: [UInt8], units: Int) -> String {
    var codeUnits: [UInt16] = []
    var index = 0
    while codeUnits.count < units, index + 1 < bytes.count {
        let unit = UInt16(bytes[index]) | UInt16(bytes[index + 1]) << 8
        if unit == 0 { break }
        codeUnits.append(unit)
        index += 2
    }
    return String(decoding: codeUnits, as: UTF16.self)
}
