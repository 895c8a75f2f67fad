/// Windows FILETIME values (100 ns ticks since 1601-01-01 UTC) turned into text without Foundation.
public enum FileTime {
    /// Ticks between 1601-01-01 and 1970-01-01.
    static let unixEpochTicks: UInt64 = 116_444_736_000_000_000

    /// Seconds since 1970-01-01 UTC, or nil for times before 1970 or after year 9999.
    public static func unixSeconds(_ fileTime: UInt64) -> Int64? {
        guard fileTime >= unixEpochTicks else { return nil }
        let seconds = Int64((fileTime - unixEpochTicks) / 10_000_000)
        return seconds < 253_402_300_800 ? seconds : nil
    }

    /// "2021-03-04 05:06:07 UTC", or nil when the value is not a plausible date.
    public static func text(_ fileTime: UInt64) -> String? {
        unixSeconds(fileTime).map(utcText)
    }

    /// ISO 8601 for seconds since 1970 ("2021-03-04T05:06:07Z").
    public static func iso8601(unixSeconds seconds: Int64) -> String {
        let (date, time) = civil(seconds)
        return "\(date)T\(time)Z"
    }

    public static func utcText(_ seconds: Int64) -> String {
        let (date, time) = civil(seconds)
        return "\(date) \(time) UTC"
    }

    /// Days-to-civil conversion (Howard Hinnant's algorithm) for non-negative Unix times.
    static func civil(_ seconds: Int64) -> (date: String, time: String) {
        let days = seconds / 86_400
        let secondsOfDay = seconds % 86_400
        let z = days + 719_468
        let era = z / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        let date = "\(year)-\(pad(month))-\(pad(day))"
        let time = "\(pad(secondsOfDay / 3600)):\(pad(secondsOfDay / 60 % 60)):\(pad(secondsOfDay % 60))"
        return (date, time)
    }

    /// An uptime in 100 ns ticks as "3 days 04:05:06".
    public static func durationText(_ ticks: UInt64) -> String {
        let seconds = ticks / 10_000_000
        let days = seconds / 86_400
        let clock = "\(pad(Int64(seconds / 3600 % 24))):\(pad(Int64(seconds / 60 % 60))):\(pad(Int64(seconds % 60)))"
        return days == 0 ? clock : "\(days) day\(days == 1 ? "" : "s") \(clock)"
    }

    static func pad(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
}
