import CrashSimilarity

/// Where each crash of a batch goes. The crashes are placed in order, each against what the
/// database held when the clustering lock was taken and against what the crashes before it
/// did (a cluster founded, an exemplar added or moved), so a batch ends as the same crashes
/// indexed one at a time would. No SQL here: `CrashIndex` reads the snapshot and writes the
/// decisions.
struct ClusterPlacement {
    /// A cluster that exists, or one that a crash of this batch founds.
    enum Cluster: Hashable {
        case stored(Int64)
        case founded(byDump: Int64)

        /// Ties between equal scores go to the oldest cluster.
        var age: (Int, Int64) {
            switch self {
            case .stored(let id): (0, id)
            case .founded(let dump): (1, dump)
            }
        }
    }

    /// Where a crash was before this batch (it is being indexed again after a reprocess).
    struct Membership {
        var cluster: Int64
        /// An operator put it there: it stays.
        var pinned: Bool
        /// Alone in its cluster, or one of its exemplars: the cluster is compared by this crash.
        var anchors: Bool
        /// One of the exemplars.
        var exemplar: Bool
    }

    /// A stored exemplar that shares a band with the crash.
    struct Candidate {
        var dumpId: Int64
        var cluster: Int64
        var fingerprint: Fingerprint
    }

    struct Crash {
        var dumpId: Int64
        var fingerprint: Fingerprint
        var keys: [Int64]
        var membership: Membership?
        var candidates: [Candidate]
    }

    struct Decision {
        var dumpId: Int64
        var cluster: Cluster
        var score: Double
        /// The crash is (or stays) one of its cluster's exemplars.
        var exemplar: Bool
    }

    let index: CrashIndex
    /// Exemplars per stored cluster when the lock was taken, for the clusters the batch touches.
    var exemplarCounts: [Cluster: Int]

    init(index: CrashIndex, exemplarCounts: [Int64: Int]) {
        self.index = index
        self.exemplarCounts = Dictionary(uniqueKeysWithValues: exemplarCounts.map { (.stored($0.key), $0.value) })
    }

    /// The decisions, one per crash and in their order. Dump ids must not repeat.
    mutating func place(_ crashes: [Crash]) -> [Decision] {
        // Exemplars as this batch leaves them, and which of them hold a band key.
        var batchExemplars: [(dumpId: Int64, cluster: Cluster, fingerprint: Fingerprint)] = []
        var exemplarsByKey: [Int64: [Int]] = [:]
        var placed: Set<Int64> = []
        var decisions: [Decision] = []
        decisions.reserveCapacity(crashes.count)
        for crash in crashes {
            var best: [Cluster: Double] = [:]
            func compare(with other: Fingerprint, in cluster: Cluster) {
                best[cluster] = max(best[cluster] ?? 0, index.model.score(crash.fingerprint, other).value)
            }
            // A stored exemplar placed earlier in the batch is compared as the batch left it.
            for candidate in crash.candidates where !placed.contains(candidate.dumpId) {
                compare(with: candidate.fingerprint, in: .stored(candidate.cluster))
            }
            var compared: Set<Int> = []
            for key in crash.keys {
                for position in exemplarsByKey[key] ?? [] where compared.insert(position).inserted && batchExemplars[position].dumpId != crash.dumpId {
                    compare(with: batchExemplars[position].fingerprint, in: batchExemplars[position].cluster)
                }
            }

            let decision = decide(crash, best: best)
            if decision.exemplar {
                if let membership = crash.membership, membership.exemplar { exemplarCounts[.stored(membership.cluster), default: 1] -= 1 }
                exemplarCounts[decision.cluster, default: 0] += 1
                batchExemplars.append((crash.dumpId, decision.cluster, crash.fingerprint))
                for key in crash.keys { exemplarsByKey[key, default: []].append(batchExemplars.count - 1) }
            }
            placed.insert(crash.dumpId)
            decisions.append(decision)
        }
        return decisions
    }

    /// An operator's choice stays. A crash stays in its cluster while it still scores at the
    /// threshold there, or anchors it, so ids are stable under reprocessing. Otherwise it joins
    /// the best cluster at the threshold, or founds its own. A founder, and a member unlike the
    /// exemplars so far (score below `exemplarBelow`), becomes an exemplar while the cluster
    /// has fewer than `exemplarsPerCluster`; an exemplar stays one wherever it goes.
    private func decide(_ crash: Crash, best: [Cluster: Double]) -> Decision {
        let wasExemplar = crash.membership?.exemplar ?? false
        func decision(_ cluster: Cluster, _ score: Double, founded: Bool = false) -> Decision {
            let becomes = (founded || score < index.exemplarBelow) && exemplarCounts[cluster, default: 0] < index.exemplarsPerCluster
            return Decision(dumpId: crash.dumpId, cluster: cluster, score: score, exemplar: wasExemplar || becomes)
        }
        if let membership = crash.membership {
            let here = Cluster.stored(membership.cluster)
            if membership.pinned { return Decision(dumpId: crash.dumpId, cluster: here, score: 1, exemplar: wasExemplar) }
            if let kept = best[here] ?? (membership.anchors ? 1 : nil), kept >= index.threshold { return decision(here, kept) }
        }
        if let top = best.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key.age > $1.key.age) }), top.value >= index.threshold {
            return decision(top.key, top.value)
        }
        return decision(.founded(byDump: crash.dumpId), 1, founded: true)
    }
}
