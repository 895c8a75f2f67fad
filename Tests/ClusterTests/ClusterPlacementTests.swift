@testable import CrashClusters
import CrashSimilarity
import Testing

/// The placing rules without a database: what a batch's earlier crashes change for the later
/// ones, operators' pins, the exemplar limit and ties.
@Suite struct ClusterPlacementTests {
    let index = CrashIndex()

    /// A crash in `culprit` with frames in its `functions`, then `tail` frames in nt; a frame's
    /// key (where a real one has the RVA) is its function's name.
    static func fingerprint(_ culprit: String, functions: [String], tail: [String] = ["KiTimerExpiration", "KiRetireDpcList"]) -> Fingerprint {
        let frames = (functions.map { (culprit, $0) } + tail.map { ("nt", $0) }).enumerated().map { position, frame in
            Fingerprint.Frame(position: position, module: frame.0, key: "\(frame.0)+\(frame.1)", function: frame.1)
        }
        return Fingerprint(bucket: "0x3B_c0000005_\(culprit)", bugCheckClass: "0x3B_c0000005", culprit: culprit, frames: frames, evidenceTokens: [])
    }

    func crash(_ dumpId: Int64, _ print: Fingerprint, membership: ClusterPlacement.Membership? = nil,
               candidates: [ClusterPlacement.Candidate] = []) -> ClusterPlacement.Crash {
        ClusterPlacement.Crash(dumpId: dumpId, fingerprint: print, keys: index.bands.clusterKeys(print), membership: membership, candidates: candidates)
    }

    let original = fingerprint("vidacc.sys", functions: ["Insert", "Queue", "Dispatch"])
    /// The same crash with its second and third frames changed: alike, but not so alike that
    /// it adds nothing to the cluster as an exemplar.
    let variant = fingerprint("vidacc.sys", functions: ["Insert", "Wait", "Flush"])
    let unrelated = fingerprint("netfilt.sys", functions: ["Receive", "Indicate"], tail: ["NdisMIndicateReceiveNetBufferLists"])

    @Test func theFixturesScoreWhereTheRulesNeedThem() {
        let model = index.model
        #expect(model.score(original, original).value == 1)
        #expect((index.threshold..<index.exemplarBelow).contains(model.score(original, variant).value))
        #expect(model.score(original, unrelated).value < index.threshold)
    }

    @Test func laterCrashesOfABatchJoinWhatEarlierOnesFounded() {
        var placement = ClusterPlacement(index: index, exemplarCounts: [:])
        let decisions = placement.place([crash(10, original), crash(11, original), crash(12, variant), crash(13, unrelated)])
        #expect(decisions.map(\.cluster) == [.founded(byDump: 10), .founded(byDump: 10), .founded(byDump: 10), .founded(byDump: 13)])
        #expect(decisions.map(\.exemplar) == [true, false, true, true], "founders, and a member unlike the exemplars so far")
        #expect(decisions[1].score == 1 && decisions[2].score < index.exemplarBelow)
    }

    @Test func aStoredClusterWinsTiesAndTheExemplarLimitHolds() {
        var placement = ClusterPlacement(index: index, exemplarCounts: [4: 1, 9: index.exemplarsPerCluster])
        let stored = [ClusterPlacement.Candidate(dumpId: 2, cluster: 9, fingerprint: original),
                      ClusterPlacement.Candidate(dumpId: 1, cluster: 4, fingerprint: original)]
        let decisions = placement.place([crash(20, variant, candidates: Array(stored.prefix(1))), crash(21, variant, candidates: stored)])
        #expect(decisions[0].cluster == .stored(9) && !decisions[0].exemplar, "cluster 9 has all the exemplars it may have")
        #expect(decisions[1].cluster == .stored(4) && decisions[1].exemplar, "equal scores: the older cluster")
    }

    @Test func pinsStayAndAnExemplarMovedEarlierInTheBatchIsComparedWhereItWent() {
        var placement = ClusterPlacement(index: index, exemplarCounts: [5: 1, 6: 1, 7: 2])
        let decisions = placement.place([
            // Dump 30 was put in cluster 6 by an operator: it stays, though cluster 5 is like it.
            crash(30, original, membership: .init(cluster: 6, pinned: true, anchors: false, exemplar: false),
                  candidates: [.init(dumpId: 1, cluster: 5, fingerprint: original)]),
            // Dump 31, an exemplar of cluster 7, analyzed again: it is now unlike cluster 7's
            // other exemplar and like cluster 5's, so it moves (and stays an exemplar).
            crash(31, original, membership: .init(cluster: 7, pinned: false, anchors: true, exemplar: true),
                  candidates: [.init(dumpId: 1, cluster: 5, fingerprint: original), .init(dumpId: 3, cluster: 7, fingerprint: unrelated)]),
            // Dump 32 finds dump 31 as stored (cluster 7, its old crash), but is compared with
            // dump 31 as the batch left it.
            crash(32, original, candidates: [.init(dumpId: 31, cluster: 7, fingerprint: unrelated)]),
        ])
        #expect(decisions.map(\.cluster) == [.stored(6), .stored(5), .stored(5)])
        #expect(decisions[1].exemplar, "an exemplar stays one wherever it goes")
        #expect(placement.exemplarCounts[.stored(7)] == 1 && placement.exemplarCounts[.stored(5)] == 2)
    }
}
