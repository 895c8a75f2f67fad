import Hummingbird

/// Lets a request through only with `Authorization: Bearer TOKEN` naming a configured token,
/// and puts the token's name where the handlers can record it.
struct BearerAuthentication: RouterMiddleware {
    typealias Context = CoordinatorContext
    let tokens: [AccessToken]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            throw APIFailure(.unauthorized, "missing Authorization: Bearer <token>")
        }
        let prefix = "Bearer "
        guard header.hasPrefix(prefix), let token = tokens.first(where: { Self.equal($0.secret, String(header.dropFirst(prefix.count))) }) else {
            throw APIFailure(.unauthorized, "the bearer token is not one this coordinator accepts")
        }
        var context = context
        context.caller = token.name
        return try await next(request, context)
    }

    /// Compares without stopping at the first difference, so timing does not reveal a prefix.
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        for index in 0..<min(x.count, y.count) { difference |= x[index] ^ y[index] }
        return difference == 0
    }
}

/// The request context: Hummingbird's basics plus who is calling.
struct CoordinatorContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    var caller: String?

    init(source: Source) {
        coreContext = .init(source: source)
    }

    /// Announcements are small JSON documents.
    var maxUploadSize: Int { 1 << 20 }
}
