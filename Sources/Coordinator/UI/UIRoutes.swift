import CrashClusters
import DumpAnalysis
import FleetAPI
import Foundation
import Hummingbird
import Store

/// The web UI under /ui: the clusters table (sortable), a cluster (VMs, timeline, correlations,
/// representative report, similar clusters), a dump (its analysis), and search by dump id, VM
/// or bucket. Pages are plain HTML made here; see `HTMLPage`.
struct UIRoutes: Sendable {
    let work: BlockingWork
    let catalog: Catalog
    let clusters = ClusterQueries()
    let index = CrashIndex()

    func add(to group: RouterGroup<CoordinatorContext>) {
        group.get("", use: home)
        group.get("clusters", use: clusterList)
        group.get("clusters/:id", use: cluster)
        group.get("dumps/:id", use: dump)
        group.get("search", use: search)
    }

    @Sendable func home(_ request: Request, context: CoordinatorContext) async throws -> Response {
        Response(status: .seeOther, headers: [.location: "/ui/clusters"])
    }

    /// All clusters; `?sort=dumps|vms|hosts|last|id` orders the table (largest or newest first).
    @Sendable func clusterList(_ request: Request, context: CoordinatorContext) async throws -> Response {
        var rows = try await work.database { [clusters] db in try clusters.list(limit: 1000, on: db) }
        let sort = request.uri.queryParameters.get("sort") ?? "dumps"
        switch sort {
        case "vms": rows.sort { ($0.vms, $0.dumps) > ($1.vms, $1.dumps) }
        case "hosts": rows.sort { ($0.hosts, $0.dumps) > ($1.hosts, $1.dumps) }
        case "last": rows.sort { $0.lastSeen > $1.lastSeen }
        case "id": rows.sort { $0.id < $1.id }
        default: break
        }
        func header(_ key: String, _ title: String) -> String {
            key == sort ? "\(title) ▾" : "<a href=\"/ui/clusters?sort=\(key)\">\(title)</a>"
        }
        let table = HTMLPage.table(
            [header("id", "Cluster"), header("dumps", "Dumps"), header("vms", "VMs"), header("hosts", "Hosts"), "First seen", header("last", "Last seen"), "Buckets"],
            rows.map { row in
                ["<a href=\"/ui/clusters/\(row.id)\">\(row.id)</a>", "\(row.dumps)", "\(row.vms)", "\(row.hosts)", HTMLPage.escape(row.firstSeen),
                 HTMLPage.escape(row.lastSeen), row.buckets.map { "<code>\(HTMLPage.escape($0))</code>" }.joined(separator: "<br>")]
            }, id: "clusters")
        let total = rows.map(\.dumps).reduce(0, +)
        return HTMLPage.response(title: "Clusters", body: "<p class=\"muted\">\(rows.count) clusters, \(total) dumps</p>\n" + table)
    }

    @Sendable func cluster(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let id = try QueryRoutes.id(context)
        let page = try await work.database { [clusters, index, catalog] db -> (ClusterDetail, String?, [(Int64, Double, String)])? in
            guard let detail = try clusters.detail(id: id, on: db) else { return nil }
            guard let representative = detail.representativeDumpId else { return (detail, nil, []) }
            return (detail, try catalog.report(dumpId: representative, on: db),
                    try index.similarClusters(toDump: representative, besides: detail.summary.id, top: 5, on: db).map { ($0.cluster, $0.score, $0.bucket) })
        }
        guard let (detail, report, similar) = page else { return HTMLPage.response(title: "No cluster \(id)", body: "", status: .notFound) }
        let summary = detail.summary
        var body = ["<p>\(summary.dumps) dumps from \(summary.vms) VMs on \(summary.hosts) hosts; first seen \(HTMLPage.escape(summary.firstSeen)), last seen \(HTMLPage.escape(summary.lastSeen)).</p>"]
        if let from = detail.mergedFrom { body.append("<p class=\"muted\">Cluster \(from) was merged into this one.</p>") }
        body.append("<p>Buckets: " + summary.buckets.map { "<code>\(HTMLPage.escape($0))</code>" }.joined(separator: " ") + "</p>")
        body.append("<h2>Dumps per day</h2>" + TimelineChart.svg(detail.daily))
        body.append("<h2>Over-represented in this cluster</h2>")
        body.append(detail.correlations.isEmpty ? "<p class=\"muted\">nothing stands out against the other dumps</p>" : HTMLPage.table(
            ["Kind", "Name", "In this cluster", "Elsewhere", "χ²"],
            detail.correlations.map { item in
                [item.kind, "<code>\(HTMLPage.escape(item.value))</code>", HTMLPage.percent(item.inCluster), HTMLPage.percent(item.elsewhere), String(format: "%.1f", item.chiSquare)]
            }, id: "correlations"))
        let vms = Dictionary(grouping: detail.members.flatMap { member in member.vms.map { ($0, member.dumpId) } }, by: \.0)
        body.append("<h2>VMs</h2>" + HTMLPage.table(["VM", "Dumps"], vms.keys.sorted().map { vm in
            [HTMLPage.escape(vm), vms[vm]!.map { "<a href=\"/ui/dumps/\($0.1)\">\($0.1)</a>" }.joined(separator: " ")]
        }, id: "vms"))
        body.append("<h2>Similar clusters</h2>")
        body.append(similar.isEmpty ? "<p class=\"muted\">none above the candidates' threshold</p>" : HTMLPage.table(["Cluster", "Score", "Bucket"], similar.map { item in
            ["<a href=\"/ui/clusters/\(item.0)\">\(item.0)</a>", String(format: "%.2f", item.1), "<code>\(HTMLPage.escape(item.2))</code>"]
        }, id: "similar"))
        if let representative = detail.representativeDumpId {
            body.append("<h2>Representative: <a href=\"/ui/dumps/\(representative)\">dump \(representative)</a></h2>")
            body.append(Self.reportSummary(report))
        }
        let shown = detail.members.count < summary.dumps ? " (the first \(detail.members.count) of \(summary.dumps))" : ""
        body.append("<h2>Members\(shown)</h2>" + HTMLPage.table(["Dump", "Score", "Bucket", "VMs"], detail.members.map { member in
            ["<a href=\"/ui/dumps/\(member.dumpId)\">\(member.dumpId)</a>" + (member.pinned ? " <span class=\"muted\">pinned</span>" : ""),
             String(format: "%.2f", member.score), "<code>\(HTMLPage.escape(member.bucket))</code>", HTMLPage.escape(member.vms.joined(separator: " "))]
        }, id: "members"))
        return HTMLPage.response(title: "Cluster \(summary.id): \(summary.title)", body: body.joined(separator: "\n"))
    }

    /// A dump: its uploads a page at a time (`?uploadsAfter=UPLOAD_ID`), jobs, analysis.
    @Sendable func dump(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let id = try QueryRoutes.id(context)
        let after = try QueryRoutes.number(request, "uploadsAfter", default: 0, in: 0...Int64.max)
        let pageSize = Self.uploadsPerPage
        let page = try await work.database { [catalog, clusters] db -> (DumpStatus, [UploadRecord], String?, Int64?)? in
            guard let dump = try catalog.dump(id: id, uploadLimit: 0, on: db) else { return nil }
            return (dump, try catalog.uploads(ofDump: id, after: after, limit: pageSize, on: db), try catalog.report(dumpId: id, on: db),
                    try clusters.cluster(ofDump: id, on: db))
        }
        guard let (dump, uploads, report, cluster) = page else { return HTMLPage.response(title: "No dump \(id)", body: "", status: .notFound) }
        var body = ["<p>Content hash <code>\(dump.contentHash)</code>, \(dump.size) bytes"
                    + (cluster.map { "; in <a href=\"/ui/clusters/\($0)\">cluster \($0)</a>" } ?? "") + ".</p>"]
        if let damage = dump.blobError {
            body.append("<p><strong>The stored copy is damaged or missing</strong> (\(HTMLPage.escape(damage))): the next upload of this dump replaces it.</p>")
        }
        let next = uploads.count == pageSize ? uploads.last.map { " <a href=\"/ui/dumps/\(id)?uploadsAfter=\($0.id)\">next \(pageSize)</a>" } ?? "" : ""
        body.append("<h2>Uploads</h2><p class=\"muted\">\(dump.uploadCount) in all\(after > 0 ? ", those after upload \(after) below" : "").\(next)</p>"
                    + HTMLPage.table(["VM", "Host", "When", "By"], uploads.map { upload in
            [HTMLPage.escape(upload.vm), HTMLPage.escape(upload.host ?? ""), HTMLPage.escape(upload.uploadedAt), HTMLPage.escape(upload.uploadedBy ?? "")]
        }, id: "uploads"))
        body.append("<h2>Jobs</h2>" + HTMLPage.table(["Job", "State", "Attempt", "Last error"], dump.jobs.map { job in
            ["\(job.id)", job.state, "\(job.attempt) of \(job.maxAttempts)", HTMLPage.escape(job.lastError ?? "")]
        }, id: "jobs"))
        body.append("<h2>Analysis</h2>" + Self.reportSummary(report))
        if let report { body.append("<h2>Report (JSON)</h2><pre>\(HTMLPage.escape(report))</pre>") }
        return HTMLPage.response(title: "Dump \(id)" + (dump.bucket.map { ": \($0)" } ?? ""), body: body.joined(separator: "\n"))
    }

    static let uploadsPerPage = 100

    /// A number goes to that dump; other text lists the VMs' dumps and the clusters whose
    /// buckets match.
    @Sendable func search(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let text = (request.uri.queryParameters.get("q") ?? "").trimmingCharacters(in: .whitespaces)
        if let id = Int64(text), id > 0 { return Response(status: .seeOther, headers: [.location: "/ui/dumps/\(id)"]) }
        guard !text.isEmpty else { return Response(status: .seeOther, headers: [.location: "/ui/clusters"]) }
        let found = try await work.database { [clusters] db in try clusters.search(String(text.prefix(200)), on: db) }
        var body = ["<h2>Dumps from matching VMs</h2>"]
        body.append(found.dumps.isEmpty ? "<p class=\"muted\">none</p>" : HTMLPage.table(["Dump", "VM", "Bucket", "Cluster"], found.dumps.map { item in
            ["<a href=\"/ui/dumps/\(item.id)\">\(item.id)</a>", HTMLPage.escape(item.vm), "<code>\(HTMLPage.escape(item.bucket ?? ""))</code>",
             item.cluster.map { "<a href=\"/ui/clusters/\($0)\">\($0)</a>" } ?? ""]
        }, id: "dumps"))
        body.append("<h2>Clusters with matching buckets</h2>")
        body.append(found.clusters.isEmpty ? "<p class=\"muted\">none</p>" : HTMLPage.table(["Cluster", "Dumps", "VMs", "Buckets"], found.clusters.map { row in
            ["<a href=\"/ui/clusters/\(row.id)\">\(row.id)</a>", "\(row.dumps)", "\(row.vms)", HTMLPage.escape(row.buckets.joined(separator: " "))]
        }, id: "clusters"))
        return HTMLPage.response(title: "Search: \(text)", body: body.joined(separator: "\n"))
    }

    /// The lines of a report an engineer reads first, as in `!analyze -v`.
    static func reportSummary(_ json: String?) -> String {
        guard let json, let report = try? JSONDecoder().decode(CrashReport.self, from: Data(json.utf8)) else {
            return "<p class=\"muted\">not analyzed yet</p>"
        }
        var lines = ["\(report.bugCheckName ?? "BUG CHECK") (\(report.bugCheckCode))",
                     "FAILURE_BUCKET_ID: \(report.failureBucketId)",
                     "CULPRIT: \(report.culprit.name) (\(report.culprit.reason))"]
        if let process = report.processName { lines.append("PROCESS_NAME: \(process)") }
        if let ip = report.faultingIP { lines.append("FAULTING_IP: \(ip)") }
        lines.append("STACK:")
        lines += report.stack.prefix(12).map { "  \($0.symbol)" }
        for item in report.evidence.prefix(3) { lines.append("EVIDENCE: " + item.text.joined(separator: " ")) }
        lines += report.advice.prefix(3).map { "ADVICE: \($0)" }
        return "<pre>" + HTMLPage.escape(lines.joined(separator: "\n")) + "</pre>"
    }
}
