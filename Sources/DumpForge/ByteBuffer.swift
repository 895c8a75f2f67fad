/// A growable little-endian byte buffer that the forge writes structures into at fixed offsets.
///
/// The forge keeps its own notion of every layout (offsets are spelled out at each call site),
/// so it never shares code with the parser: when the two disagree a round-trip test fails.
public struct ByteBuffer: Sendable, Equatable {
    public private(set) var bytes: [UInt8]

    public init(count: Int = 0) { bytes = [UInt8](repeating: 0, count: count) }
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var count: Int { bytes.count }

    /// Grows the buffer with zeros so that `count` bytes at `offset` fit.
    mutating func reserve(_ offset: Int, _ count: Int) {
        let end = offset + count
        if end > bytes.count { bytes.append(contentsOf: repeatElement(0, count: end - bytes.count)) }
    }

    public mutating func put8(_ value: UInt8, at offset: Int) {
        reserve(offset, 1)
        bytes[offset] = value
    }

    public mutating func put16(_ value: UInt16, at offset: Int) { putLE(UInt64(value), width: 2, at: offset) }
    public mutating func put32(_ value: UInt32, at offset: Int) { putLE(UInt64(value), width: 4, at: offset) }
    public mutating func put64(_ value: UInt64, at offset: Int) { putLE(value, width: 8, at: offset) }

    public mutating func put(_ data: [UInt8], at offset: Int) {
        reserve(offset, data.count)
        bytes.replaceSubrange(offset..<offset + data.count, with: data)
    }

    /// ASCII text, not terminated (callers leave the following byte zero when they want a NUL).
    public mutating func putASCII(_ text: String, at offset: Int) { put(Array(text.utf8), at: offset) }

    /// UTF-16LE text, not terminated.
    public mutating func putUTF16(_ text: String, at offset: Int) {
        var data: [UInt8] = []
        for unit in text.utf16 { data.append(UInt8(unit & 0xFF)); data.append(UInt8(unit >> 8)) }
        put(data, at: offset)
    }

    /// Pads with zeros up to a multiple of `alignment`.
    public mutating func align(to alignment: Int) {
        let rest = bytes.count % alignment
        if rest != 0 { reserve(bytes.count, alignment - rest) }
    }

    private mutating func putLE(_ value: UInt64, width: Int, at offset: Int) {
        reserve(offset, width)
        for i in 0..<width { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }
}

/// UTF-16LE encoding of `text`, as the kernel stores UNICODE_STRING buffers.
func utf16Bytes(_ text: String) -> [UInt8] {
    var buffer = ByteBuffer()
    buffer.putUTF16(text, at: 0)
    return buffer.bytes
}
