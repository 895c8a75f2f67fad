import DumpAnalysis

/// What similarity compares of a crash: bug-check class, culprit, frames, evidence words (and
/// the bucket, to show). It is stored as one line of text beside the signature's JSON and
/// parsed back by splitting, because a search scores hundreds of candidates and decoding their
/// JSON cost more than scoring them (about 25 µs against 2 µs each).
public struct Fingerprint: Sendable, Equatable {
    public struct Frame: Sendable, Equatable {
        public var position: Int
        public var module: String
        /// `module+0xRVA`.
        public var key: String
        public var function: String?
        /// Found by a stack scan (`CrashSignature.Frame.scanned`).
        public var scanned: Bool

        public init(position: Int, module: String, key: String, function: String?, scanned: Bool = false) {
            self.position = position
            self.module = module
            self.key = key
            self.function = function
            self.scanned = scanned
        }
    }

    public var bucket: String
    public var bugCheckClass: String
    public var culprit: String?
    public var frames: [Frame]
    public var evidenceTokens: [String]

    public init(bucket: String, bugCheckClass: String, culprit: String?, frames: [Frame], evidenceTokens: [String]) {
        self.bucket = bucket
        self.bugCheckClass = bugCheckClass
        self.culprit = culprit
        self.frames = frames
        self.evidenceTokens = evidenceTokens
    }

    public init(_ signature: CrashSignature) {
        self.init(bucket: signature.bucket, bugCheckClass: signature.bugCheckClass, culprit: signature.culprit,
                  frames: signature.frames.map { Frame(position: $0.position, module: $0.module, key: $0.key, function: $0.function, scanned: $0.scanned) },
                  evidenceTokens: signature.evidenceTokens)
    }

    // The text form: fields split by U+001F, frames by U+001E, a frame's parts by U+001D.
    // Names come from dumps, so those three characters are removed from them first. Version 2
    // added a fifth part to each frame, "s" when a scan found it; version 1 text still parses.
    static let field: Character = "\u{1F}", frame: Character = "\u{1E}", part: Character = "\u{1D}"

    public var text: String {
        let frames = self.frames.map {
            [String($0.position), Self.clean($0.module), Self.clean($0.key), Self.clean($0.function ?? ""), $0.scanned ? "s" : ""].joined(separator: String(Self.part))
        }
        return ["2", Self.clean(bucket), Self.clean(bugCheckClass), Self.clean(culprit ?? ""), frames.joined(separator: String(Self.frame)),
                evidenceTokens.map(Self.clean).joined(separator: " ")].joined(separator: String(Self.field))
    }

    /// Parses `text`. It works on the UTF-8 bytes: the separators are ASCII, so they never
    /// occur inside another character's encoding, and splitting by bytes is several times
    /// faster than splitting by Characters, which matters when a search parses 400 of these.
    public init?(text: String) {
        var text = text
        guard let parsed = text.withUTF8(Self.parse) else { return nil }
        self = parsed
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Fingerprint? {
        let fields = split(bytes[...], at: field.asciiValue!)
        let version = fields.first.map(string)
        guard fields.count == 6, version == "1" || version == "2" else { return nil }
        let partCount = version == "1" ? 4 : 5
        var frames: [Frame] = []
        for item in split(fields[4], at: frame.asciiValue!) where !item.isEmpty {
            let parts = split(item, at: part.asciiValue!)
            guard parts.count == partCount, let position = Int(string(parts[0])) else { return nil }
            frames.append(Frame(position: position, module: string(parts[1]), key: string(parts[2]), function: parts[3].isEmpty ? nil : string(parts[3]),
                                scanned: partCount == 5 && string(parts[4]) == "s"))
        }
        let tokens = fields[5].isEmpty ? [] : split(fields[5], at: UInt8(ascii: " ")).filter { !$0.isEmpty }.map(string)
        return Fingerprint(bucket: string(fields[1]), bugCheckClass: string(fields[2]), culprit: fields[3].isEmpty ? nil : string(fields[3]),
                           frames: frames, evidenceTokens: tokens)
    }

    private static func split(_ bytes: Slice<UnsafeBufferPointer<UInt8>>, at separator: UInt8) -> [Slice<UnsafeBufferPointer<UInt8>>] {
        var pieces: [Slice<UnsafeBufferPointer<UInt8>>] = []
        var start = bytes.startIndex
        for index in bytes.indices where bytes[index] == separator {
            pieces.append(bytes[start..<index])
            start = index + 1
        }
        pieces.append(bytes[start..<bytes.endIndex])
        return pieces
    }

    private static func string(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) -> String {
        String(decoding: UnsafeBufferPointer(rebasing: bytes), as: UTF8.self)
    }

    static func clean(_ text: String) -> String {
        text.contains { $0 == field || $0 == frame || $0 == part } ? text.filter { $0 != field && $0 != frame && $0 != part } : text
    }
}
