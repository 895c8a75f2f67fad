import Foundation
import Hummingbird

/// Server-rendered pages: one stylesheet inline, no scripts, no assets from elsewhere, so the
/// UI works on an air-gapped network. Every value from the database goes through `escape`.
enum HTMLPage {
    static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// A query-string value (for links).
    static func query(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
    }

    static func response(title: String, body: String, status: HTTPResponse.Status = .ok) -> Response {
        let page = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(escape(title)) · DumpFleet</title>
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <style>\(style)</style></head>
            <body><header><a class="brand" href="/ui/clusters">DumpFleet</a>
            <form action="/ui/search" method="get"><input name="q" placeholder="dump id, VM or bucket" aria-label="search">
            <button>Search</button></form></header>
            <main><h1>\(escape(title))</h1>
            \(body)
            </main></body></html>
            """
        return Response(status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                        body: .init(byteBuffer: ByteBuffer(string: page)))
    }

    /// A table; `cells` are already HTML.
    static func table(_ headers: [String], _ rows: [[String]], id: String? = nil) -> String {
        let head = headers.map { "<th>\($0)</th>" }.joined()
        let body = rows.map { "<tr>" + $0.map { "<td>\($0)</td>" }.joined() + "</tr>" }.joined(separator: "\n")
        return "<table\(id.map { " id=\"\($0)\"" } ?? "")><thead><tr>\(head)</tr></thead><tbody>\n\(body)\n</tbody></table>"
    }

    static func percent(_ share: Double) -> String { String(format: "%.0f%%", share * 100) }

    static let style = """
        body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2630;background:#f6f7f9}
        header{display:flex;gap:1.5em;align-items:center;padding:.6em 1.5em;background:#1d2630}
        header a.brand{color:#fff;font-weight:600;text-decoration:none}
        header input{width:18em;padding:.3em} main{padding:1em 1.5em;max-width:78em}
        h1{font-size:1.35em} h2{font-size:1.1em;margin-top:1.6em}
        table{border-collapse:collapse;background:#fff;width:100%}
        th,td{border-bottom:1px solid #dde2e8;padding:.35em .6em;text-align:left;vertical-align:top}
        th a{color:inherit} td.num,th.num{text-align:right} .muted{color:#68737f}
        pre{background:#fff;padding:1em;overflow:auto;border:1px solid #dde2e8}
        .chart rect{fill:#3b6ea5} .chart text{font-size:10px;fill:#68737f}
        """
}
