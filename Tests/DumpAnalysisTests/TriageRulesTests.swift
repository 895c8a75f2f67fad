import DumpAnalysis
import Foundation
import Testing

@Suite struct TriageRulesTests {
    @Test func shippedRulesAreTheFileInDeploy() throws {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: repository.appendingPathComponent("deploy/triage.rules"), encoding: .utf8)
        #expect(try TriageRules(text: text) == TriageRules.shipped)
        #expect(TriageRules.shipped.rules.count > 40)
    }

    @Test func skipsBlamesAndWildcards() throws {
        let rules = try TriageRules(text: "skip nt  # the kernel\nskip mcupdate_*\nblame nt!KiInsertTimer*\n\nskip dxgkrnl")
        #expect(rules.skips(module: "ntoskrnl.exe", function: "KeBugCheckEx"))
        #expect(rules.skips(module: "ntkrnlmp.exe", function: nil))
        #expect(!rules.skips(module: "ntoskrnl.exe", function: "KiInsertTimerTable"))
        #expect(rules.skips(module: "mcupdate_GenuineIntel.dll", function: nil))
        #expect(rules.skips(module: "DXGKRNL.SYS", function: nil))
        #expect(!rules.skips(module: "nvlddmkm.sys", function: nil))
        #expect(throws: TriageRulesError.self) { try TriageRules(text: "skip\n") }
        #expect(throws: TriageRulesError.self) { try TriageRules(text: "ignore nt\n") }
    }
}
