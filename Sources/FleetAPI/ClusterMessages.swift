/// The bodies of the similarity and cluster API.

/// One answer of `similar`: a stored crash, how alike it is (0...1) and why.
public struct SimilarCrash: Sendable, Codable, Equatable {
    public var dumpId: Int64
    public var score: Double
    public var reasons: [String]
    public var bucket: String
    public var clusterId: Int64?

    public init(dumpId: Int64, score: Double, reasons: [String], bucket: String, clusterId: Int64?) {
        self.dumpId = dumpId
        self.score = score
        self.reasons = reasons
        self.bucket = bucket
        self.clusterId = clusterId
    }
}

/// A row of the clusters list.
public struct ClusterSummary: Sendable, Codable, Equatable {
    public var id: Int64
    public var title: String
    public var dumps: Int
    public var vms: Int
    public var hosts: Int
    public var firstSeen: String
    public var lastSeen: String
    public var buckets: [String]

    public init(id: Int64, title: String, dumps: Int, vms: Int, hosts: Int, firstSeen: String, lastSeen: String, buckets: [String]) {
        self.id = id
        self.title = title
        self.dumps = dumps
        self.vms = vms
        self.hosts = hosts
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.buckets = buckets
    }
}

/// A module, driver version (`name@timestamp`) or process over-represented in a cluster.
public struct ClusterCorrelation: Sendable, Codable, Equatable {
    public var kind: String
    public var value: String
    /// Share of the cluster's dumps that have it, and of all other dumps.
    public var inCluster: Double
    public var elsewhere: Double
    /// χ² of the 2×2 table (in the cluster or not × has it or not), one degree of freedom.
    public var chiSquare: Double

    public init(kind: String, value: String, inCluster: Double, elsewhere: Double, chiSquare: Double) {
        self.kind = kind
        self.value = value
        self.inCluster = inCluster
        self.elsewhere = elsewhere
        self.chiSquare = chiSquare
    }
}

/// One cluster: its members, their timeline and what sets them apart.
public struct ClusterDetail: Sendable, Codable, Equatable {
    public struct Member: Sendable, Codable, Equatable {
        public var dumpId: Int64
        public var score: Double
        /// Placed by an operator (merge or split): reprocessing leaves it there.
        public var pinned: Bool
        /// The VMs the dump came from, the first 20 by name; `vmCount` counts them all.
        public var vms: [String]
        public var vmCount: Int
        public var bucket: String

        public init(dumpId: Int64, score: Double, pinned: Bool, vms: [String], vmCount: Int, bucket: String) {
            self.dumpId = dumpId
            self.score = score
            self.pinned = pinned
            self.vms = vms
            self.vmCount = vmCount
            self.bucket = bucket
        }
    }

    public struct DailyCount: Sendable, Codable, Equatable {
        public var day: String
        public var dumps: Int

        public init(day: String, dumps: Int) {
            self.day = day
            self.dumps = dumps
        }
    }

    public var summary: ClusterSummary
    public var representativeDumpId: Int64?
    /// Set when the id asked for was merged into this cluster.
    public var mergedFrom: Int64?
    public var members: [Member]
    public var daily: [DailyCount]
    public var correlations: [ClusterCorrelation]

    public init(summary: ClusterSummary, representativeDumpId: Int64?, mergedFrom: Int64?, members: [Member], daily: [DailyCount],
                correlations: [ClusterCorrelation]) {
        self.summary = summary
        self.representativeDumpId = representativeDumpId
        self.mergedFrom = mergedFrom
        self.members = members
        self.daily = daily
        self.correlations = correlations
    }
}

/// `POST /v1/clusters/{id}/merge`
public struct ClusterMerge: Sendable, Codable, Equatable {
    public var into: Int64
    public init(into: Int64) { self.into = into }
}

/// `POST /v1/clusters/{id}/split`
public struct ClusterSplit: Sendable, Codable, Equatable {
    public var dumps: [Int64]
    public init(dumps: [Int64]) { self.dumps = dumps }
}
