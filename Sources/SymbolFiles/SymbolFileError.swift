/// Why a symbol file (a PDB or an ISF table) could not be read, with the evidence: which
/// structure, where in the file or stream, and what it held. Symbol files come from a site's
/// store and are untrusted bytes like dumps; every reader throws this instead of trapping.
public struct SymbolFileError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// Not the format the reader expected (a wrong magic, a wrong version).
        case notASymbolFile
        /// A structure needs bytes beyond the end of its file or stream.
        case truncated
        /// The structure is there but contradicts itself or its container.
        case corrupt
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// Lower-case hexadecimal without prefix, for messages.
func hex<T: BinaryInteger>(_ value: T) -> String { String(value, radix: 16) }
