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

        public init(position: Int, module: String, key: String, function: String?) {
            self.position = position
            self.module = module
            self.key = key
            self.function = function
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
                  frames: signature.frames.map { Frame(position: $0.position, module: $0.module, key: $0.key, function: $0.function) },
                  evidenceTokens: signature.evidenceTokens)
    }

    // The text form: fields split by U+001F, frames by U+001E, a frame's parts by U+001D.
    // Names come from dumps, so those three characters are removed from them first.
    static let field: Character = "\u{1F}", frame: Character = "\u{1E}", part: Character = "\u{1D}"

    public var text: String {
        let frames = self.frames.map { [String($0.position), Self.clean($0.module), Self.clean($0.key), Self.clean($0.function ?? "")].joined(separator: String(Self.part)) }
        return ["1", Self.clean(bucket), Self.clean(bugCheckClass), Self.clean(culprit ?? ""), frames.joined(separator: String(Self.frame)),
                evidenceTokens.map(Self.clean).joined(separator: " ")].joined(separator: String(Self.field))
    }

    public init?(text: String) {
        let fields = text.split(separator: Self.field, omittingEmptySubsequences: false)
        guard fields.count == 6, fields[0] == "1" else { return nil }
        var frames: [Frame] = []
        for item in fields[4].split(separator: Self.frame) {
            let parts = item.split(separator: Self.part, omittingEmptySubsequences: false)
            guard parts.count == 4, let position = Int(parts[0]) else { return nil }
            frames.append(Frame(position: position, module: String(parts[1]), key: String(parts[2]), function: parts[3].isEmpty ? nil : String(parts[3])))
        }
        self.init(bucket: String(fields[1]), bugCheckClass: String(fields[2]), culprit: fields[3].isEmpty ? nil : String(fields[3]),
                  frames: frames, evidenceTokens: fields[5].split(separator: " ").map(String.init))
    }

    static func clean(_ text: String) -> String {
        text.contains { $0 == field || $0 == frame || $0 == part } ? text.filter { $0 != field && $0 != frame && $0 != part } : text
    }
}
