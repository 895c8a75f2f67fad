/// A kdump-compressed ("diskdump") file of a virtual machine's physical memory, as QEMU's
/// `dump-guest-memory` writes it with `format: kdump-zlib|kdump-lzo|kdump-snappy` (and
/// `virsh dump --memory-only --format kdump-…`). Each page is compressed on its own, so any page
/// can be read without the others, and zero pages share one stored copy.
///
/// The file is a sequence of blocks of `block_size` bytes (the guest page size, 4 KiB on x86):
///
///     block 0            disk_dump_header: "KDUMP   ", header_version at 8, utsname at 12,
///                        timestamp at 408 (QEMU leaves it 0), block_size at 428,
///                        sub_hdr_size at 432, bitmap_blocks at 436, max_mapnr at 440,
///                        nr_cpus at 460
///     block 1 …          kdump_sub_header (sub_hdr_size blocks): offset_note at 48, size_note
///                        at 56 (the same vCPU notes as an ELF core's PT_NOTE), max_mapnr_64 at
///                        96 from header_version 6; the notes themselves follow it
///     then               bitmap_blocks blocks: the first half marks the guest's RAM, the
///                        second half the pages stored (one bit per PFN)
///     then               page_desc per stored page, in PFN order (24 bytes: data offset i64,
///                        size u32, flags u32, page_flags u64); flags 1 zlib, 2 LZO, 4 snappy,
///                        0 stored as is (size = block_size)
///     then               page data
///
/// QEMU's kdump-zlib, kdump-lzo and kdump-snappy (every version) and makedumpfile `-F` write it
/// "flattened", as a pipe can carry it: a 4 KiB header ("makedumpfile", type 1, version 1,
/// big-endian) and then chunks, each a big-endian (offset, size) pair and `size` bytes that
/// belong at `offset` of the file above, ended by (-1, -1). QEMU 8.2's kdump-raw-* formats and
/// `makedumpfile -R` write the file in place; here a flattened file's chunks are indexed at
/// open, so either is read without rewriting it.
public struct KdumpFile: Sendable {
    /// How a page is stored.
    public enum Compression: Sendable, Equatable {
        case none, zlib, lzo, snappy
        /// A method this reader lacks (zstd, 0x20, and any future one), by its flag.
        case unsupported(UInt32)
    }

    /// Where page `n`'s bytes are, in the unflattened file's offsets.
    public struct PageDescriptor: Sendable, Equatable {
        public var offset: UInt64
        public var size: UInt32
        public var compression: Compression
    }

    /// A chunk of a flattened file: `size` bytes of the unflattened file at `offset`, stored at
    /// `fileOffset`.
    struct Chunk: Sendable {
        var offset: UInt64
        var size: UInt64
        var fileOffset: UInt64
    }

    public static let descriptorSize: UInt64 = 24
    /// Notes beyond this size are corruption (a vCPU's notes are under 2 KiB).
    static let maximumNoteBytes: UInt64 = 1 << 20
    /// Pages beyond this (16 TiB of RAM, a 512 MiB bitmap held in memory) are not read.
    static let pfnLimit: UInt64 = 1 << 32

    public let source: ByteSource
    /// nil for a file in place; the chunk index (sorted by offset) for a flattened one.
    let chunks: [Chunk]?
    public let headerVersion: UInt32
    public let blockSize: UInt64
    /// Pages the bitmaps describe (PFN 0 ..< pageCount).
    public let pageCount: UInt64
    /// The stored-pages bitmap, one bit per PFN, as 64-bit words.
    public let storedBitmap: [UInt64]
    /// Unflattened offset of page descriptor 0.
    public let descriptorsOffset: UInt64
    public let cpus: [ElfCore.CPUState]
    public let notes: [String]

    public var isFlattened: Bool { chunks != nil }

    /// Whether `source` starts like a kdump-compressed file, in place or flattened.
    public static func looksLikeKdump(_ source: ByteSource) -> Bool {
        guard let head = try? source.bytes(at: 0, count: 16) else { return false }
        return head.starts(with: Array("KDUMP   ".utf8)) || head == Array("makedumpfile".utf8) + [0, 0, 0, 0]
    }

    public init(parsing source: ByteSource) throws {
        guard Self.looksLikeKdump(source) else {
            throw DumpError(.notADump, "not a kdump-compressed file (no \"KDUMP   \" or flattened \"makedumpfile\" header)", offset: 0)
        }
        var notes: [String] = []
        self.source = source
        chunks = try source.bytes(at: 0, count: 5) == Array("KDUMP".utf8) ? nil : Self.flattenedChunks(source, notes: &notes)
        let view = View(source: source, chunks: chunks)

        let header = try view.bytes(at: 0, count: 464, "the disk_dump_header")
        func u32(_ bytes: [UInt8], _ at: Int) -> UInt64 { bytes.littleEndian(at: at, width: 4) }
        headerVersion = UInt32(u32(header, 8))
        blockSize = u32(header, 428)
        // Pages are indexed as x86's 4 KiB frames; another page size is another architecture.
        guard blockSize == 0x1000 else {
            throw DumpError(.unsupported, "the kdump file's block size is \(blockSize); x86 guests with 4 KiB pages are read", offset: 428)
        }
        let subHeaderBlocks = u32(header, 432), bitmapBlocks = u32(header, 436)
        let subHeader = try view.bytes(at: blockSize, count: headerVersion >= 6 ? 104 : 64, "the kdump_sub_header")
        let u64 = { (at: Int) in subHeader.littleEndian(at: at, width: 8) }
        var pageCount = headerVersion >= 6 && u64(96) != 0 ? u64(96) : u32(header, 440)

        // Both bitmaps take bitmap_blocks in all; the stored-pages one is the second half.
        let bitmapStart = try Checked.multiply(try Checked.add(1, subHeaderBlocks, "the kdump sub-header's size"), blockSize, "the kdump bitmap's offset")
        let bitmapBytes = try Checked.multiply(bitmapBlocks, blockSize, "the kdump bitmaps' size") / 2
        if pageCount > bitmapBytes * 8 {
            notes.append("the kdump header counts \(pageCount) pages but its bitmap holds \(bitmapBytes * 8); pages past the bitmap are not read")
            pageCount = bitmapBytes * 8
        }
        guard pageCount <= Self.pfnLimit else {
            throw DumpError(.unsupported, "the kdump bitmap describes 0x\(hex(pageCount)) pages (over 16 TiB of RAM), which is not read", offset: 436)
        }
        self.pageCount = pageCount
        let words = (pageCount + 63) / 64
        let bitmap = try view.bytes(at: try Checked.add(bitmapStart, bitmapBytes, "the kdump stored-pages bitmap"), count: words * 8, "the kdump stored-pages bitmap")
        var stored = (0..<Int(words)).map { bitmap.littleEndian(at: 8 * $0, width: 8) }
        if pageCount % 64 != 0, !stored.isEmpty { stored[stored.count - 1] &= UInt64.max >> (64 - pageCount % 64) }
        storedBitmap = stored
        descriptorsOffset = try Checked.add(bitmapStart, try Checked.multiply(bitmapBlocks, blockSize, "the kdump bitmaps' size"), "the kdump page descriptors' offset")

        let noteOffset = u64(48), noteSize = u64(56)
        var cpus: [ElfCore.CPUState] = []
        if noteSize > Self.maximumNoteBytes {
            notes.append("the kdump sub-header claims \(noteSize) bytes of notes; its vCPU notes are not read")
        } else if noteSize > 0 {
            do {
                cpus = ElfCore.cpuStates(try view.bytes(at: noteOffset, count: noteSize, "the kdump notes"), notes: &notes)
            } catch {
                notes.append("the kdump notes (0x\(hex(noteSize)) bytes at 0x\(hex(noteOffset))) cannot be read: \(error); no vCPU registers")
            }
        }
        self.cpus = Array(cpus.prefix(ElfCore.maximumCPUs))
        self.notes = notes
    }

    /// The descriptor of the `index`-th stored page.
    public func descriptor(_ index: UInt64) throws -> PageDescriptor {
        let at = try Checked.add(descriptorsOffset, try Checked.multiply(index, Self.descriptorSize, "page descriptor \(index)"), "page descriptor \(index)")
        let bytes = try View(source: source, chunks: chunks).bytes(at: at, count: Self.descriptorSize, "page descriptor \(index)")
        let flags = UInt32(bytes.littleEndian(at: 12, width: 4))
        let compression: Compression = switch flags {
        case 0: .none
        case 1: .zlib
        case 2: .lzo
        case 4: .snappy
        default: .unsupported(flags)
        }
        return PageDescriptor(offset: bytes.littleEndian(at: 0, width: 8), size: UInt32(bytes.littleEndian(at: 8, width: 4)), compression: compression)
    }

    /// The stored bytes a descriptor names: the file offset when they lie in one piece of the
    /// file (always, in place), else a copy.
    public func storedBytes(_ page: PageDescriptor) throws -> StoredBytes {
        let view = View(source: source, chunks: chunks)
        if let offset = view.contiguousOffset(page.offset, UInt64(page.size)) { return .inFile(offset) }
        return .copied(try view.bytes(at: page.offset, count: UInt64(page.size), "a compressed page"))
    }

    public enum StoredBytes: Sendable {
        case inFile(UInt64)
        case copied([UInt8])
    }

    /// Reads the unflattened file's bytes, in place or through the chunk index.
    struct View {
        let source: ByteSource
        let chunks: [Chunk]?

        /// File offset of `count` bytes at unflattened `offset`, when one chunk (or the file in
        /// place) holds them all.
        func contiguousOffset(_ offset: UInt64, _ count: UInt64) -> UInt64? {
            guard let chunks else { return source.contains(offset: offset, length: count) ? offset : nil }
            guard let chunk = Self.chunk(containing: offset, in: chunks), count <= chunk.size - (offset - chunk.offset) else { return nil }
            return chunk.fileOffset + (offset - chunk.offset)
        }

        func bytes(at offset: UInt64, count: UInt64, _ what: @autoclosure () -> String) throws -> [UInt8] {
            guard let chunks else { return try source.bytes(at: offset, count: count, what()) }
            var result: [UInt8] = []
            var at = offset
            let end = try Checked.add(offset, count, what())
            while at < end {
                guard let chunk = Self.chunk(containing: at, in: chunks) else {
                    throw DumpError(.truncated, "\(what()) needs bytes at 0x\(hex(at)) of the flattened file, which no chunk holds (the stream was cut short?)", offset: at)
                }
                let take = min(end - at, chunk.size - (at - chunk.offset))
                result += try source.bytes(at: chunk.fileOffset + (at - chunk.offset), count: take, what())
                at += take
            }
            return result
        }

        static func chunk(containing offset: UInt64, in chunks: [Chunk]) -> Chunk? {
            var low = 0, high = chunks.count  // first chunk whose offset > `offset`
            while low < high {
                let middle = (low + high) / 2
                if chunks[middle].offset <= offset { low = middle + 1 } else { high = middle }
            }
            guard low > 0, offset - chunks[low - 1].offset < chunks[low - 1].size else { return nil }
            return chunks[low - 1]
        }
    }

    /// Indexes a flattened file's chunks. A stream that stops early (a copy cut short, a
    /// writer that died) keeps the chunks before the break, with a note.
    static func flattenedChunks(_ source: ByteSource, notes: inout [String]) throws -> [Chunk] {
        func bigEndian(_ at: UInt64) throws -> UInt64 { UInt64(bigEndian: try source.u64(at: at, "a flattened chunk header")) }
        guard try bigEndian(16) == 1, try bigEndian(24) == 1 else {
            throw DumpError(.unsupported, "a flattened makedumpfile stream of type \(try bigEndian(16)), version \(try bigEndian(24)); type 1, version 1 is read", offset: 16)
        }
        var chunks: [Chunk] = []
        var at: UInt64 = 0x1000
        // Writers send whole structures and page batches (QEMU: 4–16 KiB); a file of tiny
        // chunks would make an index larger than itself.
        let maximumChunks = source.count / 256 + 64
        while true {
            guard source.contains(offset: at, length: 16) else {
                notes.append("the flattened stream ends at 0x\(hex(at)) without its end marker: the file was cut short; \(chunks.count) chunks were read")
                break
            }
            let offset = try bigEndian(at), size = try bigEndian(at + 8)
            if offset == UInt64.max && size == UInt64.max { break }  // (-1, -1)
            guard offset >> 63 == 0, size >> 63 == 0, offset <= UInt64.max - size else {
                throw DumpError(.corrupt, "a flattened chunk header at 0x\(hex(at)) claims 0x\(hex(size)) bytes at 0x\(hex(offset))", offset: at)
            }
            guard source.contains(offset: at + 16, length: size) else {
                notes.append("the flattened chunk at 0x\(hex(at)) runs past the end of the file: the file was cut short; \(chunks.count) chunks were read")
                break
            }
            if size > 0 { chunks.append(Chunk(offset: offset, size: size, fileOffset: at + 16)) }
            guard chunks.count <= maximumChunks else {
                throw DumpError(.unsupported, "the flattened file has more than \(maximumChunks) chunks for its \(source.count) bytes; rebuild it with `makedumpfile -R OUT < FILE`", offset: at)
            }
            at += 16 + size
        }
        chunks.sort { $0.offset < $1.offset }
        for (previous, next) in zip(chunks, chunks.dropFirst()) where previous.offset + previous.size > next.offset {
            throw DumpError(.unsupported, "flattened chunks at 0x\(hex(previous.offset)) and 0x\(hex(next.offset)) overlap (a later one rewrites an earlier one); "
                            + "rebuild the file in place with `makedumpfile -R OUT < FILE` and read that", offset: next.fileOffset)
        }
        return chunks
    }
}
