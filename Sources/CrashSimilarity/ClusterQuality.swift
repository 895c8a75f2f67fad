/// How good a clustering and a ranking are against known labels, by the measures the
/// crash-deduplication literature uses.
public enum ClusterQuality {
    /// BCubed precision, recall and F1 (Amigó et al., 2009): for each item, the share of its
    /// cluster that has its label (precision) and the share of its label that is in its cluster
    /// (recall), averaged over items. Unlike pair counting, one huge cluster cannot dominate.
    public struct BCubed: Sendable, Equatable {
        public var precision: Double
        public var recall: Double
        public var f1: Double { precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall) }
    }

    /// `clusters[i]` and `labels[i]` are item i's cluster and true label.
    public static func bcubed<C: Hashable, L: Hashable>(clusters: [C], labels: [L]) -> BCubed {
        precondition(clusters.count == labels.count, "one cluster and one label per item")
        guard !clusters.isEmpty else { return BCubed(precision: 1, recall: 1) }
        var clusterSize: [C: Int] = [:], labelSize: [L: Int] = [:], both: [Pair<C, L>: Int] = [:]
        for (cluster, label) in zip(clusters, labels) {
            clusterSize[cluster, default: 0] += 1
            labelSize[label, default: 0] += 1
            both[Pair(cluster: cluster, label: label), default: 0] += 1
        }
        var precision = 0.0, recall = 0.0
        for (cluster, label) in zip(clusters, labels) {
            let shared = Double(both[Pair(cluster: cluster, label: label)]!)
            precision += shared / Double(clusterSize[cluster]!)
            recall += shared / Double(labelSize[label]!)
        }
        return BCubed(precision: precision / Double(clusters.count), recall: recall / Double(clusters.count))
    }

    struct Pair<C: Hashable, L: Hashable>: Hashable {
        var cluster: C
        var label: L
    }

    /// Reciprocal rank of the first relevant answer (0 when none is), for one query.
    public static func reciprocalRank(_ relevant: [Bool]) -> Double {
        guard let first = relevant.firstIndex(of: true) else { return 0 }
        return 1 / Double(first + 1)
    }

    /// Average precision of one ranked answer list, over the `relevantTotal` relevant items
    /// there are (answers beyond the list count as missed).
    public static func averagePrecision(_ relevant: [Bool], relevantTotal: Int) -> Double {
        guard relevantTotal > 0 else { return 0 }
        var hits = 0
        var sum = 0.0
        for (rank, isRelevant) in relevant.enumerated() where isRelevant {
            hits += 1
            sum += Double(hits) / Double(rank + 1)
        }
        return sum / Double(relevantTotal)
    }
}
