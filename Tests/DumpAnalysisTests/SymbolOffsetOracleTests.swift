@testable import DumpAnalysis
@testable import DumpForge
@testable import DumpMemory
import DumpFormat
import Testing
import TestSupport

/// The structure offsets the analysis reads and the forge writes, checked against Microsoft's
/// symbols instead of against each other: the 19041 kernel's ISF (and any other ISF placed in
/// ../shared/fixtures/isf) and the per-build document in ../shared/docs.
@Suite struct SymbolOffsetOracleTests {
    /// A constant of ours and where the symbols say it is.
    struct Claim {
        var ours: UInt64
        var symbol: String
        var isSize = false
    }

    /// KernelLayout's fields and their ISF paths.
    static func analysisClaims(_ layout: KernelLayout) -> [String: Claim] {
        var claims: [String: Claim] = [
            "processDirectoryTableBase": Claim(ours: layout.processDirectoryTableBase, symbol: "_EPROCESS.Pcb.DirectoryTableBase"),
            "processUniqueId": Claim(ours: layout.processUniqueId, symbol: "_EPROCESS.UniqueProcessId"),
            "processActiveLinks": Claim(ours: layout.processActiveLinks, symbol: "_EPROCESS.ActiveProcessLinks"),
            "processParentId": Claim(ours: layout.processParentId, symbol: "_EPROCESS.InheritedFromUniqueProcessId"),
            "threadStackLimit": Claim(ours: layout.threadStackLimit, symbol: "_KTHREAD.StackLimit"),
            "threadStackBase": Claim(ours: layout.threadStackBase, symbol: "_KTHREAD.StackBase"),
            "threadKernelStack": Claim(ours: layout.threadKernelStack, symbol: "_KTHREAD.KernelStack"),
            "threadTrapFrame": Claim(ours: layout.threadTrapFrame, symbol: "_KTHREAD.TrapFrame"),
            "threadState": Claim(ours: layout.threadState, symbol: "_KTHREAD.State"),
            "threadApcProcess": Claim(ours: layout.threadApcProcess, symbol: "_KTHREAD.ApcState.Process"),
            "prcbCurrentThread": Claim(ours: layout.prcbCurrentThread, symbol: "_KPRCB.CurrentThread"),
            "prcbIdleThread": Claim(ours: layout.prcbIdleThread, symbol: "_KPRCB.IdleThread"),
            "prcbContextFrame": Claim(ours: layout.prcbContextFrame, symbol: "_KPRCB.ProcessorState.ContextFrame"),
        ]
        if let value = layout.processImageFileName { claims["processImageFileName"] = Claim(ours: value, symbol: "_EPROCESS.ImageFileName") }
        if let value = layout.processThreadListHead { claims["processThreadListHead"] = Claim(ours: value, symbol: "_EPROCESS.ThreadListHead") }
        if let value = layout.threadCid { claims["threadCid"] = Claim(ours: value, symbol: "_ETHREAD.Cid") }
        if let value = layout.threadListEntry { claims["threadListEntry"] = Claim(ours: value, symbol: "_ETHREAD.ThreadListEntry") }
        if let value = layout.prcbTimerTable { claims["prcbTimerTable"] = Claim(ours: value, symbol: "_KPRCB.TimerTable") }
        return claims
    }

    /// Layout19041's constants (what the forge writes) and their ISF paths.
    static let forgeClaims: [String: Claim] = {
        typealias L = Layout19041
        func at(_ value: Int, _ symbol: String) -> Claim { Claim(ours: UInt64(value), symbol: symbol) }
        func size(_ value: Int, _ type: String) -> Claim { Claim(ours: UInt64(value), symbol: type, isSize: true) }
        return [
            "KPCR.size": size(L.KPCR.size, "_KPCR"),
            "KPCR.selfPointer": at(L.KPCR.selfPointer, "_KPCR.Self"),
            "KPCR.currentPrcb": at(L.KPCR.currentPrcb, "_KPCR.CurrentPrcb"),
            "KPCR.prcb": at(L.KPCR.prcb, "_KPCR.Prcb"),
            "KPRCB.size": size(L.KPRCB.size, "_KPRCB"),
            "KPRCB.currentThread": at(L.KPRCB.currentThread, "_KPRCB.CurrentThread"),
            "KPRCB.nextThread": at(L.KPRCB.nextThread, "_KPRCB.NextThread"),
            "KPRCB.idleThread": at(L.KPRCB.idleThread, "_KPRCB.IdleThread"),
            "KPRCB.number": at(L.KPRCB.number, "_KPRCB.Number"),
            "KPRCB.cpuType": at(L.KPRCB.cpuType, "_KPRCB.CpuType"),
            "KPRCB.mhz": at(L.KPRCB.mhz, "_KPRCB.MHz"),
            "KPRCB.processorState": at(L.KPRCB.processorState, "_KPRCB.ProcessorState"),
            "KPRCB.specialRegistersCr3": at(L.KPRCB.specialRegistersCr3, "_KPRCB.ProcessorState.SpecialRegisters.Cr3"),
            "KPRCB.contextFrame": at(L.KPRCB.contextFrame, "_KPRCB.ProcessorState.ContextFrame"),
            "KPRCB.dpcStack": at(L.KPRCB.dpcStack, "_KPRCB.DpcStack"),
            "KPRCB.timerTable": at(L.KPRCB.timerTable, "_KPRCB.TimerTable"),
            "KPRCB.vendorString": at(L.KPRCB.vendorString, "_KPRCB.VendorString"),
            "KPRCB.context": at(L.KPRCB.context, "_KPRCB.Context"),
            "KPRCB.isrStack": at(L.KPRCB.isrStack, "_KPRCB.IsrStack"),
            "KTimerTable.entries": at(L.KTimerTable.entries, "_KTIMER_TABLE.TimerEntries"),
            "KTimerTable.entrySize": size(L.KTimerTable.entrySize, "_KTIMER_TABLE_ENTRY"),
            "KTimerTable.entryList": at(L.KTimerTable.entryList, "_KTIMER_TABLE_ENTRY.Entry"),
            "KTHREAD.initialStack": at(L.KTHREAD.initialStack, "_KTHREAD.InitialStack"),
            "KTHREAD.stackLimit": at(L.KTHREAD.stackLimit, "_KTHREAD.StackLimit"),
            "KTHREAD.stackBase": at(L.KTHREAD.stackBase, "_KTHREAD.StackBase"),
            "KTHREAD.kernelStack": at(L.KTHREAD.kernelStack, "_KTHREAD.KernelStack"),
            "KTHREAD.trapFrame": at(L.KTHREAD.trapFrame, "_KTHREAD.TrapFrame"),
            "KTHREAD.apcStateProcess": at(L.KTHREAD.apcStateProcess, "_KTHREAD.ApcState.Process"),
            "KTHREAD.teb": at(L.KTHREAD.teb, "_KTHREAD.Teb"),
            "KTHREAD.state": at(L.KTHREAD.state, "_KTHREAD.State"),
            "KTHREAD.nextProcessor": at(L.KTHREAD.nextProcessor, "_KTHREAD.NextProcessor"),
            "KTHREAD.process": at(L.KTHREAD.process, "_KTHREAD.Process"),
            "KTHREAD.waitReason": at(L.KTHREAD.waitReason, "_KTHREAD.WaitReason"),
            "KTHREAD.threadListEntry": at(L.KTHREAD.threadListEntry, "_KTHREAD.ThreadListEntry"),
            "ETHREAD.size": size(L.ETHREAD.size, "_ETHREAD"),
            "ETHREAD.startAddress": at(L.ETHREAD.startAddress, "_ETHREAD.StartAddress"),
            "ETHREAD.cid": at(L.ETHREAD.cid, "_ETHREAD.Cid"),
            "ETHREAD.threadListEntry": at(L.ETHREAD.threadListEntry, "_ETHREAD.ThreadListEntry"),
            "EPROCESS.size": size(L.EPROCESS.size, "_EPROCESS"),
            "EPROCESS.directoryTableBase": at(L.EPROCESS.directoryTableBase, "_EPROCESS.Pcb.DirectoryTableBase"),
            "EPROCESS.kprocessThreadListHead": at(L.EPROCESS.kprocessThreadListHead, "_EPROCESS.Pcb.ThreadListHead"),
            "EPROCESS.userDirectoryTableBase": at(L.EPROCESS.userDirectoryTableBase, "_EPROCESS.Pcb.UserDirectoryTableBase"),
            "EPROCESS.uniqueProcessId": at(L.EPROCESS.uniqueProcessId, "_EPROCESS.UniqueProcessId"),
            "EPROCESS.activeProcessLinks": at(L.EPROCESS.activeProcessLinks, "_EPROCESS.ActiveProcessLinks"),
            "EPROCESS.createTime": at(L.EPROCESS.createTime, "_EPROCESS.CreateTime"),
            "EPROCESS.inheritedFromUniqueProcessId": at(L.EPROCESS.inheritedFromUniqueProcessId, "_EPROCESS.InheritedFromUniqueProcessId"),
            "EPROCESS.peb": at(L.EPROCESS.peb, "_EPROCESS.Peb"),
            "EPROCESS.imageFileName": at(L.EPROCESS.imageFileName, "_EPROCESS.ImageFileName"),
            "EPROCESS.threadListHead": at(L.EPROCESS.threadListHead, "_EPROCESS.ThreadListHead"),
            "EPROCESS.activeThreads": at(L.EPROCESS.activeThreads, "_EPROCESS.ActiveThreads"),
            "KLDR.size": size(L.KLDR.size, "_KLDR_DATA_TABLE_ENTRY"),
            "KLDR.exceptionTable": at(L.KLDR.exceptionTable, "_KLDR_DATA_TABLE_ENTRY.ExceptionTable"),
            "KLDR.exceptionTableSize": at(L.KLDR.exceptionTableSize, "_KLDR_DATA_TABLE_ENTRY.ExceptionTableSize"),
            "KLDR.dllBase": at(L.KLDR.dllBase, "_KLDR_DATA_TABLE_ENTRY.DllBase"),
            "KLDR.entryPoint": at(L.KLDR.entryPoint, "_KLDR_DATA_TABLE_ENTRY.EntryPoint"),
            "KLDR.sizeOfImage": at(L.KLDR.sizeOfImage, "_KLDR_DATA_TABLE_ENTRY.SizeOfImage"),
            "KLDR.fullDllName": at(L.KLDR.fullDllName, "_KLDR_DATA_TABLE_ENTRY.FullDllName"),
            "KLDR.baseDllName": at(L.KLDR.baseDllName, "_KLDR_DATA_TABLE_ENTRY.BaseDllName"),
            "KLDR.flags": at(L.KLDR.flags, "_KLDR_DATA_TABLE_ENTRY.Flags"),
            "KLDR.loadCount": at(L.KLDR.loadCount, "_KLDR_DATA_TABLE_ENTRY.LoadCount"),
            "KLDR.checkSum": at(L.KLDR.checkSum, "_KLDR_DATA_TABLE_ENTRY.CheckSum"),
            "KLDR.timeDateStamp": at(L.KLDR.timeDateStamp, "_KLDR_DATA_TABLE_ENTRY.TimeDateStamp"),
        ]
    }()

    /// What each structure-offset field of KDDEBUGGER_DATA64 the forge fills stands for
    /// (wdbgexts.h names; KDBG itself is not in the PDB). SizeKDPC_STACK_FRAME (0x358) has no
    /// structure in the symbols and is left out.
    static let debuggerDataFields: [Int: (name: String, symbol: String, isSize: Bool)] = [
        0x298: ("OffsetKThreadNextProcessor", "_KTHREAD.NextProcessor", false),
        0x29A: ("OffsetKThreadTeb", "_KTHREAD.Teb", false),
        0x29C: ("OffsetKThreadKernelStack", "_KTHREAD.KernelStack", false),
        0x29E: ("OffsetKThreadInitialStack", "_KTHREAD.InitialStack", false),
        0x2A0: ("OffsetKThreadApcProcess", "_KTHREAD.ApcState.Process", false),
        0x2A2: ("OffsetKThreadState", "_KTHREAD.State", false),
        0x2A8: ("SizeEProcess", "_EPROCESS", true),
        0x2AA: ("OffsetEprocessPeb", "_EPROCESS.Peb", false),
        0x2AC: ("OffsetEprocessParentCID", "_EPROCESS.InheritedFromUniqueProcessId", false),
        0x2AE: ("OffsetEprocessDirectoryTableBase", "_EPROCESS.Pcb.DirectoryTableBase", false),
        0x2B0: ("SizePrcb", "_KPRCB", true),
        0x2B2: ("OffsetPrcbDpcRoutine", "_KPRCB.DpcRoutineActive", false),
        0x2B4: ("OffsetPrcbCurrentThread", "_KPRCB.CurrentThread", false),
        0x2B6: ("OffsetPrcbMhz", "_KPRCB.MHz", false),
        0x2B8: ("OffsetPrcbCpuType", "_KPRCB.CpuType", false),
        0x2BA: ("OffsetPrcbVendorString", "_KPRCB.VendorString", false),
        0x2BC: ("OffsetPrcbProcStateContext", "_KPRCB.ProcessorState.ContextFrame", false),
        0x2BE: ("OffsetPrcbNumber", "_KPRCB.Number", false),
        0x2C0: ("SizeEThread", "_ETHREAD", true),
        0x2E0: ("SizePcr", "_KPCR", true),
        0x2E4: ("OffsetPcrCurrentPrcb", "_KPCR.CurrentPrcb", false),
        0x2E6: ("OffsetPcrContainedPrcb", "_KPCR.Prcb", false),
        0x2F2: ("OffsetPrcbProcStateSpecialReg", "_KPRCB.ProcessorState.SpecialRegisters", false),
        0x338: ("OffsetPrcbContext", "_KPRCB.Context", false),
        0x340: ("OffsetKThreadStackLimit", "_KTHREAD.StackLimit", false),
        0x344: ("OffsetKThreadStackBase", "_KTHREAD.StackBase", false),
        0x348: ("OffsetKThreadQueueListEntry", "_KTHREAD.QueueListEntry", false),
        0x34C: ("OffsetEThreadIrpList", "_ETHREAD.IrpList", false),
        0x350: ("OffsetPrcbIdleThread", "_KPRCB.IdleThread", false),
        0x354: ("OffsetPrcbDpcStack", "_KPRCB.DpcStack", false),
        0x356: ("OffsetPrcbIsrStack", "_KPRCB.IsrStack", false),
        0x35C: ("OffsetKThreadWaitReason", "_KTHREAD.WaitReason", false),
    ]

    static func value(_ claim: Claim, in isf: SymbolFileISF) throws -> UInt64 {
        claim.isSize ? try isf.size(of: claim.symbol) : try isf.offset(of: claim.symbol)
    }

    /// Runs `check` on every ISF beside the repository, or says why nothing was checked.
    static func eachSymbolFile(_ check: (SymbolFileISF) throws -> Void) throws {
        guard let files = try SymbolFileISF.all(), !files.isEmpty else {
            print("note: ../shared/fixtures/isf is absent or empty; skipping the symbol-file offset checks")
            return
        }
        for isf in files { try check(isf) }
    }

    @Test func theAnalysisTablesAgreeWithEverySymbolFile() throws {
        try Self.eachSymbolFile { isf in
            let build = try #require(isf.build, "\(isf.path): name it ntkrnlmp-BUILD.REVISION-…json.xz so the test knows its build")
            let layout = try #require(KernelLayout.known(build: build, debuggerData: nil), "KernelLayout has no table for build \(build), for which \(isf.path) is given")
            for (field, claim) in Self.analysisClaims(layout).sorted(by: { $0.key < $1.key }) {
                let symbol = try Self.value(claim, in: isf)
                #expect(claim.ours == symbol, "build \(build) KernelLayout.\(field) = 0x\(String(claim.ours, radix: 16)), but \(claim.symbol) is at 0x\(String(symbol, radix: 16))")
            }
            let timerLists = try isf.arrayCounts("_KTIMER_TABLE.TimerEntries").reduce(1, *)
            #expect(layout.timerListCount == timerLists, "build \(build): \(timerLists) timer lists in _KTIMER_TABLE.TimerEntries")
        }
    }

    @Test func theForgeWritesWhatThe19041SymbolsSay() throws {
        try Self.eachSymbolFile { isf in
            guard isf.build == 19041 else { return }
            for (constant, claim) in Self.forgeClaims.sorted(by: { $0.key < $1.key }) {
                let symbol = try Self.value(claim, in: isf)
                #expect(claim.ours == symbol, "Layout19041.\(constant) = 0x\(String(claim.ours, radix: 16)), but \(claim.symbol) is 0x\(String(symbol, radix: 16))")
            }
            let timerLists = try isf.arrayCounts("_KTIMER_TABLE.TimerEntries").reduce(1, *)
            #expect(Layout19041.KTimerTable.entryCount == timerLists)
            // The KDDEBUGGER_DATA64 the forge writes states offsets too; each must be the symbols'.
            let written = Layout19041.KDBG.offsets16.map { ($0.0, UInt64($0.1)) } + Layout19041.KDBG.offsets32.map { ($0.0, UInt64($0.1)) }
            var checked = 0
            for (kdbgOffset, value) in written {
                guard let field = Self.debuggerDataFields[kdbgOffset] else { continue }
                let symbol = try field.isSize ? isf.size(of: field.symbol) : isf.offset(of: field.symbol)
                #expect(value == symbol, "KDBG+0x\(String(kdbgOffset, radix: 16)) \(field.name) = 0x\(String(value, radix: 16)), but \(field.symbol) is 0x\(String(symbol, radix: 16))")
                checked += 1
            }
            #expect(checked == written.count - 1, "every KDBG offset but SizeKDPC_STACK_FRAME has a symbol to check")
        }
    }

    /// The names of kernel-offsets-by-build.txt for KernelLayout's fields.
    static let documentNames: [String: String] = [
        "processDirectoryTableBase": "KPROCESS.DirectoryTableBase", "processUniqueId": "EPROCESS.UniqueProcessId",
        "processActiveLinks": "EPROCESS.ActiveProcessLinks", "processParentId": "EPROCESS.InheritedFromUniqueProcessId",
        "processImageFileName": "EPROCESS.ImageFileName", "processThreadListHead": "EPROCESS.ThreadListHead",
        "threadStackLimit": "KTHREAD.StackLimit", "threadStackBase": "KTHREAD.StackBase",
        "threadKernelStack": "KTHREAD.KernelStack", "threadTrapFrame": "KTHREAD.TrapFrame", "threadState": "KTHREAD.State",
        "threadCid": "ETHREAD.Cid", "threadListEntry": "ETHREAD.ThreadListEntry", "prcbCurrentThread": "KPRCB.CurrentThread",
        "prcbContextFrame": "KPRCB.ProcessorState.ContextFrame", "prcbTimerTable": "KPRCB.TimerTable",
    ]

    /// Every build the document lists that has a table: each of the table's offsets must be the
    /// one every listed version of that build has.
    @Test func everyTableRowAgreesWithTheOffsetsDocument() throws {
        guard let document = try OffsetTableDocument.load() else {
            print("note: ../shared/docs is absent; skipping the per-build offset checks")
            return
        }
        var buildsChecked: [UInt32] = []
        for (build, fields) in document.builds.sorted(by: { $0.key < $1.key }) {
            guard let layout = KernelLayout.known(build: build, debuggerData: nil) else { continue }
            buildsChecked.append(build)
            let claims = Self.analysisClaims(layout)
            for (field, name) in Self.documentNames.sorted(by: { $0.key < $1.key }) {
                let claim = try #require(claims[field])
                let listed = try #require(fields[name], "build \(build) lists no \(name)")
                #expect(!listed.isEmpty && listed.allSatisfy { $0 == claim.ours }, "build \(build) KernelLayout.\(field) = 0x\(String(claim.ours, radix: 16)); the document has \(name) \(listed.map { "0x" + String($0, radix: 16) })")
            }
            let tableSize = try #require(fields["KTIMER_TABLE.size"]?.first), entries = try #require(fields["KTIMER_TABLE.TimerEntries"]?.first)
            let entrySize = try #require(fields["KTIMER_TABLE_ENTRY.size"]?.first)
            #expect(UInt64(layout.timerListCount) == (tableSize - entries) / entrySize, "build \(build): KTIMER_TABLE of 0x\(String(tableSize, radix: 16)) bytes")
        }
        // Every build the document lists has a table; each must have been met.
        #expect(buildsChecked == [10240, 10586, 14393, 15063, 16299, 17134, 17763, 18326, 18362, 19041, 20348, 22000, 22621, 22631, 26100])
    }

    /// The forge's own per-build rows (BuildLayout), against the same document.
    @Test func theForgesBuildRowsAgreeWithTheOffsetsDocument() throws {
        guard let document = try OffsetTableDocument.load() else {
            print("note: ../shared/docs is absent; skipping the per-build offset checks")
            return
        }
        #expect(BuildLayout.rows.map(\.build) == document.builds.keys.sorted())
        for row in BuildLayout.rows {
            let fields = try #require(document.builds[row.build])
            let claims: [(String, Int?)] = [
                ("EPROCESS.size", row.eprocessSize), ("EPROCESS.UniqueProcessId", row.uniqueProcessId), ("EPROCESS.ActiveProcessLinks", row.activeProcessLinks),
                ("EPROCESS.InheritedFromUniqueProcessId", row.parentId), ("EPROCESS.Peb", row.peb), ("EPROCESS.ImageFileName", row.imageFileName),
                ("EPROCESS.ThreadListHead", row.threadListHead), ("KPROCESS.UserDirectoryTableBase", row.userDirectoryTableBase),
                ("ETHREAD.size", row.ethreadSize), ("ETHREAD.Cid", row.cid), ("ETHREAD.ThreadListEntry", row.threadListEntry),
                ("KPRCB.size", row.kprcbSize), ("KPRCB.ProcessorState", row.processorState), ("KPRCB.ProcessorState.ContextFrame", row.contextFrame),
                ("KPRCB.ProcessorState.SpecialRegisters.Cr3", row.cr3), ("KPRCB.Context", row.context), ("KPRCB.TimerTable", row.timerTable),
            ]
            for (name, ours) in claims {
                let listed = try #require(fields[name], "build \(row.build) lists no \(name)")
                // Where a build's versions differ (EPROCESS.size), the forge writes the first.
                #expect(ours.map { listed.first == UInt64($0) } ?? listed.isEmpty, "build \(row.build) \(name): forge 0x\(String(ours ?? 0, radix: 16)), document \(listed)")
            }
        }
    }

    /// Builds without a table get `KernelLayout.discovered`, which relies on offsets no table
    /// gives (KTHREAD stack fields, trap frame, state, KPRCB current thread, and ActiveProcessLinks
    /// right after UniqueProcessId). KDBG overrides several, but a dump's KDBG may be encoded or
    /// absent, so the fixed values must hold for every build the document lists.
    @Test func theInvariantsDiscoveryReliesOnHoldInEveryDocumentedBuild() throws {
        guard let document = try OffsetTableDocument.load() else {
            print("note: ../shared/docs is absent; skipping the per-build offset checks")
            return
        }
        // A KDBG whose offset fields are all zero, so nothing overrides the fixed values.
        var blank = [UInt8](repeating: 0, count: 0x380)
        blank.replaceSubrange(0x10..<0x18, with: [0x4B, 0x44, 0x42, 0x47, 0x80, 0x03, 0, 0])  // "KDBG", Size 0x380
        let fixed = KernelLayout.discovered(processUniqueId: 0, imageFileName: nil, debuggerData: try DebuggerData(bytes: blank))
        let invariants = ["processDirectoryTableBase", "threadStackLimit", "threadStackBase", "threadKernelStack", "threadTrapFrame", "threadState", "prcbCurrentThread"]
        #expect(document.builds.count >= 15, "the document lists \(document.builds.count) builds")
        for (build, fields) in document.builds.sorted(by: { $0.key < $1.key }) {
            let claims = Self.analysisClaims(fixed)
            for field in invariants {
                let name = try #require(Self.documentNames[field]), ours = try #require(claims[field]).ours
                #expect(fields[name] == [ours], "build \(build): \(name) is \(fields[name] ?? []), discovery assumes 0x\(String(ours, radix: 16))")
            }
            let id = try #require(fields["EPROCESS.UniqueProcessId"]?.first), links = try #require(fields["EPROCESS.ActiveProcessLinks"]?.first)
            #expect(links == id + 8, "build \(build): ActiveProcessLinks 0x\(String(links, radix: 16)) is not UniqueProcessId + 8")
        }
    }

    /// The bits the translator reads in non-present entries, against the 19041 symbols'
    /// `_MMPTE_TRANSITION`, `_MMPTE_SOFTWARE` and `_MMPTE_PROTOTYPE`.
    @Test func nonPresentEntryBitsAreTheSymbols() throws {
        try Self.eachSymbolFile { isf in
            func bits(_ field: String) throws -> UInt64 {
                let (position, length) = try isf.bitfield(field)
                return (length == 64 ? ~0 : (1 << UInt64(length)) - 1) << UInt64(position)
            }
            let swizzle = InvalidEntrySwizzle(highPhysicalBit: nil, swizzleBit: nil)
            for type in ["_MMPTE_TRANSITION", "_MMPTE_SOFTWARE", "_MMPTE_PROTOTYPE"] {
                let swizzleBit = try bits(type + ".SwizzleBit"), valid = try bits(type + ".Valid"), prototype = try bits(type + ".Prototype")
                #expect(swizzleBit == swizzle.swizzleBit, "\(type).SwizzleBit")
                #expect(valid == 1, "\(type).Valid")
                #expect(prototype == 1 << 10, "\(type).Prototype")
            }
            let transition = try bits("_MMPTE_TRANSITION.Transition"), softwareTransition = try bits("_MMPTE_SOFTWARE.Transition")
            let frame = try bits("_MMPTE_TRANSITION.PageFrameNumber"), pageFile = try bits("_MMPTE_SOFTWARE.PageFileHigh")
            #expect(transition == 1 << 11 && softwareTransition == 1 << 11)
            #expect(frame == X64AddressSpace.transitionFrameMask)
            #expect(pageFile == 0xFFFF_FFFF_0000_0000, "the translator's page-file test is entry >> 32")
        }
    }
}
