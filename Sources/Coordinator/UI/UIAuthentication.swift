import Foundation
import Hummingbird

/// The UI's sign-in: a browser cannot send a bearer header, so the token lives in an HttpOnly,
/// SameSite=Strict cookie scoped to /ui, set by the login form (or once by `?token=`, which is
/// then dropped from the address by a redirect, for scripted checks). Without a valid cookie or
/// header, pages redirect to the login form.
struct UIAuthentication: RouterMiddleware {
    typealias Context = CoordinatorContext
    static let cookie = "dumpfleet_token"
    let tokens: [AccessToken]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/ui/login" { return try await next(request, context) }
        if let given = request.uri.queryParameters.get("token") {
            guard valid(given), Self.fitsInCookie(given) else { return Self.loginRedirect }
            var rest = URLComponents(string: request.uri.description) ?? URLComponents()
            let kept = (rest.queryItems ?? []).filter { $0.name != "token" }
            rest.queryItems = kept.isEmpty ? nil : kept
            var response = Response(status: .seeOther, headers: [.location: rest.string ?? request.uri.path])
            response.setCookie(Self.cookie(for: given))
            return response
        }
        let header = request.headers[.authorization].map { String($0.dropFirst("Bearer ".count)) }
        guard let token = request.cookies[Self.cookie]?.value ?? header, valid(token) else { return Self.loginRedirect }
        return try await next(request, context)
    }

    func valid(_ token: String) -> Bool { tokens.contains { BearerAuthentication.equal($0.secret, token) } }

    static var loginRedirect: Response { Response(status: .seeOther, headers: [.location: "/ui/login"]) }

    static func cookie(for token: String) -> Cookie {
        Cookie(name: cookie, value: token, path: "/ui", httpOnly: true, sameSite: .strict)
    }

    /// Tokens made of these characters can be kept in a cookie as they are (RFC 6265).
    static func fitsInCookie(_ token: String) -> Bool {
        token.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || "-._~+/=".unicodeScalars.contains(scalar))
        }
    }
}

/// GET and POST /ui/login.
struct UILogin: Sendable {
    let tokens: [AccessToken]

    func add(to group: RouterGroup<CoordinatorContext>) {
        group.get("login", use: form)
        group.post("login", use: submit)
    }

    @Sendable func form(_ request: Request, context: CoordinatorContext) async throws -> Response {
        Self.page(message: nil)
    }

    @Sendable func submit(_ request: Request, context: CoordinatorContext) async throws -> Response {
        let body = try await request.body.collect(upTo: 4096)
        let fields = URLComponents(string: "?" + String(buffer: body).replacingOccurrences(of: "+", with: " "))?.queryItems ?? []
        let token = fields.first { $0.name == "token" }?.value ?? ""
        guard tokens.contains(where: { BearerAuthentication.equal($0.secret, token) }) else {
            return Self.page(message: "That token is not one this coordinator accepts.", status: .unauthorized)
        }
        guard UIAuthentication.fitsInCookie(token) else {
            return Self.page(message: "That token has characters a cookie cannot hold; use letters, digits and -._~+/= only.", status: .badRequest)
        }
        var response = Response(status: .seeOther, headers: [.location: "/ui/clusters"])
        response.setCookie(UIAuthentication.cookie(for: token))
        return response
    }

    static func page(message: String?, status: HTTPResponse.Status = .ok) -> Response {
        HTMLPage.response(title: "Sign in", body: (message.map { "<p><strong>\(HTMLPage.escape($0))</strong></p>" } ?? "") + """
            <form method="post" action="/ui/login"><label>Access token <input type="password" name="token" autofocus></label>
            <button>Sign in</button></form>
            <p class="muted">Use a token from the coordinator's tokens file, as for <code>dumpfleet upload</code>.</p>
            """, status: status)
    }
}
