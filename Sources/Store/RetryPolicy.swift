/// When a failed job runs again: exponential backoff with jitter, capped, and a dead letter
/// (`failed`) after the last attempt. Pure, so it is tested without a database.
public struct RetryPolicy: Sendable, Equatable {
    public var baseSeconds: Double = 5
    public var capSeconds: Double = 3600
    /// Fraction of the delay that is randomized, so that jobs failing together spread out.
    public var jitter: Double = 0.25

    public init(baseSeconds: Double = 5, capSeconds: Double = 3600, jitter: Double = 0.25) {
        self.baseSeconds = baseSeconds
        self.capSeconds = capSeconds
        self.jitter = jitter
    }

    /// Seconds to wait before attempt `attempt + 1`, given `random` in 0..<1.
    public func delay(afterAttempt attempt: Int, random: Double) -> Double {
        let exponential = baseSeconds * Double(1 << min(max(attempt - 1, 0), 30))
        let capped = min(exponential, capSeconds)
        return capped * (1 - jitter + 2 * jitter * random)
    }

    public enum Decision: Sendable, Equatable {
        case retry(afterSeconds: Double)
        case deadLetter
    }

    public func decide(attempt: Int, maxAttempts: Int, random: Double) -> Decision {
        attempt >= maxAttempts ? .deadLetter : .retry(afterSeconds: delay(afterAttempt: attempt, random: random))
    }
}
