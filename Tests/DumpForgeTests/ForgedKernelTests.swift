import DumpFormat
import DumpForge
import DumpMemory
import Testing
import TestSupport

/// The forge's kernel structures, read back with offsets from the reference tables (written here,
/// independently of both the forge and the parser): KLDR entries, EPROCESS, KPRCB.
@Suite struct ForgedKernelTests {
    /// Follows Flink from `head` until it comes back, with a cap against cycles.
    static func walk(_ head: UInt64, in space: some KernelAddressSpace) throws -> [UInt64] {
        var entries: [UInt64] = []
        var link = try space.u64(head)
        while link != head, entries.count < 1000 {
            entries.append(link)
            link = try space.u64(link)
        }
        return entries
    }

    @Test func loadedModuleListMatchesTheImages() throws {
        let (forged, source) = Fixtures.standard(.full, seed: 4)
        let space = try KernelDump(source: source).kernelAddressSpace()
        let entries = try Self.walk(forged.kernel.psLoadedModuleList, in: space)
        #expect(entries.count == forged.kernel.modules.count)
        for (entry, module) in zip(entries, forged.kernel.modules) {
            #expect(try space.unicodeString(entry + 0x58) == module.name)  // BaseDllName
            #expect(try space.unicodeString(entry + 0x48) == module.path)  // FullDllName
            #expect(try space.u64(entry + 0x30) == module.base)  // DllBase
            #expect(try space.u32(entry + 0x40) == module.size)  // SizeOfImage
            #expect(try space.u32(entry + 0x9C) == module.timeDateStamp)  // TimeDateStamp
            #expect(try space.u32(entry + 0x78) == module.checkSum)
            // The image at DllBase is a PE32+ whose header agrees, and ExceptionTable points into it.
            let peOffset = UInt64(try space.u32(module.base + 0x3C))
            #expect(try space.read(module.base + peOffset, count: 4) == [0x50, 0x45, 0, 0])
            #expect(try space.u32(module.base + peOffset + 8) == module.timeDateStamp)
            #expect(try space.u32(module.base + peOffset + 0x18 + 0x38) == module.size)
            let pdata = try space.u64(entry + 0x10)
            #expect(pdata > module.base && pdata < module.base + UInt64(module.size))
            #expect(try space.u32(entry + 0x18) % 12 == 0)
        }
    }

    @Test func processListAndThreads() throws {
        let (forged, source) = Fixtures.standard(.bitmapFull, seed: 6)
        let space = try KernelDump(source: source).kernelAddressSpace()
        let links = try Self.walk(forged.kernel.psActiveProcessHead, in: space)
        let names = try links.map { link -> String in
            let eprocess = link - 0x448
            let bytes = try space.read(eprocess + 0x5A8, count: 15)
            return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        #expect(names == ["System", "smss.exe", "csrss.exe", "winlogon.exe", "explorer.exe"])
        for (link, process) in zip(links, forged.kernel.processes) {
            let eprocess = link - 0x448
            #expect(try space.u64(eprocess + 0x440) == process.processId)
            #expect(try space.u64(eprocess + 0x540) == process.parentId)
            #expect(try space.u64(eprocess + 0x28) == process.directoryTableBase)
            let threads = try Self.walk(eprocess + 0x5E0, in: space).map { $0 - 0x4E8 }
            #expect(threads == process.threads.map(\.ethread))
            for thread in threads {
                #expect(try space.u64(thread + 0x220) == eprocess)  // KTHREAD.Process
                #expect(try space.u64(thread + 0x478) == process.processId)  // Cid.UniqueProcess
            }
        }
    }

    @Test func processorsAndTheirContexts() throws {
        let (forged, source) = Fixtures.standard(.full, seed: 8)
        let space = try KernelDump(source: source).kernelAddressSpace()
        for (cpu, processor) in forged.kernel.processors.enumerated() {
            let kprcb = try space.u64(forged.kernel.kiProcessorBlock + 8 * UInt64(cpu))
            #expect(kprcb == processor.kprcb)
            #expect(try space.u32(kprcb + 0x24) == UInt32(cpu))  // Number
            #expect(try space.u64(kprcb + 0x8) == processor.currentThread)
            let context = try Context64(bytes: space.read(kprcb + 0x1F0, count: 0x4D0))  // ProcessorState.ContextFrame
            #expect(context.rip == processor.context.rip)
            #expect(context.rsp == processor.context.rsp)
            #expect(try space.u64(kprcb + 0x85C0) == kprcb + 0x1F0)  // Context points at it
            // An empty timer list head points at itself.
            let head = kprcb + 0x3940 + 0x200 + 8
            #expect(try space.u64(head) == head)
        }
        // CPU 1 has nothing described: it runs an idle thread in nt!KiIdleLoop.
        let idle = forged.kernel.processors[1].context
        #expect(idle.frames.first?.location.function == "KiIdleLoop")
    }
}
