import DumpAnalysis

/// Candidate retrieval for similarity search and clustering: a MinHash sketch of a crash's
/// feature set, cut into bands; each band hashes to one 64-bit key. Two crashes whose feature
/// sets have Jaccard similarity J share at least one key with probability 1 − (1 − J^rows)^bands
/// (with 24 bands of 3 rows: 0.18 at J = 0.2, 0.80 at J = 0.4, 0.96 at J = 0.5). The keys go
/// into an array column with a GIN index, so PostgreSQL finds the candidates and
/// `SimilarityModel` ranks only those.
public struct MinHashBands: Sendable, Equatable {
    public var bands = 24
    public var rows = 3

    public init() {}

    /// The features hashed: bug-check class and code, culprit, the instructions and functions
    /// of the frames nearest the fault, which module sits at which of the first positions, and
    /// the evidence words. A frame a scan found adds no position: stale values between the
    /// real frames move them, so it would only dilute what a minidump shares with a full dump
    /// of the same crash.
    public func features(_ signature: Fingerprint) -> Set<String> {
        var features: Set<String> = ["class:" + signature.bugCheckClass]
        if let code = signature.bugCheckClass.split(separator: "_").first { features.insert("code:" + code) }
        if let culprit = signature.culprit { features.insert("culprit:" + culprit) }
        for frame in signature.frames.prefix(8) {
            features.insert("frame:" + frame.key)
            if let function = frame.function { features.insert("function:\(frame.module)!\(function)") }
            if frame.position < 4, !frame.scanned { features.insert("at\(frame.position):" + frame.module) }
            features.insert("module:" + frame.module)
        }
        for token in signature.evidenceTokens { features.insert("evidence:" + token) }
        return features
    }

    /// The band keys of a signature (`bands` of them).
    public func keys(_ signature: CrashSignature) -> [Int64] { keys(Fingerprint(signature)) }

    public func keys(_ signature: Fingerprint) -> [Int64] {
        let hashes = features(signature).map { CrashSignature.fnv1a64($0) }
        var minima = [UInt64](repeating: .max, count: bands * rows)
        for hash in hashes {
            for index in minima.indices {
                let mixed = Self.mix(hash ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15))
                if mixed < minima[index] { minima[index] = mixed }
            }
        }
        return (0..<bands).map { band in
            var key = Self.mix(UInt64(band) &+ 0x5DEE_CE66_D)
            for row in 0..<rows { key = Self.mix(key ^ minima[band * rows + row]) }
            return Int64(bitPattern: key)
        }
    }

    /// The band keys and one more for clustering: the bug-check class and culprit together.
    /// Crashes with both in common are always compared when a crash is placed, whatever their
    /// stacks share: what a minidump keeps of a crash (its faulting frame, a scan's guesses,
    /// no export names) can share too few features with a full dump of the same crash for the
    /// bands to meet. Similarity search asks with `keys` alone, so a class and culprit that
    /// thousands of crashes share never crowd its candidates.
    public func clusterKeys(_ signature: Fingerprint) -> [Int64] {
        keys(signature) + [Int64(bitPattern: Self.mix(CrashSignature.fnv1a64("anchor:\(signature.bugCheckClass)|\(signature.culprit ?? "")")))]
    }

    /// SplitMix64's finalizer: a cheap, well-spread permutation of 64-bit values.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
