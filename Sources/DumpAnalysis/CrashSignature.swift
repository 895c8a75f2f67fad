/// A crash's identity for clustering: deterministic, independent of ASLR (module-relative
/// offsets only) and, where the frames allow, of the dump type (full dumps unwind by .pdata,
/// minidumps scan the stack; both see the same modules and the same faulting instruction).
public struct CrashSignature: Sendable, Codable, Equatable {
    /// A frame position-tagged for similarity: 0 is the faulting frame.
    public struct Frame: Sendable, Codable, Equatable {
        public var position: Int
        public var module: String
        /// `module+0xRVA` of the instruction: exact, ASLR-independent.
        public var key: String
        /// The export the instruction is in, when the nearest export is its function: survives
        /// a new driver version that moves the RVAs.
        public var function: String?
        /// Found by scanning the stack, not by unwinding: it may be a stale value of an earlier
        /// call, and where it sits depends on what else the scan found, so similarity weighs it
        /// lower. Signatures stored before it was kept read as false.
        public var scanned: Bool

        public init(position: Int, module: String, key: String, function: String?, scanned: Bool) {
            self.position = position
            self.module = module
            self.key = key
            self.function = function
            self.scanned = scanned
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.init(position: try container.decode(Int.self, forKey: .position), module: try container.decode(String.self, forKey: .module),
                      key: try container.decode(String.self, forKey: .key), function: try container.decodeIfPresent(String.self, forKey: .function),
                      scanned: try container.decodeIfPresent(Bool.self, forKey: .scanned) ?? false)
        }
    }

    /// 16 hex digits: FNV-1a over `canonical`.
    public var id: String
    /// The text hashed: bug-check class, culprit and faulting instruction (or, without one, the
    /// modules of the first unwound frames).
    public var canonical: String
    public var bucket: String
    public var bugCheckClass: String
    /// Who is blamed: a module (without the offset the bucket adds) or a process name; nil in
    /// reports made before it was kept.
    public var culprit: String?
    public var frames: [Frame]
    public var modules: [String]
    public var evidenceTokens: [String]

    /// How many unwound frames stand in for a missing faulting frame: enough to separate
    /// callers, few enough that an extra frame further out does not matter.
    public static let signatureFrames = 4

    public init(bucket: String, bugCheckClass: String, culprit: String, faultingKey: String?, frames: [StackFrame], faultingFrame: Int, evidence: [Evidence]) {
        let tail = frames.dropFirst(min(faultingFrame, frames.count))
        self.frames = tail.prefix(16).enumerated().compactMap { position, frame in
            guard let module = frame.moduleKey, let key = frame.moduleOffsetKey else { return nil }
            return Frame(position: position, module: module, key: key, function: frame.function, scanned: frame.trust == .scan)
        }
        // The identity is what every dump type keeps of a crash: class, culprit and faulting
        // instruction. The callers are not part of it: past the faulting frame a minidump has
        // only a scan's guesses, stale values among them, which would give one crash two
        // identities (similarity compares the callers instead). Without a faulting frame, the
        // modules of the unwound frames stand in; the user-mode frame a system call entered
        // from ends a kernel stack, and which program called is not part of the crash's shape.
        let identity: [String] = faultingKey.map { [$0] }
            ?? tail.filter { $0.rip >> 63 == 1 && $0.trust != .scan }.prefix(Self.signatureFrames).map { $0.moduleKey ?? "?" }
        canonical = ([bugCheckClass, culprit] + identity).joined(separator: "|")
        id = Self.fnv1a(canonical)
        self.bucket = bucket
        self.bugCheckClass = bugCheckClass
        self.culprit = culprit.split(separator: "+").first.map(String.init) ?? culprit
        modules = Array(Set(self.frames.map(\.module))).sorted()
        var tokens: Set<String> = []
        for item in evidence {
            for text in item.text { tokens.formUnion(Self.words(text)) }
            if let name = item.attributedTo?.name { tokens.insert(name.lowercased()) }
        }
        evidenceTokens = tokens.sorted()
    }

    /// Lower-case words of three or more letters, digits or dots (`videoaccelerator.exe`).
    static func words(_ text: String) -> [String] {
        let parts = text.lowercased().split { !$0.isLetter && !$0.isNumber && $0 != "." }
        return parts.map(String.init).filter { $0.count >= 3 }
    }

    static func fnv1a(_ text: String) -> String {
        let digits = String(fnv1a64(text), radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// 64-bit FNV-1a of the text's UTF-8 bytes.
    public static func fnv1a64(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }
}
