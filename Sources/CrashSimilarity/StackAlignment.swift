import DumpAnalysis
#if canImport(Glibc)
import Glibc
#endif

/// How alike two stacks are, position by position, in the family of TraceSim (Vasiliev et al.,
/// 2020) and ReBucket's position-dependent model (Dang et al., 2012): frames near the fault
/// weigh more, frames are matched by a monotone alignment (so one extra or missing frame costs
/// only that frame), and a match between different positions counts less the further apart they
/// are.
///
/// With position weights w(i) = e^(−decay·i), the score of aligning frame i of A with frame j
/// of B is level(a_i, b_j) · √(w(i)·w(j)) · e^(−shift·|i−j|), and the stack similarity is
/// 2·(best alignment) / (Σ w over A + Σ w over B): 1 for identical stacks, 0 when nothing aligns.
///
/// A frame a stack scan found (all a minidump allows past its first frame) may be a stale
/// return address of an earlier call, and the stale ones between the real ones move the real
/// ones outward. So a scanned frame that matches nothing costs only `scanned` times its weight
/// in the sum (it is probably stale); one that matches counts in full, as the frame it
/// matched; and a match with a scanned frame pays no shift. Stale frames then cost little,
/// real ones still count, and a minidump compares with a full dump of the same crash by what
/// both hold.
public struct StackAlignment: Sendable, Equatable {
    /// How fast frames lose weight with distance from the fault (0.15: the 5th frame weighs
    /// half the 1st).
    public var decay = 0.15
    /// How much a match between different positions loses per position of difference.
    public var shift = 0.2
    /// Credit for the same module and export but another offset (a new build of the driver).
    public var sameFunction = 0.9
    /// Credit for the same module only.
    public var sameModule = 0.4
    /// Frames compared from the fault outward.
    public var depth = 12
    /// What a frame found by scanning costs when it matches nothing, against its full weight.
    public var scanned = 0.3

    public init() {}

    /// What an alignment found: the similarity and the frames it matched exactly.
    public struct Result: Sendable, Equatable {
        public var similarity: Double
        /// Pairs of positions (in A, in B) matched by key or by function.
        public var matched: [(Int, Int)]

        public static func == (lhs: Result, rhs: Result) -> Bool {
            lhs.similarity == rhs.similarity && lhs.matched.elementsEqual(rhs.matched) { $0 == $1 }
        }
    }

    public func align(_ a: [Fingerprint.Frame], _ b: [Fingerprint.Frame]) -> Result {
        let a = Array(a.prefix(depth)), b = Array(b.prefix(depth))
        guard !a.isEmpty, !b.isEmpty else { return Result(similarity: a.isEmpty && b.isEmpty ? 1 : 0, matched: []) }
        // best[i][j]: the best alignment of a[..<i] with b[..<j].
        var best = [[Double]](repeating: [Double](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 1...a.count {
            for j in 1...b.count {
                let pair = score(a[i - 1], b[j - 1])
                best[i][j] = max(best[i - 1][j], best[i][j - 1], best[i - 1][j - 1] + pair)
            }
        }
        // Walk back for the explanation and for which scanned frames matched.
        var matched: [(Int, Int)] = []
        var pairedA = Set<Int>(), pairedB = Set<Int>()
        var i = a.count, j = b.count
        while i > 0 && j > 0 {
            let pair = score(a[i - 1], b[j - 1])
            if pair > 0 && best[i][j] == best[i - 1][j - 1] + pair {
                pairedA.insert(i - 1)
                pairedB.insert(j - 1)
                if level(a[i - 1], b[j - 1]) >= sameFunction { matched.append((a[i - 1].position, b[j - 1].position)) }
                i -= 1
                j -= 1
            } else if best[i][j] == best[i - 1][j] {
                i -= 1
            } else {
                j -= 1
            }
        }
        func cost(_ frames: [Fingerprint.Frame], _ paired: Set<Int>) -> Double {
            frames.indices.reduce(0) { $0 + weight(frames[$1].position) * (frames[$1].scanned && !paired.contains($1) ? scanned : 1) }
        }
        let total = cost(a, pairedA) + cost(b, pairedB)
        return Result(similarity: min(1, 2 * best[a.count][b.count] / total), matched: matched.reversed())
    }

    func weight(_ position: Int) -> Double { exp(-decay * Double(position)) }

    func score(_ x: Fingerprint.Frame, _ y: Fingerprint.Frame) -> Double {
        let credit = level(x, y)
        guard credit > 0 else { return 0 }
        let moved = x.scanned || y.scanned ? 0 : abs(x.position - y.position)
        return credit * (weight(x.position) * weight(y.position)).squareRoot() * exp(-shift * Double(moved))
    }

    func level(_ x: Fingerprint.Frame, _ y: Fingerprint.Frame) -> Double {
        guard x.module == y.module else { return 0 }
        if x.key == y.key { return 1 }
        if let f = x.function, f == y.function { return sameFunction }
        return sameModule
    }
}
