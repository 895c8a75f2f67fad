import FleetAPI
import Foundation
import HTTPTypes
import Hummingbird

/// What a plain upload says of its dump, in the query string or in headers, so that a one-line
/// curl command or a script that sets headers once can say it (where both give a value, the
/// query's wins):
///
/// | query | header | |
/// |---|---|---|
/// | `vm=NAME` | `X-DumpFleet-VM` | required |
/// | `host=NAME` | `X-DumpFleet-Host` | |
/// | `tag=NAME=VALUE` (repeatable) | `X-DumpFleet-Tags: NAME=VALUE, NAME=VALUE` | |
/// | `file=NAME` | `X-DumpFleet-File-Name` | also the path's last part, `/v1/plain/MEMORY.DMP` |
///
/// They are checked as an announcement's names are (`UploadValidation.checkLabels`).
enum PlainUploadLabels {
    static let vmHeader = HTTPField.Name("X-DumpFleet-VM")!
    static let hostHeader = HTTPField.Name("X-DumpFleet-Host")!
    static let tagsHeader = HTTPField.Name("X-DumpFleet-Tags")!
    static let fileNameHeader = HTTPField.Name("X-DumpFleet-File-Name")!

    /// The request's labels as an announcement whose content hash and size are still unknown
    /// (empty and 0): they are filled in once the body is in.
    static func announcement(_ request: Request, _ context: CoordinatorContext) throws -> UploadAnnouncement {
        let query = request.uri.queryParameters
        func value(_ key: Substring, _ header: HTTPField.Name) -> String? {
            query[key].map(String.init) ?? request.headers[header]
        }
        guard let vm = value("vm", vmHeader), !vm.isEmpty else {
            throw APIFailure(.badRequest, "a plain upload needs the VM's name: ?vm=NAME in the URL, or an X-DumpFleet-VM header")
        }
        var tags: [String: String] = [:]
        for line in request.headers[values: tagsHeader] {
            for item in line.split(separator: ",") { add(String(item), to: &tags) }
        }
        for item in query[values: "tag"] { add(String(item), to: &tags) }
        // The path's part is as the client wrote it: curl percent-encodes the file name it appends.
        let fileName = context.parameters.get("fileName").map { $0.removingPercentEncoding ?? $0 } ?? value("file", fileNameHeader)
        let announcement = UploadAnnouncement(contentHash: "", size: 0, vm: vm, host: value("host", hostHeader), tags: tags, fileName: fileName)
        try UploadValidation.checkLabels(announcement)
        return announcement
    }

    /// A tag as `NAME=VALUE` (the first `=` ends the name; spaces around either are dropped)
    /// or a bare `NAME` with an empty value.
    static func add(_ item: String, to tags: inout [String: String]) {
        let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        tags[parts[0]] = parts.count > 1 ? parts[1] : ""
    }
}
