@testable import DumpAnalysis
import DumpFormat
import Foundation
import Testing
import TestSupport

/// TimeDateStamp against a real linker: the Swift toolchain's clang and lld-link build a small
/// x64 image with and without /Brepro, and our reader must tell the build hash from the link
/// time by the image's own debug directory, as WinDbg does.
@Suite struct ReproducibleImageTests {
    /// Builds `driver.dll` from a one-function C file; nil (with a note, or a failure on CI)
    /// where the toolchain's clang or lld-link is missing.
    static func link(reproducible: Bool, in folder: String) throws -> [UInt8]? {
        guard let clang = Tools.find("clang"), let linker = Tools.find("lld-link") else {
            if Tools.isCI { Issue.record("clang or lld-link is missing; the Swift toolchain ships both") }
            else { print("note: clang or lld-link is absent; skipping the real-linker timestamp checks") }
            return nil
        }
        try "int DriverEntry(void *object, void *path) { return 0; }\n".write(toFile: folder + "/driver.c", atomically: true, encoding: .utf8)
        let compiled = try Tools.run(clang, ["--target=x86_64-pc-windows-msvc", "-c", folder + "/driver.c", "-o", folder + "/driver.obj"])
        try #require(compiled.status == 0, "clang exited with \(compiled.status)")
        let linked = try Tools.run(linker, ["/dll", "/noentry", "/debug", reproducible ? "/Brepro" : "/timestamp:\(Int(Date().timeIntervalSince1970))",
                                            "/out:" + folder + "/driver.dll", folder + "/driver.obj"])
        try #require(linked.status == 0, "lld-link exited with \(linked.status)")
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: folder + "/driver.dll")))
    }

    /// The file as a loader maps it: headers, then each section's raw data at its RVA.
    static func mapped(_ file: [UInt8]) -> [UInt8] {
        let pe = Int(PEBytes.u32(file, 0x3C))
        let optional = pe + 24
        let table = optional + Int(PEBytes.u16(file, pe + 20))
        var image = [UInt8](repeating: 0, count: Int(PEBytes.u32(file, optional + 56)))  // SizeOfImage
        let headers = Int(PEBytes.u32(file, optional + 60))
        image.replaceSubrange(0..<headers, with: file[0..<headers])
        for index in 0..<Int(PEBytes.u16(file, pe + 6)) {
            let header = table + 40 * index
            let rva = Int(PEBytes.u32(file, header + 12))
            let size = min(Int(PEBytes.u32(file, header + 16)), Int(PEBytes.u32(file, header + 8)))
            let raw = Int(PEBytes.u32(file, header + 20))
            image.replaceSubrange(rva..<rva + size, with: file[raw..<raw + size])
        }
        return image
    }

    @Test(arguments: [true, false])
    func theDebugDirectorySaysWhetherTimeDateStampIsADate(reproducible: Bool) throws {
        let folder = Fixtures.temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        guard let file = try Self.link(reproducible: reproducible, in: folder) else { return }
        let base: UInt64 = 0xFFFF_F806_1000_0000
        let memory = FlatMemory()
        memory.map(base, Self.mapped(file))
        let image = try PEImage(reading: memory, base: base)
        let types = try image.debugEntryTypes(in: memory)
        #expect(types.contains(2), "lld-link /debug writes a CodeView entry: \(types)")
        #expect(types.contains(PEImage.debugTypeReproducible) == reproducible, "\(types)")

        // As the analysis classifies it, the crash a day after the link.
        let crash = Int64(Date().timeIntervalSince1970) + 86_400
        let stamp = ImageTimestamp.of(image.timeDateStamp, imageAt: base, in: memory, crashTime: crash)
        if reproducible {
            #expect(stamp.meaning == .buildHash && stamp.date == nil, "\(stamp)")
        } else {
            #expect(stamp.meaning == .linkTime, "\(stamp)")
            #expect(stamp.date == FileTime.iso8601(unixSeconds: Int64(image.timeDateStamp)))
        }
    }
}
