import ArgumentParser
import DumpAnalysis
import DumpFile
import DumpMemory
import FleetAPI
import FleetClient
import Foundation

/// `dumpfleet similar`
struct Similar: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find stored crashes like a dump: by its id, or by a dump file analyzed here first.",
        discussion: """
        Each answer has a score from 0 to 1 and the reasons it matched (same culprit, same bug \
        check, how alike the stacks are, shared corruption evidence). The model is described in \
        Sources/CrashSimilarity/CrashSimilarity.docc/SimilarityModel.md.

        Examples:
          dumpfleet similar 12                   crashes like stored dump 12
          dumpfleet similar MEMORY.DMP --top 20  a local dump, analyzed first
        """
    )

    @Argument(help: "A dump id, or the path of a dump file.")
    var dump: String

    @Option(help: "How many answers.")
    var top = 10

    @OptionGroup var server: ServerOptions

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        guard (1...1000).contains(top) else { throw ValidationError("--top must be 1 to 1000") }
    }

    func run() async throws {
        let client = FleetClient(server: server.server, token: server.token)
        let hits: [SimilarCrash]
        if let id = Int64(dump), !FileManager.default.fileExists(atPath: dump) {
            hits = try await client.similar(toDump: id, top: top)
        } else {
            let report = CrashAnalyzer().analyze(try KernelDump(source: MappedFile.open(dump)))
            if !json { print("\(dump): \(report.failureBucketId)") }
            hits = try await client.similar(toSignature: report.signature, top: top)
        }
        if json { return print(try JSONOutput.encode(hits)) }
        if hits.isEmpty { print("no stored crash shares enough features to compare") }
        for hit in hits {
            print(String(format: "%.3f  dump %lld", hit.score, hit.dumpId) + (hit.clusterId.map { "  cluster \($0)" } ?? "") + "  \(hit.bucket)")
            print("       " + hit.reasons.joined(separator: "; "))
        }
    }
}

/// `dumpfleet clusters`
struct Clusters: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List clusters of alike crashes, largest first, with how many VMs and hosts they reach."
    )

    @Option(help: "Only clusters seen since this day (YYYY-MM-DD).")
    var since: String?

    @OptionGroup var server: ServerOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let clusters = try await FleetClient(server: server.server, token: server.token).clusters(since: since)
        if json { return print(try JSONOutput.encode(clusters)) }
        print("cluster  dumps  VMs  hosts  last seen         buckets")
        for cluster in clusters {
            print(String(format: "%7lld  %5d  %3d  %5d  %@  %@", cluster.id, cluster.dumps, cluster.vms, cluster.hosts,
                         cluster.lastSeen, cluster.buckets.joined(separator: " ")))
        }
    }
}

/// `dumpfleet cluster`
struct Cluster: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show one cluster: members, VMs, daily counts, correlations; or merge and split clusters.",
        discussion: """
        Examples:
          dumpfleet cluster 4                 the cluster, timeline, correlations
          dumpfleet cluster 4 --merge-into 2  cluster 4 joins 2 (4 then leads to 2)
          dumpfleet cluster 2 --split 17,18   dumps 17 and 18 go to a new cluster
        Merged and split dumps are pinned: reprocessing leaves them where you put them.
        """
    )

    @Argument(help: "Cluster id.")
    var id: Int64

    @Option(name: .customLong("merge-into"), help: "Merge this cluster into another.")
    var mergeInto: Int64?

    @Option(help: "Comma-separated dump ids to move into a new cluster.")
    var split: String?

    @OptionGroup var server: ServerOptions

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        guard mergeInto == nil || split == nil else { throw ValidationError("give --merge-into or --split, not both") }
        if let split, split.split(separator: ",").contains(where: { Int64($0) == nil }) {
            throw ValidationError("--split takes dump ids separated by commas")
        }
    }

    func run() async throws {
        let client = FleetClient(server: server.server, token: server.token)
        let detail: ClusterDetail
        if let mergeInto {
            detail = try await client.merge(cluster: id, into: mergeInto)
        } else if let split {
            detail = try await client.split(cluster: id, dumps: split.split(separator: ",").compactMap { Int64($0) })
        } else {
            detail = try await client.cluster(id)
        }
        if json { return print(try JSONOutput.encode(detail)) }
        print(Self.text(detail))
    }

    static func text(_ detail: ClusterDetail) -> String {
        let summary = detail.summary
        var lines = ["cluster \(summary.id): \(summary.title)" + (detail.mergedFrom.map { " (cluster \($0) was merged into it)" } ?? "")]
        lines.append("\(summary.dumps) dumps from \(summary.vms) VMs on \(summary.hosts) hosts, first seen \(summary.firstSeen), last seen \(summary.lastSeen)")
        lines.append("buckets: " + summary.buckets.joined(separator: " "))
        if let representative = detail.representativeDumpId { lines.append("representative: dump \(representative) (dumpfleet show \(representative) --report)") }
        lines.append("per day: " + detail.daily.map { "\($0.day) \($0.dumps)" }.joined(separator: ", "))
        if !detail.correlations.isEmpty {
            lines.append("over-represented here (in this cluster / elsewhere, χ²):")
            for item in detail.correlations {
                lines.append(String(format: "  %-8@ %-40@ %4.0f%% / %4.0f%%  %.1f", item.kind, item.value, item.inCluster * 100, item.elsewhere * 100, item.chiSquare))
            }
        }
        lines.append("members:")
        for member in detail.members {
            lines.append(String(format: "  dump %lld  %.2f%@  %@  %@", member.dumpId, member.score, member.pinned ? " pinned" : "",
                                member.bucket, member.vms.joined(separator: " ")))
        }
        return lines.joined(separator: "\n")
    }
}
