/// Which frames may be blamed for a crash: `skip` and `blame` rules over module and function
/// names, read from a user-editable file (deploy/triage.rules is the shipped default).
public struct TriageRules: Sendable, Equatable {
    public struct Rule: Sendable, Equatable {
        public enum Action: String, Sendable { case skip, blame }
        public var action: Action
        public var module: String
        public var function: String?
        /// Line number in the rules text, for messages.
        public var line: Int
    }

    public var rules: [Rule]

    /// Parses rules text: one `skip PATTERN` or `blame PATTERN` per line, `#` comments.
    public init(text: String) throws {
        var rules: [Rule] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if words.isEmpty { continue }
            guard words.count == 2, let action = Rule.Action(rawValue: String(words[0]).lowercased()) else {
                throw TriageRulesError(line: number + 1, text: String(raw))
            }
            let parts = words[1].lowercased().split(separator: "!", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard !parts[0].isEmpty, parts.count == 1 || !parts[1].isEmpty else { throw TriageRulesError(line: number + 1, text: String(raw)) }
            rules.append(Rule(action: action, module: parts[0], function: parts.count > 1 ? parts[1] : nil, line: number + 1))
        }
        self.rules = rules
    }

    /// The rules DumpFleet ships (the same text as deploy/triage.rules).
    public static let shipped: TriageRules = (try? TriageRules(text: shippedText)) ?? TriageRules(rules: [])

    init(rules: [Rule]) { self.rules = rules }

    /// WinDbg's short module name: no extension, lower case, and `nt` for every kernel image.
    public static func moduleKey(_ name: String) -> String {
        let lower = name.lowercased()
        let base = lower.split(separator: ".").first.map(String.init) ?? lower
        return ["ntoskrnl", "ntkrnlmp", "ntkrnlpa", "ntkrpamp"].contains(base) ? "nt" : base
    }

    /// Whether a frame in `module` (file name), inside `function` when known, is the OS's.
    public func skips(module: String, function: String?) -> Bool {
        let key = Self.moduleKey(module)
        let function = function?.lowercased()
        var skip = false
        for rule in rules where Self.matches(rule.module, key) {
            if let pattern = rule.function {
                guard let function, Self.matches(pattern, function) else { continue }
            }
            if rule.action == .blame { return false }
            skip = true
        }
        return skip
    }

    /// Whether `frame` may be blamed: it is inside a module and no rule skips it.
    public func blames(_ frame: StackFrame) -> Bool {
        guard let module = frame.module else { return false }
        return !skips(module: module, function: frame.function)
    }

    static func matches(_ pattern: String, _ value: String) -> Bool {
        pattern.hasSuffix("*") ? value.hasPrefix(pattern.dropLast()) : value == pattern
    }
}

public struct TriageRulesError: Error, CustomStringConvertible {
    public var line: Int
    public var text: String
    public var description: String { "triage rules line \(line): expected `skip PATTERN` or `blame PATTERN`, found \"\(text)\"" }
}
