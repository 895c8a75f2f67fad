import CrashSimilarity
import DumpAnalysis
import Foundation
import Testing

/// The similarity model and the quality measures, on hand-made signatures.
@Suite struct SimilarityModelTests {
    /// A signature from frames given as "module+0xRVA" or "module!Function+0xRVA", with a
    /// trailing "?" for a frame a stack scan found.
    static func signature(_ bugCheckClass: String, culprit: String?, _ frames: [String], evidence: [String] = []) -> CrashSignature {
        let frameJSON = frames.enumerated().map { position, given -> String in
            let text = given.hasSuffix("?") ? String(given.dropLast()) : given
            let module = String(text.prefix { $0 != "+" && $0 != "!" })
            let function = text.contains("!") ? String(text.split(separator: "!")[1].prefix { $0 != "+" }) : nil
            let rva = String(text.split(separator: "+").last!)
            return #"{"position":\#(position),"module":"\#(module)","key":"\#(module)+\#(rva)""#
                + (function.map { #","function":"\#($0)""# } ?? "") + (given.hasSuffix("?") ? #","scanned":true"# : "") + "}"
        }
        let json = #"{"id":"0","canonical":"","bucket":"b","bugCheckClass":"\#(bugCheckClass)","#
            + (culprit.map { #""culprit":"\#($0)","# } ?? "")
            + #""frames":[\#(frameJSON.joined(separator: ","))],"modules":[],"evidenceTokens":[\#(evidence.map { "\"\($0)\"" }.joined(separator: ","))]}"#
        return try! JSONDecoder().decode(CrashSignature.self, from: Data(json.utf8))
    }

    static let display = signature("0x1E_c0000005", culprit: "nvlddmkm", [
        "nvlddmkm!NvDdiStartDevice+0x1091", "dxgkrnl!DpiDxgkDdiStartDevice+0x2045", "dxgkrnl!DxgkCreateDevice+0x25c2",
        "nt!PspSystemThreadStartup+0x1455", "nt!KiStartSystemThread+0x1828"])

    @Test func fingerprintsSurviveTheirTextForm() {
        let plain = Fingerprint(Self.display)
        #expect(Fingerprint(text: plain.text) == plain)
        // Names come from dumps: separators in them are dropped, anything else is kept.
        let odd = Fingerprint(bucket: "0x3B_\u{1F}x", bugCheckClass: "0x3B", culprit: nil, frames: [
            Fingerprint.Frame(position: 0, module: "\u{301}drv\u{1E}ünï", key: "drv+0x10", function: nil),
            Fingerprint.Frame(position: 1, module: "nt", key: "nt+0x20", function: "Ki\u{1D}Dispatch 😀"),
        ], evidenceTokens: ["timer-list", "utf16:\\HDPServer"])
        let back = Fingerprint(text: odd.text)
        #expect(back?.bucket == "0x3B_x" && back?.culprit == nil && back?.evidenceTokens == odd.evidenceTokens)
        #expect(back?.frames.map(\.module) == ["\u{301}drvünï", "nt"] && back?.frames.map(\.function) == [nil, "KiDispatch 😀"])
        let empty = Fingerprint(bucket: "", bugCheckClass: "", culprit: nil, frames: [], evidenceTokens: [])
        #expect(Fingerprint(text: empty.text) == empty)
        for broken in ["", "3\u{1F}b\u{1F}c\u{1F}\u{1F}\u{1F}", "2\u{1F}b\u{1F}c\u{1F}\u{1F}0\u{1D}m\u{1D}m+0x1\u{1D}\u{1F}", "1\u{1F}b", "1\u{1F}b\u{1F}c\u{1F}d\u{1F}x\u{1D}m\u{1F}"] {
            #expect(Fingerprint(text: broken) == nil, "\(broken.debugDescription)")
        }
    }

    /// A minidump of the display crash: past the faulting frame a scan found the real callers
    /// and, between them, stale return addresses of earlier calls. The stale ones cost little
    /// and the real ones count as the unwound frames they match, so it scores with the full
    /// dump's signature as a crash of the same cause; the same frames taken as unwound would not.
    @Test func framesAScanFoundCountByWhatTheyMatch() {
        let scanned = ["nvlddmkm+0x1091", "tcpip+0x1700?", "dxgkrnl+0x2045?", "hal+0x1730?", "dxgkrnl+0x25c2?", "dcapture+0x1b38?",
                       "nt+0x1455?", "ndis+0x1b28?", "nt+0x1828?"]
        let minidump = Self.signature("0x1E_c0000005", culprit: "nvlddmkm", scanned)
        let unwound = Self.signature("0x1E_c0000005", culprit: "nvlddmkm", scanned.map { $0.replacingOccurrences(of: "?", with: "") })
        let model = SimilarityModel()
        let score = model.score(Self.display, minidump)
        #expect(score.value > 0.85 && score.stack > 0.75, "\(score)")
        #expect(model.score(Self.display, unwound).stack < score.stack - 0.2)
        #expect(score.matchedFrames == ["nvlddmkm+0x1091", "dxgkrnl+0x2045", "dxgkrnl+0x25c2", "nt+0x1455", "nt+0x1828"])

        // The flag survives the text form, and version 1 text (before it was kept) still parses.
        let print = Fingerprint(minidump)
        #expect(Fingerprint(text: print.text) == print && print.frames.map(\.scanned) == [false] + Array(repeating: true, count: 8))
        let old = Fingerprint(text: "1\u{1F}b\u{1F}0x1E\u{1F}drv\u{1F}0\u{1D}drv\u{1D}drv+0x10\u{1D}\u{1F}")
        #expect(old?.frames.map(\.key) == ["drv+0x10"] && old?.frames.first?.scanned == false)

        // Clustering always compares crashes of one class and culprit; search does not ask by it.
        let bands = MinHashBands()
        #expect(bands.clusterKeys(Fingerprint(Self.display)).last == bands.clusterKeys(print).last)
        #expect(bands.clusterKeys(print).dropLast() == bands.keys(print)[...])
    }

    @Test func identicalCrashesScoreOne() {
        let score = SimilarityModel().score(Self.display, Self.display)
        #expect(abs(score.value - 1) < 1e-9)
        #expect(score.reasons.first == "same culprit")
        #expect(score.matchedFrames.first == "nvlddmkm+0x1091")
    }

    @Test func anExtraFrameOrANewDriverBuildStaysClose() {
        let deeper = Self.signature("0x1E_c0000005", culprit: "nvlddmkm", [
            "nvlddmkm!NvDdiStartDevice+0x1091", "dxgkrnl!DpiDxgkDdiStartDevice+0x2045", "dxgkrnl!DxgkCreateDevice+0x25c2",
            "nt!IofCallDriver+0x1055", "nt!PspSystemThreadStartup+0x1455", "nt!KiStartSystemThread+0x1828"])
        let rebuilt = Self.signature("0x1E_c0000005", culprit: "nvlddmkm", [
            "nvlddmkm!NvDdiStartDevice+0x1491", "dxgkrnl!DpiDxgkDdiStartDevice+0x2045", "dxgkrnl!DxgkCreateDevice+0x25c2",
            "nt!PspSystemThreadStartup+0x1455", "nt!KiStartSystemThread+0x1828"])
        let model = SimilarityModel()
        #expect(model.score(Self.display, deeper).value > 0.9)
        #expect(model.score(Self.display, rebuilt).value > 0.95, "same function, moved code")
        #expect(model.score(Self.display, rebuilt).value < 1)
    }

    @Test func differentCausesScoreLow() {
        let network = Self.signature("0xD1", culprit: "rtnet64x", ["rtnet64x+0x11b7", "rtnet64x+0x1440", "ndis+0x35a5", "nt+0x189e"])
        let oneOff = Self.signature("0x50", culprit: "klif", ["klif!KliRoutine0+0x1041", "klif!KliRoutine2+0x183c", "nt!IofCallDriver+0x1055",
                                                              "nt!PspSystemThreadStartup+0x1455", "nt!KiStartSystemThread+0x1828"])
        let model = SimilarityModel()
        #expect(model.score(Self.display, network).value < 0.1)
        #expect(model.score(Self.display, oneOff).value < 0.3, "sharing only the thread's outer frames")
    }

    @Test func unrelatedBugChecksInTheSameCodeAreDifferentFailures() {
        let frames = ["klif!KliRoutine0+0x1041", "klif!KliRoutine2+0x183c", "nt!IofCallDriver+0x1055"]
        let pageFault = Self.signature("0x50", culprit: "klif", frames)
        let model = SimilarityModel()
        let watchdog = model.score(pageFault, Self.signature("0x133_1", culprit: "klif", frames))
        #expect(watchdog.value < 0.7 && watchdog.value > 0.5, "listed by similar, never one cluster: \(watchdog.value)")
        #expect(watchdog.reasons.contains("different bug check"))
        // One access violation caught in a driver (0x1E) and in a system thread (0x7E).
        let driver = Self.signature("0x1E_c0000005", culprit: "klif", frames), thread = Self.signature("0x7E_c0000005", culprit: "klif", frames)
        #expect(model.score(driver, thread).sameBugCheck == 0.5 && model.score(driver, thread).value > 0.9)
        #expect(model.score(driver, Self.signature("0x7E_80000003", culprit: "klif", frames)).sameBugCheck == 0, "another exception")
        #expect(model.score(pageFault, Self.signature("0x50", culprit: "klif", frames)).value == 1)
    }

    @Test func evidenceCountsOnlyWhenThereIsSome() {
        let a = Self.signature("0x3B_c0000005", culprit: "VideoAccelerator.exe", ["nt!KiInsertTimerTable+0x188e"], evidence: ["hdpserver", "videoaccelerator.exe"])
        let b = Self.signature("0x3B_c0000005", culprit: "VideoAccelerator.exe", ["nt!KiInsertTimerTable+0x188e"], evidence: ["videoaccelerator.exe"])
        let score = SimilarityModel().score(a, b)
        #expect(score.sharedEvidence == ["videoaccelerator.exe"])
        #expect(abs(score.value - (0.55 + 0.15 + 0.2 + 0.1 * 0.5) / 1.0) < 1e-9)
        #expect(abs(SimilarityModel().score(Self.display, Self.display).value - 1) < 1e-9, "no evidence on either side: its weight drops out")
        let uncaptured = Self.signature("0x3B_c0000005", culprit: "VideoAccelerator.exe", ["nt!KiInsertTimerTable+0x188e"])
        #expect(abs(SimilarityModel().score(a, uncaptured).value - 1) < 1e-9, "evidence on one side only: a minidump may not have captured it")
    }

    @Test func bandKeysAreSharedByAlikeCrashesOnly() {
        let bands = MinHashBands()
        // PostgreSQL keeps these keys (signatures.bands, cluster_exemplars.bands) and looks new
        // crashes up by them: keys that drift make every stored crash unfindable, so they are
        // pinned. Changing the hashing means a new analyzer version and `recluster --all`.
        #expect(bands.keys(Self.display) == [-1901325328485952170, 5879157519517686650, -3349282534305878461, 4453098490699803121,
                                             5437497615693325367, -8286844531863330764, 296172269391265910, 8983321481131430157,
                                             -1667633261950185537, 7453818082626828688, 1710361511942890262, 4957497250561562538,
                                             -7456732813472647975, -7975330606421680626, 2716999701499045625, 5300059108251055739,
                                             -2516703770161807443, -7558154810154972370, 4214553877785908858, 6241292682542398024,
                                             -7292074285941663548, -9040339046867794201, 5080955992240720442, 5395440460152474078])
        #expect(bands.keys(Self.display).count == bands.bands)
        let rebuilt = Self.signature("0x1E_c0000005", culprit: "nvlddmkm", [
            "nvlddmkm!NvDdiStartDevice+0x1491", "dxgkrnl!DpiDxgkDdiStartDevice+0x2045", "dxgkrnl!DxgkCreateDevice+0x25c2",
            "nt!PspSystemThreadStartup+0x1455", "nt!KiStartSystemThread+0x1828"])
        let network = Self.signature("0xD1", culprit: "rtnet64x", ["rtnet64x+0x11b7", "rtnet64x+0x1440", "ndis+0x35a5", "nt+0x189e"])
        #expect(!Set(bands.keys(Self.display)).isDisjoint(with: bands.keys(rebuilt)))
        #expect(Set(bands.keys(Self.display)).isDisjoint(with: bands.keys(network)))
    }

    @Test func bcubedAndRankingMeasures() {
        let perfect = ClusterQuality.bcubed(clusters: [1, 1, 2], labels: ["a", "a", "b"])
        #expect(perfect.precision == 1 && perfect.recall == 1 && perfect.f1 == 1)
        let lumped = ClusterQuality.bcubed(clusters: [1, 1, 1], labels: ["a", "a", "b"])
        #expect(abs(lumped.precision - (2.0 / 3 + 2.0 / 3 + 1.0 / 3) / 3) < 1e-12 && lumped.recall == 1)
        let split = ClusterQuality.bcubed(clusters: [1, 2, 3], labels: ["a", "a", "b"])
        #expect(split.precision == 1 && abs(split.recall - (0.5 + 0.5 + 1) / 3) < 1e-12)
        #expect(ClusterQuality.reciprocalRank([false, true]) == 0.5 && ClusterQuality.reciprocalRank([false]) == 0)
        #expect(abs(ClusterQuality.averagePrecision([true, false, true], relevantTotal: 2) - (1 + 2.0 / 3) / 2) < 1e-12)
    }
}
