import CLZ4

/// LZ4 frame format (what the `lz4` tool writes), streamed: blobs are compressed as they are
/// hashed and decompressed as they are fetched, never held whole. Output buffers are reused
/// between calls (fresh buffers per call halve the speed; platform notes).
public struct LZ4Error: Error, CustomStringConvertible {
    public var description: String
    init(_ code: Int) { description = "LZ4 frame: " + String(cString: LZ4F_getErrorName(code)) }
    init(_ text: String) { description = "LZ4 frame: " + text }
}

public final class LZ4FrameEncoder {
    private var context: OpaquePointer?
    private var buffer: [UInt8] = []
    private var preferences = LZ4F_preferences_t()
    private var started = false

    public init() throws {
        var created: OpaquePointer?
        let code = LZ4F_createCompressionContext(&created, UInt32(LZ4F_VERSION))
        guard LZ4F_isError(code) == 0 else { throw LZ4Error(code) }
        context = created
        preferences.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
        preferences.frameInfo.blockSizeID = LZ4F_max4MB
    }

    deinit { LZ4F_freeCompressionContext(context) }

    /// Compresses `input`, returning whatever compressed bytes are ready (the frame header first).
    public func compress(_ input: UnsafeRawBufferPointer) throws -> ArraySlice<UInt8> {
        let bound = LZ4F_compressBound(input.count, &preferences) + 64
        if buffer.count < bound { buffer = [UInt8](repeating: 0, count: bound) }
        let written = try buffer.withUnsafeMutableBytes { out -> Int in
            var written = 0
            if !started {
                let header = LZ4F_compressBegin(context, out.baseAddress, out.count, &preferences)
                guard LZ4F_isError(header) == 0 else { throw LZ4Error(header) }
                written = header
                started = true
            }
            let code = LZ4F_compressUpdate(context, out.baseAddress! + written, out.count - written, input.baseAddress, input.count, nil)
            guard LZ4F_isError(code) == 0 else { throw LZ4Error(code) }
            return written + code
        }
        return buffer[0..<written]
    }

    /// Ends the frame (end mark and content checksum).
    public func finish() throws -> [UInt8] {
        var tail = [UInt8](repeating: 0, count: LZ4F_compressBound(0, &preferences) + 64)
        var written = 0
        if !started {
            let header = LZ4F_compressBegin(context, &tail, tail.count, &preferences)
            guard LZ4F_isError(header) == 0 else { throw LZ4Error(header) }
            written = header
            started = true
        }
        let code = tail.withUnsafeMutableBytes { LZ4F_compressEnd(context, $0.baseAddress! + written, $0.count - written, nil) }
        guard LZ4F_isError(code) == 0 else { throw LZ4Error(code) }
        return Array(tail[0..<written + code])
    }
}

public final class LZ4FrameDecoder {
    private var context: OpaquePointer?
    private var buffer = [UInt8](repeating: 0, count: 4 << 20)
    /// True once the frame's end (and checksum) has been read.
    public private(set) var finished = false

    public init() throws {
        var created: OpaquePointer?
        let code = LZ4F_createDecompressionContext(&created, UInt32(LZ4F_VERSION))
        guard LZ4F_isError(code) == 0 else { throw LZ4Error(code) }
        context = created
    }

    deinit { LZ4F_freeDecompressionContext(context) }

    /// Feeds compressed bytes; calls `output` with each run of decompressed bytes.
    public func decompress(_ input: UnsafeRawBufferPointer, _ output: (UnsafeRawBufferPointer) throws -> Void) throws {
        var offset = 0
        while offset < input.count {
            guard !finished else { throw LZ4Error("data after the end of the frame") }
            var consumed = input.count - offset
            var produced = buffer.count
            let hint = buffer.withUnsafeMutableBytes { out in
                LZ4F_decompress(context, out.baseAddress, &produced, input.baseAddress! + offset, &consumed, nil)
            }
            guard LZ4F_isError(hint) == 0 else { throw LZ4Error(hint) }
            if produced > 0 { try buffer.withUnsafeBytes { try output(UnsafeRawBufferPointer(rebasing: $0[0..<produced])) } }
            offset += consumed
            if hint == 0 { finished = true }
            if consumed == 0 && produced == 0 { break }
        }
    }
}
