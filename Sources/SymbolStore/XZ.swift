import CLZMA
import SymbolFiles

/// Unpacks .xz files (Volatility ships its ISF tables as .json.xz) with liblzma, into memory,
/// refusing output beyond `limit` bytes: a symbol file is untrusted, and a small .xz can
/// claim gigabytes.
enum XZ {
    static func decompress(_ input: [UInt8], limit: Int) throws -> [UInt8] {
        var stream = lzma_stream()
        // liblzma's own memory limit too: a hostile header can ask for a huge dictionary.
        guard lzma_stream_decoder(&stream, 256 << 20, 0) == LZMA_OK else {
            throw SymbolFileError(.corrupt, "liblzma could not start a decoder")
        }
        defer { lzma_end(&stream) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        return try input.withUnsafeBufferPointer { source in
            stream.next_in = source.baseAddress
            stream.avail_in = source.count
            while true {
                let status = chunk.withUnsafeMutableBufferPointer { buffer -> lzma_ret in
                    stream.next_out = buffer.baseAddress
                    stream.avail_out = buffer.count
                    return lzma_code(&stream, LZMA_FINISH)
                }
                output += chunk[0..<(chunk.count - stream.avail_out)]
                guard output.count <= limit else {
                    throw SymbolFileError(.corrupt, "the .xz file unpacks to more than \(limit) bytes")
                }
                switch status {
                case LZMA_STREAM_END: return output
                case LZMA_OK: continue
                default: throw SymbolFileError(.corrupt, "the .xz data is damaged (liblzma status \(status.rawValue) after \(output.count) bytes)")
                }
            }
        }
    }
}
