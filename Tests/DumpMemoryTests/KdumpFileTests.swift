import CPageCodecs
import DumpForge
import DumpFormat
import DumpMemory
import Testing
import TestSupport

/// kdump-compressed captures (`dump-guest-memory` with `format: kdump-zlib|kdump-lzo|
/// kdump-snappy`) as a source of physical memory. Debian's QEMU writes only kdump-zlib (the
/// real file is read in RealQEMUCaptureTests); LZO and snappy pages here are compressed by the
/// real liblzo2 and libsnappy into the forge's container, whose layout follows QEMU's writer
/// and shares no code with the reader.
@Suite struct KdumpFileTests {
    /// A page compressor from the real library, with the flag QEMU writes for it.
    enum Codec: String, CaseIterable {
        case zlib, lzo, snappy

        func compress(_ page: [UInt8]) -> (bytes: [UInt8], flag: UInt32)? {
            var output = [UInt8](repeating: 0, count: 2 * page.count + 64)
            var produced = 0
            switch self {
            case .zlib:
                var length = uLongf(output.count)
                guard compress2(&output, &length, page, uLong(page.count), 1) == Z_OK else { return nil }
                produced = Int(length)
            case .lzo:
                var work = [UInt8](repeating: 0, count: 1 << 17)  // LZO1X_1_MEM_COMPRESS
                var length = lzo_uint(output.count)
                guard lzo1x_1_compress(page, lzo_uint(page.count), &output, &length, &work) == LZO_E_OK else { return nil }
                produced = Int(length)
            case .snappy:
                var length = output.count
                let status = page.withUnsafeBufferPointer { input in
                    output.withUnsafeMutableBufferPointer { out in
                        input.withMemoryRebound(to: CChar.self) { input in
                            out.withMemoryRebound(to: CChar.self) { snappy_compress(input.baseAddress, page.count, $0.baseAddress, &length) }
                        }
                    }
                }
                guard status == SNAPPY_OK else { return nil }
                produced = length
            }
            return (Array(output.prefix(produced)), [Codec.zlib: 1, .lzo: 2, .snappy: 4][self]!)
        }
    }

    static func standard() -> DumpDescription {
        var description = DumpDescription.spinLockHang(kind: .full, layoutSeed: 5)
        description.memory = [0x1..<0x9F, 0x100..<0x4000]  // 64 MiB with the hole below 1 MiB
        return description
    }

    /// Each codec, in place and flattened, with zero pages stored (as QEMU does) or left out
    /// (makedumpfile's dump level 1): every page the full dump holds reads the same, the vCPU
    /// notes give each CPU's registers, and the kernel is found through CR3.
    @Test(arguments: Codec.allCases)
    func everyCodecAndLayoutReadsTheMachinesMemory(_ codec: Codec) throws {
        let description = Self.standard()
        let full = try KernelDump(source: Fixtures.source(Forge.dump(description)))
        let reference = try #require(full.physical)
        for (flattened, omitZeroPages) in [(false, false), (true, false), (false, true)] {
            let forged = Forge.kdump(description, KdumpOptions(compress: codec.compress, flattened: flattened, omitZeroPages: omitZeroPages))
            let source = Fixtures.source(forged)
            let file = try KdumpFile(parsing: source)
            let label = "\(codec) flattened \(flattened) zero pages left out \(omitZeroPages)"
            #expect(file.isFlattened == flattened && file.notes.isEmpty && file.cpus.count == description.processors, "\(label): \(file.notes)")
            #expect(file.cpus.first?.cr3 == forged.kernel.directoryTableBase && file.cpus.first?.gsBase == forged.kernel.processors.first?.kpcr)
            let memory = PhysicalMemory(kdump: file)
            for pfn in stride(from: UInt64(0), to: 0x4000, by: 0x1D) where description.memory.contains(where: { $0.contains(pfn) }) {
                let expected = try reference.read(physical: pfn << 12, count: 0x1000)
                if omitZeroPages && expected.allSatisfy({ $0 == 0 }) {
                    #expect(memory.locate(pfn: pfn) == .notInDump, "\(label): zero page 0x\(String(pfn, radix: 16)) left out")
                } else {
                    #expect(try memory.read(physical: pfn << 12, count: 0x1000) == expected, "\(label): page 0x\(String(pfn, radix: 16))")
                }
            }
            #expect(memory.locate(pfn: 0xA0) == .notInDump, "the hole below 1 MiB is not RAM")
            let dump = try KernelDump(source: source)
            #expect(dump.capture?.directoryTableBaseSource == "CR3 of vCPU 0" && dump.capture?.kernelBase == forged.kernel.kernelBase, "\(label): \(dump.notes)")
            #expect(dump.debuggerData.data?.kernBase == forged.kernel.kernelBase)
        }
    }

    /// Damaged files: cut anywhere, header fields and descriptors overwritten with absurd values,
    /// a page whose compressed bytes are garbage. A clear error, or a file whose bad pages fail
    /// to read with a reason, never a trap.
    @Test func damagedFilesNeverTrap() throws {
        var description = Self.standard()
        description.memory = [0x1..<0x9F, 0x100..<0x2000]
        var outcomes: [String: Int] = [:]
        for flattened in [false, true] {
            let bytes = Forge.kdump(description, KdumpOptions(compress: Codec.zlib.compress, flattened: flattened)).contiguousBytes()
            func attempt(_ damaged: [UInt8]) {
                let source = ByteSource(copying: damaged)
                do {
                    let memory = PhysicalMemory(kdump: try KdumpFile(parsing: source))
                    var failed = 0
                    for pfn in stride(from: UInt64(0x100), to: 0x2000, by: 61) where (try? memory.read(physical: pfn << 12, count: 0x1000)) == nil { failed += 1 }
                    outcomes[failed == 0 ? "read" : "read, some pages failing", default: 0] += 1
                } catch let error as DumpError {
                    outcomes[error.code.rawValue, default: 0] += 1
                } catch {
                    Issue.record("an error that is not a DumpError: \(error)")
                }
            }
            for cut in [0, 8, 0x100, 0x1000, 0x1010, 0x2000, 0x3000, bytes.count / 2, bytes.count - 20] { attempt(Array(bytes.prefix(cut))) }
            var random = SeededRandom(seed: flattened ? 21 : 22)
            for _ in 0..<300 {
                var damaged = bytes
                // Headers, the sub-header, the bitmaps and the first descriptors (and, flattened,
                // the chunk headers among them).
                let at = Int(random.below(0x6000)) & ~3
                let value: UInt32 = [0, 0xFFFF, 0xFFFF_FFFF, 0x7FFF_FFFF, UInt32(truncatingIfNeeded: random.next())][Int(random.below(5))]
                for index in 0..<4 where at + index < damaged.count { damaged[at + index] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(index))) }
                attempt(damaged)
            }
        }
        print("damaged kdump files: \(outcomes.sorted { $0.key < $1.key })")
        #expect(outcomes["read, some pages failing", default: 0] > 0 && outcomes["notADump", default: 0] > 0)

        // A stored page of its own (not the shared zero page) whose zlib bytes are garbage reads
        // as undecodable, naming the page; the other pages still read.
        let bytes = Forge.kdump(description, KdumpOptions(compress: Codec.zlib.compress)).contiguousBytes()
        let file = try KdumpFile(parsing: ByteSource(copying: bytes))
        let intact = PhysicalMemory(kdump: file)
        let pfn = try #require((UInt64(0x100)..<0x2000).first { pfn in
            (try? intact.read(physical: pfn << 12, count: 0x1000))?.contains { $0 != 0 } == true
        })
        guard case .compressed(let index) = intact.locate(pfn: pfn) else { Issue.record("PFN 0x\(String(pfn, radix: 16)) is not stored"); return }
        let descriptor = try file.descriptor(index)
        var damaged = bytes
        for index in 0..<Int(descriptor.size) { damaged[Int(descriptor.offset) + index] ^= 0x5A }
        let memory = PhysicalMemory(kdump: try KdumpFile(parsing: ByteSource(copying: damaged)))
        #expect(descriptor.compression == .zlib)
        #expect(throws: MemoryError(.undecodable, address: pfn << 12, physicalAddress: pfn << 12)) { try memory.read(physical: pfn << 12, count: 8) }
        #expect(try memory.read(physical: (pfn + 1) << 12, count: 0x1000) == intact.read(physical: (pfn + 1) << 12, count: 0x1000))
    }
}
