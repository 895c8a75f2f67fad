import FleetAPI
import Foundation
import Hummingbird

/// An error answer of the API: an HTTP status and `{"error": "..."}` (plus, for a PATCH at the
/// wrong offset, where the upload really is).
struct APIFailure: HTTPResponseError {
    var status: HTTPResponse.Status
    var body: APIError

    init(_ status: HTTPResponse.Status, _ message: String, received: UInt64? = nil) {
        self.status = status
        body = APIError(error: message, received: received)
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        JSONBody.response(body, status: status)
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
