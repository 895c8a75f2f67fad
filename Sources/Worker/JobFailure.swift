/// Why a job attempt failed, which decides what becomes of the job. Only a fault of the dump
/// itself uses up one of the job's attempts.
struct JobFailure: Error, CustomStringConvertible {
    enum Fault: Sendable {
        /// The dump cannot be analyzed: the attempt counts, and the job is retried with backoff
        /// until its attempts are used up.
        case dump
        /// The stored copy of the dump is damaged or missing: retrying cannot help, so the job
        /// fails at once, and the dump is marked so that its next upload replaces the copy.
        case storedCopy
        /// The worker cannot work (its token is refused, its scratch disk is full, the
        /// coordinator or the blob folder is out of reach): the job goes back to the queue
        /// without counting the attempt, and the worker stops claiming until its setup works.
        case worker
    }

    var fault: Fault
    var description: String
    /// For a full scratch disk: the free space the job needs there (its dump's size; sparse
    /// files take less, so this is an upper bound). The worker waits until it is free.
    var needsFreeBytes: UInt64? = nil
}
