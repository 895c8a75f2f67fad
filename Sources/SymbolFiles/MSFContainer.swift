/// The Multi-Stream Format that holds a PDB (LLVM's "The MSF File Format"): the file is cut
/// into blocks, and numbered streams are lists of blocks, listed by a stream directory that is
/// itself spread over blocks named by the block map.
///
///     superblock (at 0): magic "Microsoft C/C++ MSF 7.00\r\n\x1aDS\0\0\0" (32 bytes),
///       BlockSize, FreeBlockMapBlock, NumBlocks, NumDirectoryBytes, Unknown, BlockMapAddr
///     block map (block BlockMapAddr): the directory's block numbers
///     directory: NumStreams, StreamSizes[NumStreams], then each stream's block numbers
///
/// A stream size of 0xFFFFFFFF marks a deleted stream, read as empty. Every block number and
/// size is checked against the file, so a hostile PDB cannot make a read leave it.
public struct MSFContainer: Sendable {
    public static let magic: [UInt8] = Array("Microsoft C/C++ MSF 7.00\r\n".utf8) + [0x1A, 0x44, 0x53, 0, 0, 0]
    /// Streams and directory bytes beyond these are corruption (ntkrnlmp.pdb has about 400
    /// streams and a directory of a few KiB).
    static let maximumStreams = 1 << 20
    static let maximumDirectoryBytes = 1 << 26

    public let blockSize: Int
    let file: [UInt8]
    let streams: [(size: Int, blocks: [UInt32])]

    public var streamCount: Int { streams.count }

    public init(_ file: [UInt8]) throws {
        var header = ByteReader(file, name: "the PDB file")
        guard try header.bytes(32, "the MSF magic") == Self.magic else {
            throw SymbolFileError(.notASymbolFile, "the file does not start with the MSF 7.00 magic (\"Microsoft C/C++ MSF 7.00\"); older PDB 2.0 files are not read")
        }
        let blockSize = Int(try header.u32("the block size"))
        guard [512, 1024, 2048, 4096].contains(blockSize) else {
            throw SymbolFileError(.corrupt, "the MSF block size is \(blockSize); it must be 512, 1024, 2048 or 4096")
        }
        _ = try header.u32("the free block map block")
        let blockCount = Int(try header.u32("the block count"))
        let directoryBytes = Int(try header.u32("the directory size"))
        _ = try header.u32("the unknown superblock field")
        let blockMapAddress = Int(try header.u32("the block map address"))
        guard blockCount <= file.count / blockSize + 1 else {
            throw SymbolFileError(.corrupt, "the MSF claims \(blockCount) blocks of \(blockSize) bytes, but the file is only \(file.count) bytes")
        }
        guard directoryBytes <= Self.maximumDirectoryBytes else {
            throw SymbolFileError(.corrupt, "the MSF stream directory claims \(directoryBytes) bytes")
        }
        self.blockSize = blockSize
        self.file = file

        // The block map lists the directory's blocks; the directory lists the streams'.
        let directoryBlocks = (directoryBytes + blockSize - 1) / blockSize
        var blockMap = ByteReader(try Self.block(blockMapAddress, in: file, blockSize: blockSize, "the block map"), name: "the MSF block map")
        guard directoryBlocks * 4 <= blockSize else {
            throw SymbolFileError(.corrupt, "the MSF directory spans \(directoryBlocks) blocks, more than one block map block lists")
        }
        var directoryBytesRead: [UInt8] = []
        for _ in 0..<directoryBlocks {
            directoryBytesRead += try Self.block(Int(try blockMap.u32("a directory block number")), in: file, blockSize: blockSize, "a directory block")
        }
        var directory = ByteReader(Array(directoryBytesRead.prefix(directoryBytes)), name: "the MSF stream directory")
        let streamCount = Int(try directory.u32("the stream count"))
        guard streamCount <= Self.maximumStreams, streamCount * 4 <= directory.remaining else {
            throw SymbolFileError(.corrupt, "the MSF directory claims \(streamCount) streams in \(directoryBytes) bytes")
        }
        var sizes: [Int] = []
        for _ in 0..<streamCount {
            let size = try directory.u32("a stream size")
            sizes.append(size == 0xFFFF_FFFF ? 0 : Int(size))
        }
        // Every block belongs to one stream at most, so the streams together cannot claim more
        // blocks than the file has: this bounds what reading them allocates by the file's size.
        let claimed = sizes.reduce(0) { $0 + ($1 + blockSize - 1) / blockSize }
        guard claimed <= blockCount, claimed <= file.count / blockSize + 1 else {
            throw SymbolFileError(.corrupt, "the MSF streams claim \(claimed) blocks; the file has \(min(blockCount, file.count / blockSize + 1))")
        }
        var streams: [(size: Int, blocks: [UInt32])] = []
        for (index, size) in sizes.enumerated() {
            let count = (size + blockSize - 1) / blockSize
            guard count <= directory.remaining / 4 else {
                throw SymbolFileError(.truncated, "stream \(index) of \(size) bytes needs \(count) block numbers; the directory has \(directory.remaining / 4) left")
            }
            var blocks: [UInt32] = []
            blocks.reserveCapacity(count)
            for _ in 0..<count {
                let block = try directory.u32("a block number of stream \(index)")
                guard Int(block) < blockCount, Int(block) * blockSize < file.count else {
                    throw SymbolFileError(.corrupt, "stream \(index) names block \(block); the file has \(min(blockCount, file.count / blockSize)) blocks")
                }
                blocks.append(block)
            }
            streams.append((size, blocks))
        }
        self.streams = streams
    }

    static func block(_ number: Int, in file: [UInt8], blockSize: Int, _ what: String) throws -> [UInt8] {
        let start = number * blockSize
        guard number >= 0, start < file.count else {
            throw SymbolFileError(.corrupt, "\(what) is block \(number), beyond the file's \(file.count / blockSize) blocks")
        }
        return Array(file[start..<min(file.count, start + blockSize)])
    }

    /// Stream `index`'s bytes, in order; nil when the PDB has no such stream.
    public func stream(_ index: Int) throws -> [UInt8]? {
        guard index >= 0, index < streams.count else { return nil }
        let (size, blocks) = streams[index]
        var bytes: [UInt8] = []
        bytes.reserveCapacity(size)
        for block in blocks {
            let start = Int(block) * blockSize
            let end = min(start + blockSize, file.count, start + size - bytes.count)
            guard start <= end else {
                throw SymbolFileError(.truncated, "stream \(index) needs block \(block), past the end of the file")
            }
            bytes += file[start..<end]
        }
        guard bytes.count == size else {
            throw SymbolFileError(.truncated, "stream \(index) is \(size) bytes, but its blocks hold only \(bytes.count) (the file ends)")
        }
        return bytes
    }
}
