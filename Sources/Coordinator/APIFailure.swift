import FleetAPI
import Foundation
import Hummingbird

/// An error answer of the API: an HTTP status and `{"error": "..."}` (plus, for uploads, where
/// the upload really is), with `Retry-After` when trying again later can help. A client that
/// asks for text (`Accept: text/plain`, a console user's curl) gets `error: ...` on one line.
///
/// The message is for the client: it never holds a connection string, a password or a path of
/// the coordinator's (errors the coordinator did not expect are answered by `ErrorCounting`
/// with a reference to the log line that has the details).
struct APIFailure: HTTPResponseError {
    var status: HTTPResponse.Status
    var body: APIError
    var retryAfter: Int?

    init(_ status: HTTPResponse.Status, _ message: String, received: UInt64? = nil, retryAfter: Int? = nil) {
        self.status = status
        body = APIError(error: message, received: received)
        self.retryAfter = retryAfter
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = PlainText.isWanted(by: request) ? PlainText.response("error: \(body.error)", status: status)
            : JSONBody.response(body, status: status)
        if let retryAfter { response.headers[.retryAfter] = String(retryAfter) }
        return response
    }

    /// The request's JSON body as `type`, or a 400 that says what was wrong with it.
    static func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: some RequestContext) async throws -> T {
        do {
            return try await request.decode(as: type, context: context)
        } catch {
            throw APIFailure(.badRequest, "the body is not a \(type): \(error)")
        }
    }
}

extension HTTPResponse.Status {
    /// 507: the server cannot store what the request would add (its disk is full).
    static var insufficientStorage: Self { .init(code: 507, reasonPhrase: "Insufficient Storage") }
}

/// JSON answers: compact, keys sorted, slashes left alone.
enum JSONBody {
    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = (try? encoder.encode(value)) ?? Data(#"{"error":"cannot encode the answer"}"#.utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func response(rawJSON text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// One-line text answers, for clients that ask for them with `Accept: text/plain` and not JSON.
enum PlainText {
    static func isWanted(by request: Request) -> Bool {
        guard let accept = request.headers[.accept]?.lowercased() else { return false }
        return accept.contains("text/plain") && !accept.contains("application/json")
    }

    static func response(_ line: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: line + "\n")))
    }
}
