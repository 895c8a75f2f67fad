/// The one error type of the format layer: what went wrong, in words, and where in the file.
public struct DumpError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A stable name for the kind of failure, for grouping in logs and tests.
    public enum Code: String, Sendable {
        /// The file is not a Windows crash dump at all.
        case notADump
        /// The bytes a structure needs lie beyond the end of the file.
        case truncated
        /// A structure is present but its contents contradict themselves.
        case corrupt
        /// A well-formed dump of a kind this version does not read.
        case unsupported
    }

    public var code: Code
    public var message: String
    /// File offset of the offending bytes, when one is known.
    public var offset: UInt64?

    public init(_ code: Code, _ message: String, offset: UInt64? = nil) {
        self.code = code
        self.message = message
        self.offset = offset
    }

    public var description: String { message }
}

/// Lower-case hexadecimal without prefix, for messages.
@inlinable public func hex<T: BinaryInteger>(_ value: T) -> String { String(value, radix: 16) }

/// Checked arithmetic on numbers taken from a file: Swift traps on overflow, so a hostile count
/// or offset must go through these and become an error instead.
public enum Checked {
    public static func add(_ a: UInt64, _ b: UInt64, _ what: @autoclosure () -> String) throws -> UInt64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        if overflow { throw DumpError(.corrupt, "\(what()) overflows: 0x\(hex(a)) + 0x\(hex(b))") }
        return sum
    }

    public static func multiply(_ a: UInt64, _ b: UInt64, _ what: @autoclosure () -> String) throws -> UInt64 {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        if overflow { throw DumpError(.corrupt, "\(what()) overflows: 0x\(hex(a)) * 0x\(hex(b))") }
        return product
    }
}
