import DumpFormat
import DumpMemory

/// What an image's TimeDateStamp says, as WinDbg's `lmv` says it.
///
/// The field was the link time once. Since Windows 10, Microsoft links its images reproducibly
/// (`/Brepro`): TimeDateStamp is then a hash of the build, which read as a date gives anything
/// from 1970 to 2106 (ntoskrnl "built 2088"). Such an image has an IMAGE_DEBUG_TYPE_REPRO entry
/// in its debug directory, where WinDbg says "This is a reproducible build file hash, not a
/// timestamp". A dump does not always hold the image's headers (minidumps rarely do); then
/// only a value after the crash, or before Windows NT, gives a hash away, and a plausible one
/// is shown as an unverified date.
public struct ImageTimestamp: Sendable, Codable, Equatable {
    public enum Meaning: String, Sendable, Codable {
        /// The link time: the image's debug directory was read and has no REPRO entry.
        case linkTime = "link time"
        /// A plausible date, but the image's headers are not in the dump to rule out a hash.
        case unverifiedLinkTime = "link time, unverified"
        /// A hash of the build: not a date.
        case buildHash = "build hash"
        /// 0: nothing was recorded.
        case absent
    }

    public var meaning: Meaning
    /// The date (ISO 8601) for link times, verified or not.
    public var date: String?
    /// Why, in words.
    public var reason: String

    /// 1993-07-27, Windows NT 3.1: no PE image was linked before it.
    static let firstPlausible: Int64 = 743_731_200

    /// - Parameters:
    ///   - reproducible: whether the image's debug directory has a REPRO entry; nil when its
    ///     headers could not be read.
    ///   - crashTime: the dump's SystemTime in Unix seconds, when set.
    public init(_ stamp: UInt32, reproducible: Bool?, crashTime: Int64?) {
        let seconds = Int64(stamp)
        let asDate = FileTime.iso8601(unixSeconds: seconds)
        if stamp == 0 {
            self.init(meaning: .absent, date: nil, reason: "TimeDateStamp is 0")
        } else if reproducible == true {
            self.init(meaning: .buildHash, date: nil, reason: "the image's debug directory has a REPRO entry: a reproducible build, whose TimeDateStamp is a hash")
        } else if let crashTime, seconds > crashTime + 86_400 {
            self.init(meaning: .buildHash, date: nil, reason: "read as a date it is \(asDate.prefix(10)), after the crash: a reproducible-build hash")
        } else if seconds < Self.firstPlausible {
            self.init(meaning: .buildHash, date: nil, reason: "read as a date it is \(asDate.prefix(10)), before any PE image: a reproducible-build hash")
        } else if reproducible == false {
            self.init(meaning: .linkTime, date: asDate, reason: "the image's debug directory has no REPRO entry")
        } else {
            self.init(meaning: .unverifiedLinkTime, date: asDate, reason: "the image's headers are not in the dump, so a reproducible-build hash cannot be ruled out")
        }
    }

    init(meaning: Meaning, date: String?, reason: String) {
        self.meaning = meaning
        self.date = date
        self.reason = reason
    }

    private enum CodingKeys: String, CodingKey { case meaning, date, reason }

    /// Reports stored before TimeDateStamps were classified hold the date as a bare string:
    /// it reads back as an unverified link time.
    public init(from decoder: any Decoder) throws {
        if let legacy = try? decoder.singleValueContainer().decode(String.self) {
            self.init(meaning: .unverifiedLinkTime, date: legacy, reason: "from a report made before timestamps were classified")
            return
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(meaning: try container.decode(Meaning.self, forKey: .meaning), date: try container.decodeIfPresent(String.self, forKey: .date),
                  reason: try container.decode(String.self, forKey: .reason))
    }

    /// For text reports: "built 2020-09-23", "built 2020-09-23?" or "a build hash, not a date".
    public var text: String {
        switch meaning {
        case .linkTime: "built \(date?.prefix(10) ?? "?")"
        case .unverifiedLinkTime: "built \(date?.prefix(10) ?? "?")? (unverified)"
        case .buildHash: "a build hash, not a date"
        case .absent: "no timestamp"
        }
    }

    /// Classifies `stamp`, reading the REPRO flag from the debug directory of the image at
    /// `base` when the dump holds its headers. A value no link time can have is settled
    /// without reading anything (most of Microsoft's images in a real dump).
    static func of(_ stamp: UInt32, imageAt base: UInt64, in space: (any KernelAddressSpace)?, crashTime: Int64?) -> ImageTimestamp {
        let settled = ImageTimestamp(stamp, reproducible: nil, crashTime: crashTime)
        guard settled.meaning == .unverifiedLinkTime, let space, let image = try? PEImage(reading: space, base: base),
              let types = try? image.debugEntryTypes(in: space) else { return settled }
        return ImageTimestamp(stamp, reproducible: types.contains(PEImage.debugTypeReproducible), crashTime: crashTime)
    }
}
