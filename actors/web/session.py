"""The web page's sign-in: an HttpOnly cookie that stands for the API token, and CSRF protection.

A browser page cannot keep the bearer token anywhere script-readable without exposing it
to any script that runs in the page, and EventSource / WebSocket cannot send an
Authorization header. So the page asks for the token once (`POST /api/session`) and the
gateway answers with a session cookie (`egw_session`: HttpOnly, SameSite=Strict, Path=/)
that is *derived* from the token, never the token itself:

    ws1.<issued>.<nonce>.<signature>      signature = HMAC(key, "<issued>.<nonce>"), key = HMAC(api token, label)

It is stateless like the live feed's transaction tokens: it survives API restarts, needs no
table, expires after `SESSION_TTL`, and changing the API token revokes every session.

Where the cookie is accepted: everywhere the bearer token is (the REST endpoints the
OpenAPI document describes, and the live feed), by `session_middleware`, which turns a
valid cookie into the request's credential when the request carries no Authorization
header of its own. Reads (GET, HEAD) need nothing else: SameSite=Strict keeps the cookie
off cross-site requests, and the same-origin policy keeps other sites from reading answers.
A write (POST, PUT, DELETE, PATCH) to a protected endpoint signed in by cookie must also

* carry `X-CSRF-Token`: a value derived from the session (HMAC, so it cannot be made up)
  that the sign-in also sets as the script-readable cookie `egw_csrf` (SameSite=Strict).
  Only a script on the gateway's own origin can read that cookie and copy it into the
  header (double submit); another site can neither read it nor add the header, and
  cross-origin requests with custom headers need a CORS approval the gateway never gives;
* come from the gateway's own origin when the browser says where it comes from (`Origin`).

Otherwise it is refused with 403 `csrf_failed` before the handler runs. A websocket
upgrade authenticated by cookie must come from the gateway's own origin too (browsers
send cookies on cross-site websocket handshakes when SameSite is not Strict; this is the
second line). Nothing here logs a token, a cookie or a CSRF value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit
from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict

COOKIE = "egw_session"
CSRF_COOKIE = "egw_csrf"
CSRF_HEADER = "X-CSRF-Token"
PREFIX = "ws1"
SESSION_TTL = 30 * 24 * 3600  # a month: the page is used on the gateway's LAN by the household and the installer
MAX_COOKIE_LENGTH = 200
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _key(api_token: str) -> bytes:
    return hmac.new(api_token.encode(), b"egw web session v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(api_token: str, text: str) -> str:
    return _b64(hmac.new(_key(api_token), text.encode(), hashlib.sha256).digest()[:24])


def issue_session(api_token: str, now: float | None = None) -> str:
    """A new session cookie value for a browser that presented `api_token`."""
    issued = int(time.time() if now is None else now)
    payload = f"{PREFIX}.{issued}.{secrets.token_urlsafe(12)}"
    return f"{payload}.{_sign(api_token, payload)}"


def session_expiry(cookie: str) -> int | None:
    """The epoch second a well-formed cookie value stops being valid (its signature unchecked)."""
    parts = cookie.split(".")
    if len(parts) != 4 or parts[0] != PREFIX or not parts[1].isdigit():
        return None
    return int(parts[1]) + SESSION_TTL


def verify_session(api_token: str | None, cookie: str | None, now: float | None = None) -> bool:
    """True for a genuine, unexpired session cookie of this gateway's current token.

    Compared in constant time; a gateway without a token accepts no session.
    """
    if not api_token or not cookie or len(cookie) > MAX_COOKIE_LENGTH:
        return False
    payload, _, signature = cookie.rpartition(".")
    expires = session_expiry(cookie)
    if expires is None or not hmac.compare_digest(signature.encode(), _sign(api_token, payload).encode()):
        return False
    current = time.time() if now is None else now
    return int(payload.split(".")[1]) - 60 <= current < expires  # a minute of slack for a clock stepped back


def csrf_token(api_token: str, cookie: str) -> str:
    """The CSRF value that goes with one session: only the page that signed in learns it."""
    return _sign(api_token, "csrf:" + cookie)


def csrf_matches(api_token: str, cookie: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(presented.encode("utf-8", "replace"), csrf_token(api_token, cookie).encode())


def same_origin(request: web.Request) -> bool:
    """True unless the browser says the request comes from another origin than this gateway.

    A request without `Origin` (curl, an old browser on a same-origin GET) is not refused
    for that alone: the CSRF header is the check that always applies to writes. The host
    and port are compared, not the scheme: behind a TLS proxy the page is https while the
    gateway itself sees http.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def request_session(request: web.Request, api_token: str | None) -> str | None:
    """The request's session cookie when it is valid, else None."""
    cookie = request.cookies.get(COOKIE)
    return cookie if verify_session(api_token, cookie) else None


def set_session_cookies(response: web.StreamResponse, api_token: str, cookie: str) -> None:
    """The session (HttpOnly) and its CSRF value (readable by the page's script, for the header)."""
    response.set_cookie(COOKIE, cookie, max_age=SESSION_TTL, path="/", httponly=True, samesite="Strict")
    response.set_cookie(CSRF_COOKIE, csrf_token(api_token, cookie), max_age=SESSION_TTL, path="/", samesite="Strict")


def clear_session_cookies(response: web.StreamResponse) -> None:
    response.set_cookie(COOKIE, "", max_age=0, path="/", httponly=True, samesite="Strict")
    response.set_cookie(CSRF_COOKIE, "", max_age=0, path="/", samesite="Strict")


class CsrfError(Exception):
    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message, self.field = message, field


def check_write(request: web.Request, api_token: str, cookie: str) -> None:
    """Raise CsrfError unless a cookie-authenticated write comes from the gateway's own page."""
    if not same_origin(request):
        raise CsrfError("a write signed in by cookie must come from the gateway's own page (Origin does not match)", "header.Origin")
    if not csrf_matches(api_token, cookie, request.headers.get(CSRF_HEADER)):
        raise CsrfError(f"a write signed in by cookie needs the {CSRF_HEADER} header the page got at sign-in", f"header.{CSRF_HEADER}")


def _is_protected(request: web.Request) -> bool:
    from actors.api.routes import route_for

    resource = request.match_info.route.resource
    route = route_for(request.method, resource.canonical) if resource is not None else None
    return route is not None and route.protected


def _is_live(request: web.Request) -> bool:
    return request.path in ("/api/live", "/api/live/sse")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Accept the session cookie where the bearer token is accepted (see the module docstring).

    The cookie is turned into the request's `Authorization` header, so the route table's
    token check and the live feed's authorizer see one credential whichever way it came;
    a request that brings its own Authorization header or `?token=` is left as it is.
    """
    from actors.api.app import STATE_KEY, error_response

    if "Authorization" in request.headers or COOKIE not in request.cookies or (_is_live(request) and "token" in request.query):
        return await handler(request)
    api_token = request.app[STATE_KEY].token
    cookie = request_session(request, api_token)
    if cookie is None or api_token is None:
        return await handler(request)  # an expired or foreign cookie counts as no credential: the endpoint's own 401
    if request.method not in SAFE_METHODS:
        if not _is_protected(request):
            return await handler(request)
        try:
            check_write(request, api_token, cookie)
        except CsrfError as exc:
            return error_response(403, "csrf_failed", exc.message, field=exc.field)
    elif _is_live(request) and not same_origin(request):
        return error_response(403, "csrf_failed", "the live feed signed in by cookie must be opened from the gateway's own page", field="header.Origin")
    headers = CIMultiDict(request.headers)
    headers["Authorization"] = f"Bearer {api_token}"
    return await handler(request.clone(headers=headers))
