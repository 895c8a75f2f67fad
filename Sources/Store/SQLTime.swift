/// SQL expressions that print a `timestamptz` in UTC, whatever the server's time zone.
public enum SQLTime {
    /// ISO 8601 to the second, as the API carries times: `2026-11-25T13:04:30Z`.
    public static func iso8601(_ expression: String) -> String {
        "to_char(\(expression) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    }

    /// To the minute, for people: `2026-11-25 13:04`.
    public static func minute(_ expression: String) -> String {
        "to_char(\(expression) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')"
    }
}
