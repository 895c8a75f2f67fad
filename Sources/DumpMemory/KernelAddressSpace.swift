import DumpFormat

/// Reads of kernel virtual memory, whatever the dump keeps: page tables over physical memory
/// (full, bitmap and range dumps) or captured byte ranges (minidumps).
///
/// Implementations are classes with caches and are not thread-safe: give each thread its own
/// (they are cheap to make; the indexes they stand on are shared).
public protocol KernelAddressSpace: AnyObject {
    /// Copies `count` bytes at `va`, crossing pages as needed; throws `MemoryError`.
    func read(_ va: UInt64, count: Int) throws -> [UInt8]
    func u64(_ va: UInt64) throws -> UInt64
}

extension KernelAddressSpace {
    public func u8(_ va: UInt64) throws -> UInt8 { try read(va, count: 1)[0] }
    public func u16(_ va: UInt64) throws -> UInt16 { UInt16(try littleEndian(va, 2)) }
    public func u32(_ va: UInt64) throws -> UInt32 { UInt32(try littleEndian(va, 4)) }

    func littleEndian(_ va: UInt64, _ width: Int) throws -> UInt64 {
        try read(va, count: width).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// A UNICODE_STRING (Length u16, MaximumLength u16, Buffer u64) at `va`, decoded.
    public func unicodeString(_ va: UInt64, maximumLength: Int = 0x1000) throws -> String {
        // One read of the whole structure: a Buffer field past the top of the address space
        // fails there instead of wrapping round to address 0.
        let header = try read(va, count: 16)
        let length = Int(header[0]) | Int(header[1]) << 8
        let buffer = header[8..<16].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard length > 0 else { return "" }
        let bytes = try read(buffer, count: min(length, maximumLength) & ~1)
        return decodeUTF16(bytes, units: bytes.count / 2)
    }
}

/// True when `va` is canonical for 4-level paging: bits 63..48 are copies of bit 47.
@inlinable public func isCanonical(_ va: UInt64) -> Bool {
    let top = va >> 47
    return top == 0 || top == 0x1FFFF
}

/// True when `va` is canonical for 5-level paging (LA57): bits 63..57 are copies of bit 56.
public func isCanonicalLA57(_ va: UInt64) -> Bool {
    let top = va >> 56
    return top == 0 || top == 0xFF
}
