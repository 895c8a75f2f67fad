/// A bounds-checked little-endian cursor over bytes read from a symbol file: every read past
/// the end throws `SymbolFileError(.truncated)` naming what was being read and where.
struct ByteReader {
    let bytes: [UInt8]
    /// The bytes' name in messages ("the DBI stream").
    let name: String
    var offset: Int

    init(_ bytes: [UInt8], name: String, offset: Int = 0) {
        self.bytes = bytes
        self.name = name
        self.offset = offset
    }

    var remaining: Int { max(0, bytes.count - offset) }
    var atEnd: Bool { offset >= bytes.count }

    func check(_ count: Int, _ what: @autoclosure () -> String) throws {
        guard count >= 0, offset >= 0, offset <= bytes.count, count <= bytes.count - offset else {
            throw SymbolFileError(.truncated, "\(what()) needs \(count) bytes at offset 0x\(hex(max(offset, 0))) of \(name), which has 0x\(hex(bytes.count))")
        }
    }

    mutating func integer<T: FixedWidthInteger>(_ type: T.Type, _ what: @autoclosure () -> String) throws -> T {
        try check(MemoryLayout<T>.size, what())
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size { value |= T(truncatingIfNeeded: bytes[offset + index]) << (8 * index) }
        offset += MemoryLayout<T>.size
        return value
    }

    mutating func u8(_ what: @autoclosure () -> String = "a byte") throws -> UInt8 { try integer(UInt8.self, what()) }
    mutating func u16(_ what: @autoclosure () -> String = "a 16-bit field") throws -> UInt16 { try integer(UInt16.self, what()) }
    mutating func u32(_ what: @autoclosure () -> String = "a 32-bit field") throws -> UInt32 { try integer(UInt32.self, what()) }
    mutating func u64(_ what: @autoclosure () -> String = "a 64-bit field") throws -> UInt64 { try integer(UInt64.self, what()) }

    mutating func bytes(_ count: Int, _ what: @autoclosure () -> String) throws -> [UInt8] {
        try check(count, what())
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func skip(_ count: Int, _ what: @autoclosure () -> String) throws {
        try check(count, what())
        offset += count
    }

    /// A NUL-terminated string (UTF-8, invalid bytes replaced); the terminator is consumed.
    /// Without one, the rest of the bytes (symbol records are padded, names need not be).
    mutating func cString(_ what: @autoclosure () -> String = "a name") throws -> String {
        try check(0, what())
        let end = bytes[offset...].firstIndex(of: 0) ?? bytes.count
        defer { offset = min(bytes.count, end + 1) }
        return String(decoding: bytes[offset..<end], as: UTF8.self)
    }
}
