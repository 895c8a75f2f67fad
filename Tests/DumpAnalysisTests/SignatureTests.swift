import DumpAnalysis
import DumpForge
import DumpMemory
import Testing
import TestSupport

/// Same cause, same signature; different cause, different signature.
@Suite struct SignatureTests {
    typealias Scenario = @Sendable (DumpDescription.DumpKind, UInt64, Bool) -> DumpDescription

    static let scenarios: [(String, Scenario)] = [
        ("display", { .displayDriverFault(kind: $0, layoutSeed: $1, extraFrame: $2) }),
        ("timer", { .timerListCorruption(kind: $0, layoutSeed: $1, extraFrame: $2) }),
        ("hang", { .spinLockHang(kind: $0, layoutSeed: $1, extraFrame: $2) }),
        ("list", { .listEntryCorruption(kind: $0, layoutSeed: $1, extraFrame: $2) }),
        ("irql", { .networkDriverFault(kind: $0, layoutSeed: $1, extraFrame: $2) }),
    ]

    static func signature(_ description: DumpDescription, moreProcesses: Bool = false) throws -> CrashSignature {
        var small = description
        small.memory = [0x1..<0x9F, 0x100..<0x8000]
        if moreProcesses {
            small.processes.append(ProcessDescription(processId: 0x2000, parentId: 0xF10, imageName: "notepad.exe", threads: [DumpDescription.waiting(0x2004)]))
        }
        return CrashAnalyzer().analyze(try KernelDump(source: Fixtures.source(Forge.dump(small)))).signature
    }

    @Test(arguments: 0..<5)
    func sameCauseUnderOtherLayoutsProcessesAndAnExtraFrame(scenario: Int) throws {
        let (name, make) = Self.scenarios[scenario]
        let reference = try Self.signature(make(.full, 1, false))
        let variants = [
            try Self.signature(make(.full, 77, false)),  // other ASLR bases and pool addresses
            try Self.signature(make(.full, 5, true)),  // one more frame
            try Self.signature(make(.bitmapKernel, 9, false), moreProcesses: true),  // another dump type and process list
        ]
        for variant in variants {
            #expect(variant.id == reference.id, "\(name): \(variant.canonical) vs \(reference.canonical)")
            #expect(variant.bucket == reference.bucket)
        }
    }

    @Test func fullDumpAndMinidumpOfTheSameCrashShareTheirSignature() throws {
        // With stale return addresses in the stacks' locals too: the minidump's scan takes them
        // for callers, and the identity must not move.
        for (name, make) in Self.scenarios where name != "timer" {  // a minidump holds no timer tables
            for stale in [false, true] {
                var full = make(.full, 3, false), mini = make(.triage, 4, false)
                full.staleStackValues = stale
                mini.staleStackValues = stale
                let (fullSignature, miniSignature) = (try Self.signature(full), try Self.signature(mini))
                #expect(fullSignature.id == miniSignature.id, "\(name): \(fullSignature.canonical) vs \(miniSignature.canonical)")
                #expect(fullSignature.bucket == miniSignature.bucket && fullSignature.culprit == miniSignature.culprit)
                #expect(fullSignature.frames.allSatisfy { !$0.scanned }, "\(name): a full dump unwinds every frame")
                // The hang's NMI ran on its own interrupt stack: the minidump holds that stack,
                // not the one it interrupted, so its walk ends at the interrupted frame.
                if name == "hang" {
                    #expect(miniSignature.frames.count == 1 && fullSignature.frames.count > 2, "\(miniSignature.frames) vs \(fullSignature.frames)")
                } else {
                    #expect(!stale || miniSignature.frames.filter(\.scanned).count > fullSignature.frames.count - 1,
                            "\(name): the minidump's scan also found stale values")
                }
            }
        }
    }

    @Test func differentCausesDiffer() throws {
        let signatures = try Self.scenarios.map { try Self.signature($0.1(.full, 1, false)) }
        #expect(Set(signatures.map(\.id)).count == signatures.count)
        #expect(Set(signatures.map(\.bucket)).count == signatures.count)
    }

    @Test func featuresCarryFramesModulesAndEvidence() throws {
        let signature = try Self.signature(.timerListCorruption(kind: .full))
        #expect(signature.frames.first?.position == 0)
        #expect(signature.frames.first?.key.hasPrefix("nt+0x") == true)
        #expect(signature.modules == ["nt"])
        #expect(signature.evidenceTokens.contains("videoaccelerator.exe"))
        #expect(signature.bugCheckClass == "0x3B_c0000005")
        // Stored in PostgreSQL and compared across dumps uploaded years apart: pinned, so that
        // a change to what goes into it is made on purpose (with a new analyzer version;
        // version 3 left the callers out, which a minidump has only from a scan).
        #expect(signature.canonical == "0x3B_c0000005|CORRUPTION_VideoAccelerator.exe|nt+0x188e")
        #expect(signature.id == "77a85b44a6edf0da")
    }
}
