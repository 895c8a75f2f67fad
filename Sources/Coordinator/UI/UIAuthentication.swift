import Foundation
import HTTPTypes
import Hummingbird

/// The UI's sign-in: a browser cannot send a bearer header, so the token lives in an HttpOnly,
/// SameSite=Strict cookie scoped to /ui, set by the login form (or once by `?token=`, which is
/// then dropped from the address by a redirect, for scripted checks). Without a valid cookie or
/// `Authorization: Bearer` header, pages redirect to the login form.
///
/// Signing in is refused when a browser says the request comes from another site: otherwise a
/// page elsewhere could sign a visitor's browser in with the page's own token (login CSRF), and
/// the visitor would work in someone else's view.
struct UIAuthentication: RouterMiddleware {
    typealias Context = CoordinatorContext
    static let cookie = "dumpfleet_token"
    let tokens: [AccessToken]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/ui/login" { return try await next(request, context) }
        if let given = request.uri.queryParameters.get("token") {
            guard valid(given), Self.fitsInCookie(given), Self.comesFromThisSite(request) else { return Self.loginRedirect }
            let kept = request.uri.queryParameters.filter { $0.key != "token" }.map { URLQueryItem(name: String($0.key), value: String($0.value)) }
            var response = Response(status: .seeOther, headers: [.location: Self.localLocation(path: request.uri.path, query: kept)])
            response.setCookie(Self.cookie(for: given))
            return response
        }
        let header = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst("Bearer ".count)) : nil }
        guard let token = request.cookies[Self.cookie]?.value ?? header, valid(token) else { return Self.loginRedirect }
        return try await next(request, context)
    }

    /// A redirect target on this server: the path with one leading slash (browsers read a
    /// location that starts with two slashes, or a slash and a backslash, as another host),
    /// every character a path may not hold escaped, and the query.
    static func localLocation(path: String, query: [URLQueryItem]) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.insert("%")
        let trimmed = String(path.drop { $0 == "/" || $0 == "\\" })
        var location = "/" + (trimmed.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")
        var components = URLComponents()
        components.queryItems = query.isEmpty ? nil : query
        if let encoded = components.percentEncodedQuery { location += "?" + encoded }
        return location
    }

    /// False when a browser says the request comes from another site: `Sec-Fetch-Site` other
    /// than same-origin or none (typed in, bookmarked), or an `Origin` naming another host.
    /// Programs send neither and pass: they cannot carry someone else's cookie anyway.
    static func comesFromThisSite(_ request: Request) -> Bool {
        if let site = request.headers[HTTPField.Name("Sec-Fetch-Site")!] { return site == "same-origin" || site == "none" }
        guard let origin = request.headers[.origin] else { return true }
        guard let parts = URLComponents(string: origin), let host = parts.host, let authority = request.head.authority else { return false }
        return authority.lowercased() == (host + (parts.port.map { ":\($0)" } ?? "")).lowercased()
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
        guard UIAuthentication.comesFromThisSite(request) else {
            return Self.page(message: "Sign in from this coordinator's own page: a sign-in sent from another site is refused.", status: .forbidden)
        }
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
