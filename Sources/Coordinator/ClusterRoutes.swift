import CrashClusters
import DumpAnalysis
import FleetAPI
import Foundation
import Hummingbird

/// Similar crashes and clusters: `similar` by dump id or by a signature analyzed elsewhere, the
/// clusters list and one cluster, and the operator's merge and split.
struct ClusterRoutes: Sendable {
    let work: BlockingWork
    let index = CrashIndex()
    let clusters = ClusterQueries()

    func add(to group: RouterGroup<CoordinatorContext>) {
        group.get("similar/:id", use: similarToDump)
        group.post("similar", use: similarToSignature)
        group.get("clusters", use: list)
        group.get("clusters/:id", use: detail)
        group.post("clusters/:id/merge", use: merge)
        group.post("clusters/:id/split", use: split)
    }

    @Sendable func similarToDump(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let id = try QueryRoutes.id(context)
        let top = try Self.top(request)
        let hits = try await work.database { [index] db -> [SimilarCrash]? in
            guard let signature = try index.signature(dumpId: id, on: db) else { return nil }
            return try index.similar(to: signature, excluding: id, top: top, on: db)
        }
        guard let hits else { throw APIFailure(.notFound, "dump \(id) has no signature (yet)") }
        return JSONBody.response(hits)
    }

    /// The body is a `signature` object as `dumpfleet analyze --json` prints it.
    @Sendable func similarToSignature(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let signature = try await APIFailure.decode(CrashSignature.self, request, context)
        let top = try Self.top(request)
        return JSONBody.response(try await work.database { [index] db in try index.similar(to: signature, top: top, on: db) })
    }

    /// `?since=YYYY-MM-DD&limit=N&offset=M` (N at most 1000, default 200), largest first.
    @Sendable func list(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let since = request.uri.queryParameters.get("since")
        if let since, !Self.isDate(since) { throw APIFailure(.badRequest, "since must be a calendar date, YYYY-MM-DD") }
        let limit = Int(try QueryRoutes.number(request, "limit", default: 200, in: 1...1000))
        let offset = Int(try QueryRoutes.number(request, "offset", default: 0, in: 0...1_000_000_000))
        return JSONBody.response(try await work.database { [clusters] db in try clusters.list(since: since, limit: limit, offset: offset, on: db) })
    }

    /// `?membersAfter=DUMP_ID&memberLimit=N` pages through the members (N at most 1000, default 500).
    @Sendable func detail(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let id = try QueryRoutes.id(context)
        let after = try QueryRoutes.number(request, "membersAfter", default: 0, in: 0...Int64.max)
        let limit = Int(try QueryRoutes.number(request, "memberLimit", default: 500, in: 1...1000))
        guard let detail = try await work.database({ [clusters] db in try clusters.detail(id: id, membersAfter: after, memberLimit: limit, on: db) }) else {
            throw APIFailure(.notFound, "no cluster \(id)")
        }
        return JSONBody.response(detail)
    }

    @Sendable func merge(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let id = try QueryRoutes.id(context)
        let body = try await APIFailure.decode(ClusterMerge.self, request, context)
        do {
            try await work.database { [clusters] db in try clusters.merge(id, into: body.into, on: db) }
        } catch let failure as ClusterQueries.Failure {
            throw APIFailure(.conflict, failure.description)
        }
        return try await detail(request, context: context)
    }

    @Sendable func split(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let id = try QueryRoutes.id(context)
        let body = try await APIFailure.decode(ClusterSplit.self, request, context)
        let created: Int64
        do {
            created = try await work.database { [clusters] db in try clusters.split(id, dumps: body.dumps, on: db) }
        } catch let failure as ClusterQueries.Failure {
            throw APIFailure(.conflict, failure.description)
        }
        guard let detail = try await work.database({ [clusters] db in try clusters.detail(id: created, on: db) }) else {
            throw APIFailure(.internalServerError, "the new cluster \(created) is gone")
        }
        return JSONBody.response(detail, status: .created)
    }

    static func top(_ request: Request) throws -> Int {
        guard let text = request.uri.queryParameters.get("top") else { return 10 }
        guard let top = Int(text), (1...1000).contains(top) else { throw APIFailure(.badRequest, "top must be 1 to 1000") }
        return top
    }

    /// YYYY-MM-DD in ASCII digits, naming a day the calendar has (so 2024-13-45 and full-width
    /// digits are refused here, not by PostgreSQL).
    static func isDate(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-") else { return false }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for byte in bytes[range] {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), year >= 1, (1...12).contains(month) else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        return (1...days).contains(day)
    }
}
