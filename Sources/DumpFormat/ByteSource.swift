/// Immutable bytes of a dump, wherever they live: a memory map of a multi-GB file or an array in a test.
///
/// Every read is bounds-checked and throws a `DumpError` that names the file offset, so a
/// hostile or truncated file can never make the parser read outside the bytes it was given.
/// The parser never learns where the bytes came from (see `DumpFile` for mmap).
public final class ByteSource: @unchecked Sendable {
    /// Number of bytes available.
    public let count: UInt64
    @usableFromInline let base: UnsafeRawPointer?
    private let release: (@Sendable () -> Void)?

    /// Wraps memory owned elsewhere; `release` runs once when the source is no longer used.
    /// The memory must stay valid and unchanged until then.
    public init(unsafeBytes: UnsafeRawBufferPointer, release: (@Sendable () -> Void)?) {
        self.base = unsafeBytes.baseAddress
        self.count = UInt64(unsafeBytes.count)
        self.release = release
    }

    /// Copies `bytes` into memory owned by the source (tests, small files).
    public convenience init(copying bytes: [UInt8]) {
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        memory.copyBytes(from: bytes)
        let buffer = UnsafeRawBufferPointer(start: memory.baseAddress, count: bytes.count)
        nonisolated(unsafe) let owned = memory
        self.init(unsafeBytes: buffer, release: { owned.deallocate() })
    }

    deinit { release?() }

    /// True when `length` bytes starting at `offset` lie inside the source.
    @inlinable public func contains(offset: UInt64, length: UInt64) -> Bool {
        offset <= count && length <= count - offset
    }

    @inlinable func check(_ offset: UInt64, _ length: UInt64, _ what: @autoclosure () -> String) throws {
        guard contains(offset: offset, length: length) else {
            throw DumpError(.truncated, "\(what()) needs \(length) bytes at 0x\(hex(offset)) but the file has 0x\(hex(count)) bytes", offset: offset)
        }
    }

    @inlinable func load<T: FixedWidthInteger>(_ offset: UInt64, as: T.Type, _ what: @autoclosure () -> String) throws -> T {
        try check(offset, UInt64(MemoryLayout<T>.size), what())
        return T(littleEndian: base!.loadUnaligned(fromByteOffset: Int(offset), as: T.self))
    }

    public func u8(at offset: UInt64, _ what: @autoclosure () -> String = "a byte") throws -> UInt8 {
        try load(offset, as: UInt8.self, what())
    }
    public func u16(at offset: UInt64, _ what: @autoclosure () -> String = "a 16-bit field") throws -> UInt16 {
        try load(offset, as: UInt16.self, what())
    }
    public func u32(at offset: UInt64, _ what: @autoclosure () -> String = "a 32-bit field") throws -> UInt32 {
        try load(offset, as: UInt32.self, what())
    }
    public func u64(at offset: UInt64, _ what: @autoclosure () -> String = "a 64-bit field") throws -> UInt64 {
        try load(offset, as: UInt64.self, what())
    }

    /// Copies `length` bytes at `offset`.
    public func bytes(at offset: UInt64, count length: UInt64, _ what: @autoclosure () -> String = "a byte range") throws -> [UInt8] {
        try check(offset, length, what())
        guard length > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: base! + Int(offset), count: Int(length)))
    }

    /// Lends `length` bytes at `offset` to `body` without copying; nil when the source does not
    /// hold them all.
    public func withUnsafeBytes<T>(at offset: UInt64, count length: UInt64, _ body: (UnsafeRawBufferPointer) -> T?) -> T? {
        guard contains(offset: offset, length: length), let base else { return nil }
        return body(UnsafeRawBufferPointer(start: base + Int(offset), count: Int(length)))
    }

    /// A little-endian field reader over `length` bytes at `offset`, checked once here.
    public func record(at offset: UInt64, length: UInt64, _ what: @autoclosure () -> String) throws -> Record {
        try check(offset, length, what())
        return Record(source: self, start: offset, length: length, name: what())
    }

    /// Unchecked word load for hot paths whose range was validated when the index was built.
    @inlinable public func uncheckedU64(at offset: UInt64) -> UInt64 {
        assert(contains(offset: offset, length: 8))
        return UInt64(littleEndian: base!.loadUnaligned(fromByteOffset: Int(offset), as: UInt64.self))
    }
}

/// A validated window of a `ByteSource` holding one on-disk structure.
///
/// Reads take offsets relative to the start of the structure; a field past the end of the
/// window throws with the structure's name and the absolute file offset.
public struct Record: Sendable {
    public let source: ByteSource
    public let start: UInt64
    public let length: UInt64
    public let name: String

    func absolute(_ field: UInt64, _ size: UInt64) throws -> UInt64 {
        guard field <= length, size <= length - field else {
            throw DumpError(.corrupt, "\(name) is 0x\(hex(length)) bytes long; field at +0x\(hex(field)) is outside it", offset: start)
        }
        return start + field
    }

    public func u8(_ field: UInt64) throws -> UInt8 { try source.u8(at: absolute(field, 1), name) }
    public func u16(_ field: UInt64) throws -> UInt16 { try source.u16(at: absolute(field, 2), name) }
    public func u32(_ field: UInt64) throws -> UInt32 { try source.u32(at: absolute(field, 4), name) }
    public func u64(_ field: UInt64) throws -> UInt64 { try source.u64(at: absolute(field, 8), name) }
    public func bytes(_ field: UInt64, _ count: UInt64) throws -> [UInt8] {
        try source.bytes(at: absolute(field, count), count: count, name)
    }
}
