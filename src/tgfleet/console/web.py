"""What every console response and request follows: security headers, the cookies the
console sets, and the CSRF rules of state-changing requests.

Headers (``SecurityHeadersMiddleware``) go on every response of the process: console pages
get a Content-Security-Policy without ``unsafe-inline`` or ``eval`` for scripts (htmx is
configured to inject no inline styles or scripts, ``templates/base.html``); the API's JSON
gets ``default-src 'none'``. A route that sets its own policy (/redoc needs inline styles)
keeps it.

CSRF: a state-changing console request carries the session's CSRF token (form field
``csrf_token`` or header ``X-CSRF-Token``) and, when the browser sends one, an ``Origin``
naming this server. The session cookie is ``SameSite=Strict`` as well: two independent
guards. The login form, before any session exists, uses a double-submit cookie.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tgfleet.console import i18n

SESSION_COOKIE: Final = "tgfleet_session"
#: The language chosen in this browser (also saved on the user when signed in).
LANGUAGE_COOKIE: Final = "tgfleet_language"
LOGIN_CSRF_COOKIE: Final = "tgfleet_login_csrf"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

CONSOLE_CSP: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # Pico CSS draws its checkmarks and chevrons as data: SVGs.
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"

#: Paths that are not console pages (JSON, metrics, probes, documentation, static files).
_NOT_CONSOLE: Final = (
    "/api/",
    "/metrics",
    "/livez",
    "/readyz",
    "/health",
    "/openapi.json",
    "/docs",
    "/redoc",
)

_COMMON_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)


#: Console pages below a prefix of ``_NOT_CONSOLE`` (the health document is ``/health``,
#: the page that renders it ``/health/checks``).
_CONSOLE_BELOW: Final = ("/health/checks",)


def is_console_path(path: str) -> bool:
    return path.startswith(_CONSOLE_BELOW) or not path.startswith(_NOT_CONSOLE)


def wants_html(request: Request) -> bool:
    """A browser asking for a page: a console path whose client accepts HTML (an API
    client, or curl's ``*/*``, gets the JSON error body)."""
    return is_console_path(request.url.path) and "text/html" in request.headers.get("accept", "")


class SecurityHeadersMiddleware:
    """The headers above on every HTTP response, unless the response set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = (
            CONSOLE_CSP.encode() if is_console_path(scope.get("path", "")) else API_CSP.encode()
        )

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {key.lower() for key, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", policy))
                headers.extend(item for item in _COMMON_HEADERS if item[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class LanguageMiddleware:
    """Each console request speaks the language this browser chose (its cookie) or, without
    a choice, the best of its ``Accept-Language``; a signed-in user's saved choice wins
    (``guard.signed_in``). The page says which (``Content-Language``) and that it varies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_console_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        i18n.use_locale(
            i18n.negotiate(
                request.headers.get("accept-language"), request.cookies.get(LANGUAGE_COOKIE)
            )
        )

        async def with_language(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"content-language", i18n.current().code.encode()))
                headers.append((b"vary", b"Accept-Language, Cookie"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_language)


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def same_token(expected: str | None, presented: str | None) -> bool:
    """Constant-time equality of two non-empty tokens."""
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def origin_allowed(request: Request) -> bool:
    """No ``Origin`` (a same-origin form in some browsers, or no browser), or one naming the
    host this request came to (a cross-site form or fetch names another)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def secure_cookies(request: Request, forced: bool) -> bool:
    """Cookies are ``Secure`` when the request came over https (directly, or through a
    trusted proxy) or the operator said so (``TGFLEET_CONSOLE_SECURE_COOKIES``)."""
    return forced or request.url.scheme == "https"


def local_target(raw: str | None) -> str:
    """Where to go after signing in: a path on this server, never another site (``//evil``,
    ``/\\evil`` or a full URL fall back to the overview)."""
    if not raw or not raw.startswith("/") or raw.startswith(("//", "/\\")):
        return "/"
    if any(ord(char) < 0x20 or char == "\\" for char in raw):
        return "/"
    return raw[:2000]


FLASH_COOKIE: Final = "tgfleet_flash"


def set_flash(response: Response, text: str, level: str = "ok") -> None:
    """A notice the next page shows once (an action's result after its redirect)."""
    payload = base64.urlsafe_b64encode(json.dumps({"text": text[:500], "level": level}).encode())
    response.set_cookie(
        FLASH_COOKIE, payload.decode(), max_age=60, httponly=True, samesite="strict", path="/"
    )


def redirect_with_flash(url: str, text: str, level: str = "ok") -> RedirectResponse:
    """An action's answer: 303 to ``url``, which shows ``text`` once."""
    response = RedirectResponse(url, status_code=303)
    set_flash(response, text, level)
    return response


def read_flash(request: Request) -> dict[str, str] | None:
    """The pending notice, if any (the page that shows it deletes the cookie); a forged
    cookie is ignored."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (ValueError, TypeError):
        return None
    if not isinstance(value, dict):
        return None
    text, level = value.get("text"), value.get("level")
    if not isinstance(text, str) or level not in {"ok", "warn", "bad"}:
        return None
    return {"text": text[:500], "level": level}
