import DumpAnalysis

/// How alike two crashes are, from what the analyzer stores in a `CrashSignature` (compared as
/// its `Fingerprint`): the stack
/// (position-weighted alignment, `StackAlignment`), the bug-check class, the culprit, and the
/// words of corruption evidence. The written-down model, with its reasons and parameters, is
/// Sources/CrashSimilarity/CrashSimilarity.docc/SimilarityModel.md.
public struct SimilarityModel: Sendable, Equatable {
    public var stack = StackAlignment()
    /// Weights of the parts; evidence counts only when both crashes have some (a minidump may
    /// not have captured the memory that holds it, and a crash without corruption has none).
    public var stackWeight = 0.55
    public var bugCheckWeight = 0.15
    public var culpritWeight = 0.2
    public var evidenceWeight = 0.1
    /// Crashes whose bug checks are unrelated (`bugCheckMatch` 0) are different failures even
    /// when they happen in the same code: their score is multiplied by this. It keeps them out
    /// of one cluster (the most such a pair can reach is 0.85 × 0.75 ≈ 0.64, under the 0.7
    /// threshold), while `similar` still lists them, lower.
    public var unrelatedBugCheckFactor = 0.75

    public init() {}

    /// A score in 0...1 and what made it.
    public struct Score: Sendable, Equatable {
        public var value: Double
        public var stack: Double
        /// `bugCheckMatch`: 1, ½ or 0.
        public var sameBugCheck: Double
        public var sameCulprit: Bool
        /// Evidence words both crashes have.
        public var sharedEvidence: [String]
        /// Frames that matched by instruction or function, as `module+0xRVA` of the first crash.
        public var matchedFrames: [String]

        /// One line a person can check: why these two crashes are alike.
        public var reasons: [String] {
            var reasons: [String] = []
            if sameCulprit { reasons.append("same culprit") }
            if sameBugCheck == 1 {
                reasons.append("same bug check and code")
            } else {
                reasons.append(sameBugCheck > 0 ? "related bug check" : "different bug check")
            }
            reasons.append("stack \(Int((stack * 100).rounded()))% alike" + (matchedFrames.isEmpty ? "" : " (\(matchedFrames.prefix(3).joined(separator: ", ")))"))
            if !sharedEvidence.isEmpty { reasons.append("shared evidence: " + sharedEvidence.prefix(4).joined(separator: ", ")) }
            return reasons
        }
    }

    public func score(_ a: CrashSignature, _ b: CrashSignature) -> Score { score(Fingerprint(a), Fingerprint(b)) }

    public func score(_ a: Fingerprint, _ b: Fingerprint) -> Score {
        let alignment = stack.align(a.frames, b.frames)
        let bugCheck = Self.bugCheckMatch(a.bugCheckClass, b.bugCheckClass)
        let culprit = a.culprit != nil && a.culprit == b.culprit
        let tokensA = Set(a.evidenceTokens), tokensB = Set(b.evidenceTokens)
        let shared = tokensA.intersection(tokensB)
        let union = tokensA.union(tokensB)
        var total = stackWeight * alignment.similarity + bugCheckWeight * bugCheck + (culprit ? culpritWeight : 0)
        var weights = stackWeight + bugCheckWeight + culpritWeight
        if !tokensA.isEmpty, !tokensB.isEmpty {
            total += evidenceWeight * Double(shared.count) / Double(union.count)
            weights += evidenceWeight
        }
        let keys = Dictionary(a.frames.map { ($0.position, $0.key) }, uniquingKeysWith: { first, _ in first })
        return Score(value: total / weights * (bugCheck == 0 ? unrelatedBugCheckFactor : 1), stack: alignment.similarity, sameBugCheck: bugCheck, sameCulprit: culprit,
                     sharedEvidence: shared.sorted(), matchedFrames: alignment.matched.compactMap { keys[$0.0] })
    }

    /// 1 for the same class (code and, where the class has one, the exception or subtype); ½
    /// for the same bug-check code alone, or for two of the "exception not handled" bug checks
    /// with the same exception (one fault caught in another context: 0x1E in a driver's own
    /// code, 0x7E in a system thread, 0x8E in kernel mode, 0x3B in a system service); else 0.
    /// Classes look like `0x1E_c0000005` or `0x80_NMI`.
    static func bugCheckMatch(_ a: String, _ b: String) -> Double {
        if a == b { return 1 }
        let partsA = a.split(separator: "_", maxSplits: 1), partsB = b.split(separator: "_", maxSplits: 1)
        guard let codeA = partsA.first, let codeB = partsB.first else { return 0 }
        if codeA == codeB { return 0.5 }
        let exceptionCodes: Set<Substring> = ["0x1E", "0x3B", "0x7E", "0x8E"]
        if exceptionCodes.contains(codeA), exceptionCodes.contains(codeB), partsA.count == 2, partsA.last == partsB.last { return 0.5 }
        return 0
    }
}
