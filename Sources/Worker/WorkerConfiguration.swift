import Foundation
import SymbolFiles
import Store

/// How a worker runs.
public struct WorkerConfiguration: Sendable {
    /// Where the worker gets a dump's bytes.
    public enum BlobSource: Sendable {
        /// The blob store's folder, shared with the coordinator (same host or a shared mount).
        case directory(String)
        /// The coordinator's blob download, with a bearer token.
        case coordinator(url: String, token: String)
    }

    /// A libpq connection string or URL.
    public var database: String
    public var blobs: BlobSource
    /// Unique per process start: host, process id and a random suffix, so a restarted worker
    /// never mistakes its predecessor's leases for its own.
    public var workerId: String
    /// Jobs analyzed at once.
    public var concurrency = 1
    /// Threads each analysis uses to walk the CPUs' stacks.
    public var analysisThreads = 2
    /// The site's symbol files (`--symbols`), when it has some.
    public var symbols: (any SymbolSource)?
    /// How long a claim holds without a heartbeat; heartbeats come every third of it.
    public var leaseSeconds = 30.0
    /// How often the queue is polled when no notification arrives (and after reconnects).
    public var pollSeconds = 5.0
    /// LISTEN for new jobs; off leaves polling alone.
    public var listen = true
    /// Where dumps are decompressed (as sparse files) while analyzed; each is deleted after.
    /// Each worker works in a folder of its own below it (see `ScratchFolder`), so workers on
    /// one host can share it.
    public var scratch: String
    /// The analyzer version this worker runs; it claims only jobs queued for it.
    public var analyzerVersion: Int
    /// Backoff between attempts at a failing job, and when to give up on it.
    public var retry = RetryPolicy()
    /// How often a worker paused by trouble of its own (see `JobFailure.Fault.worker`) checks
    /// whether its setup works again.
    public var setupRetrySeconds = 30.0

    public init(database: String, blobs: BlobSource, scratch: String, analyzerVersion: Int) {
        self.database = database
        self.blobs = blobs
        self.scratch = scratch
        self.analyzerVersion = analyzerVersion
        workerId = Self.uniqueId()
    }

    public static func uniqueId() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        return "\(host):\(getpid()):\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
    }
}
