@testable import DumpAnalysis
import DumpFormat
import Testing

/// Culprits and CPU activity weigh frames by how they were found: an unwound frame before
/// corruption evidence, evidence before a frame a scan of the stack found (it may be stale).
@Suite struct FrameTrustTests {
    static let modules = [
        LoadedModule(name: "ntoskrnl.exe", path: nil, base: 0xFFFF_F800_0000_0000, size: 0x10_0000, timeDateStamp: 0, checkSum: 0),
        LoadedModule(name: "capture.sys", path: nil, base: 0xFFFF_F806_0000_0000, size: 0x1_0000, timeDateStamp: 0, checkSum: 0),
    ]

    static func frame(_ module: String, _ rva: UInt32, _ trust: FrameTrust) -> StackFrame {
        let base = modules.first { $0.name == module }!.base
        let key = module == "ntoskrnl.exe" ? "nt" : "capture"
        return StackFrame(rip: base + UInt64(rva), rsp: 0xFFFF_E000_0000_1000, trust: trust, symbol: "\(key)+0x\(String(rva, radix: 16))",
                          module: module, moduleKey: key, rva: rva, function: nil)
    }

    static let evidence = [Evidence(location: "CPU 0 timer list 17", address: 0xFFFF_A000_0000_0100, value: 0x0050_0044_0048_005C,
                                    text: ["\\HDPServer\\VideoAccelerator.exe"],
                                    attributedTo: Attribution(kind: .process, name: "VideoAccelerator.exe", thirdParty: true))]
    static let knowledge = BugCheckKnowledge(BugCheck(rawCode: 0x3B, parameters: [0xC000_0005, 0, 0, 0]))

    func culprit(_ stack: [StackFrame], evidence: [Evidence]) -> String {
        CrashAnalyzer().findCulprit(stack: stack, faultingFrame: 0, knowledge: Self.knowledge, cpus: [], evidence: evidence, modules: Self.modules).name
    }

    @Test func evidenceOutranksAScannedDriverFrameButNotAnUnwoundOne() {
        let scanned = [Self.frame("ntoskrnl.exe", 0x188E, .context), Self.frame("ntoskrnl.exe", 0x52D5, .unwindInfo), Self.frame("capture.sys", 0x1A40, .scan)]
        #expect(culprit(scanned, evidence: Self.evidence) == "VideoAccelerator.exe")
        #expect(culprit(scanned, evidence: []) == "capture.sys", "with nothing better, a scanned frame is still named")
        var unwound = scanned
        unwound[2].trust = .unwindInfo
        #expect(culprit(unwound, evidence: Self.evidence) == "capture.sys")
    }

    @Test func aScannedDriverFrameDoesNotMakeAnIdleCPUBusy() {
        let stack = [Self.frame("ntoskrnl.exe", 0x4000, .context), Self.frame("capture.sys", 0x1A40, .scan)]
        #expect(CrashAnalyzer().activity(of: stack, onIdleThread: true) == "idle")
        var unwound = stack
        unwound[1].trust = .unwindInfo
        #expect(CrashAnalyzer().activity(of: unwound, onIdleThread: true).hasPrefix("running capture.sys code"))
    }
}
