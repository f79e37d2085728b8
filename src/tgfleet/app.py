"""create_app: the FastAPI application, its lifespan, middleware and error rendering.

Every error leaves as ``{"error": code, "detail": message}`` with the request id in the
``X-Request-ID`` header; a 500 never carries a stack trace (it is logged with one).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tgfleet import __version__, metrics
from tgfleet.api import install_openapi, mount_routers
from tgfleet.components import publish
from tgfleet.config import Settings
from tgfleet.console import rotation as console_rotation
from tgfleet.console.assets import add_compression, docs_router, mount_static
from tgfleet.console.errors import html_error, sign_in_required
from tgfleet.console.exceptions import SignInRequired
from tgfleet.console.routes import ROUTERS as CONSOLE_ROUTERS
from tgfleet.console.routes.imports import IMPORT_PAGE
from tgfleet.console.web import LanguageMiddleware, SecurityHeadersMiddleware, wants_html
from tgfleet.exceptions import AppError
from tgfleet.kit.context import request_id_var
from tgfleet.kit.proxy import ForwardedHeadersMiddleware, TrustedProxies
from tgfleet.kit.schema import CONTROL_RULE, control_character
from tgfleet.logging import get_logger
from tgfleet.process import Process, Role, running
from tgfleet.vault.endpoints import IMPORT_PATH

if TYPE_CHECKING:
    from tgfleet.audit.schemas import AuditContext

log = get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
#: The route label of requests no route matched (404s, probes of random paths).
UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
#: SQLSTATE class 22, "data exception": a value the column or its type cannot hold.
_DATA_EXCEPTION = "22"
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def create_app(
    settings: Settings,
    *,
    run_worker: bool = False,
    role: Role | None = None,
    started: Callable[[Process], Awaitable[None]] | None = None,
    demo_context: AuditContext | None = None,
) -> FastAPI:
    """Build the API application; its lifespan runs the process's parts (`tgfleet.process`)
    for ``role`` (default ``run`` with ``run_worker``, else ``api``): with the account
    runtime in the same process (``tgfleet run``) it is stopped, every client disconnected,
    before anything else. ``started`` runs once they all are, before requests are served."""
    process_role = role or (Role.RUN if run_worker else Role.API)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings, process_role, demo_context=demo_context) as process:
            publish(app, process.components)
            if started is not None:
                await started(process)
            try:
                yield
            finally:
                await console_rotation.close(app)  # a rotation the console started

    app = FastAPI(
        title="tgfleet",
        version=__version__,
        description="Control plane for fleets of Telegram user accounts.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from the vendored files (docs_router)
        redoc_url=None,
    )
    app.state.settings = settings
    mount_routers(app)
    for router in CONSOLE_ROUTERS:
        app.include_router(router)
    install_openapi(app)
    app.include_router(docs_router)
    mount_static(app)
    _install_error_handlers(app)
    app.add_middleware(InputGuardMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        per_path={
            IMPORT_PATH: settings.import_max_upload_bytes,
            IMPORT_PAGE: settings.import_max_upload_bytes,
        },
    )
    app.add_middleware(LanguageMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestContextMiddleware)
    # Outside the access log, which so counts the bytes before compression.
    add_compression(app)
    # Outermost: everything inside sees the client a trusted proxy forwarded, or the peer.
    app.add_middleware(ForwardedHeadersMiddleware, trusted=TrustedProxies(settings.trusted_proxies))
    return app


class RequestContextMiddleware:
    """Request id (accepted from the client when well-formed, else generated), bound to the
    log context and echoed in ``X-Request-ID``; one access-log line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status_code = 500
        method = scope.get("method", "GET")
        if method not in _METHODS:
            method = "other"
        in_progress = metrics.HTTP_IN_PROGRESS.labels(method)
        in_progress.inc()
        size = 0

        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status_code, started_response, size
            if message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                started_response = True
                status_code = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # A bug: log it with its traceback, answer 500 without internals. Handled here,
            # inside the request context, so the body and header carry the request id.
            log.exception("http.unhandled", error=type(exc).__name__)
            if started_response:
                raise
            await _send_error(
                send_with_id,
                500,
                "internal_error",
                f"an unexpected error occurred; quote request id {request_id} to the operators",
            )
        finally:
            elapsed = time.perf_counter() - started
            in_progress.dec()
            # The route *template* (``/api/v1/accounts/{account_id}``), never the raw path:
            # the label set stays bounded whatever clients send.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            metrics.HTTP_REQUESTS.labels(method, route, str(status_code)).inc()
            metrics.HTTP_DURATION.labels(method, route).observe(elapsed)
            metrics.HTTP_RESPONSE_SIZE.labels(route).observe(size)
            log.info(
                "http.request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status_code,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, by Content-Length up front or by
    counting a streamed body, before any of it reaches a handler."""

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None):
        self.app = app
        self.default_max_bytes = max_bytes
        self.per_path = per_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.per_path.get(scope.get("path", ""), self.default_max_bytes)
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _refuse(scope, receive, send, 400, "Content-Length is not a number")
                return
            if int(declared) > max_bytes:
                await _refuse(scope, receive, send, 413, _too_large(max_bytes))
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise StarletteHTTPException(413, _too_large(max_bytes))
            return message

        await self.app(scope, counting_receive, send)


class InputGuardMiddleware:
    """Refuse, with 400, a path or query string that holds a control character once
    percent-decoded (``%00`` reached PostgreSQL and answered 500). Request bodies are
    screened by `RequestSchema`; this covers what FastAPI hands to query and path
    parameters, whichever endpoint declares them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = _url_problem(scope)
            if problem is not None:
                await _send_error(send, 400, "bad_request", problem)
                return
        await self.app(scope, receive, send)


def _url_problem(scope: Scope) -> str | None:
    char = control_character(scope.get("path", ""))
    if char is not None:
        return f"the URL path must not contain {char} or other {CONTROL_RULE}"
    query = scope.get("query_string", b"").decode("latin-1")
    # Decoded as Starlette decodes it for the endpoints (UTF-8, blanks kept).
    for name, value in parse_qsl(query, keep_blank_values=True):
        char = control_character(name) or control_character(value)
        if char is not None:
            shown = name.encode("unicode_escape").decode("ascii")  # never echo a raw control
            return f"query parameter '{shown}' must not contain {char} or other {CONTROL_RULE}"
    return None


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    """A refusal before the app ran: the JSON error, or a page for a browser on the console."""
    response = _error(status, _HTTP_CODES[status], detail, request=Request(scope, receive))
    await response(scope, receive, send)


def _too_large(max_bytes: int) -> str:
    return f"request body is larger than the limit of {max_bytes} bytes"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            decoded: str = value.decode("latin-1")
            return decoded
    return None


async def _send_error(send: Send, status: int, code: str, detail: str) -> None:
    response = JSONResponse({"error": code, "detail": detail}, status_code=status)
    body = response.body
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error(
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    request: Request | None = None,
) -> Response:
    """The error body: JSON, or a page for a browser on a console path."""
    if request is not None and wants_html(request):
        return html_error(request, status, detail, headers)
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _describe_validation(errors: list[Any]) -> str:
    parts = []
    for error in errors[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        message = error.get("msg", "invalid")
        if error.get("type") == "json_invalid":
            context = error.get("ctx", {}).get("error", "")
            return f"request body is not valid JSON: {context}".rstrip(": ")
        parts.append(f"{location}: {message}" if location else message)
    if len(errors) > 5:
        parts.append(f"... and {len(errors) - 5} more")
    return "; ".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    async def app_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, AppError):  # registered for AppError only
            raise exc
        if exc.status_code >= 500:
            log.error("http.app_error", code=exc.code, detail=exc.message)
        return _error(exc.status_code, exc.code, exc.message, exc.headers, request)

    async def validation_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, RequestValidationError):
            raise exc
        errors = list(exc.errors())
        code = (
            "invalid_json"
            if any(e.get("type") == "json_invalid" for e in errors)
            else ("validation_error")
        )
        return _error(422, code, _describe_validation(errors), request=request)

    async def http_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, StarletteHTTPException):
            raise exc
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), dict(exc.headers or {}), request)

    async def database_error(request: Request, exc: Exception) -> Response:
        log.error("http.database_unavailable", error=type(exc).__name__)
        return _error(
            503,
            "database_unavailable",
            "the database cannot be reached right now; nothing was changed",
            {"Retry-After": "5"},
            request,
        )

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(SignInRequired, sign_in_required)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)

    async def database_refused_value(request: Request, exc: Exception) -> Response:
        # A backstop: request schemas and the input guard keep values a column cannot hold
        # out (a NUL, an integer past the column); one that slips past is a bug, logged as
        # an error (no message: it can quote the value), yet the client's fault, so a 400.
        sqlstate = str(getattr(getattr(exc, "orig", None), "sqlstate", "") or "")
        if not isinstance(exc, DBAPIError) or not sqlstate.startswith(_DATA_EXCEPTION):
            raise exc
        log.error("http.database_refused_value", error=type(exc.orig).__name__, sqlstate=sqlstate)
        return _error(
            400,
            "invalid_input",
            "a value in this request cannot be stored (the database refused it); "
            "nothing was changed",
            request=request,
        )

    app.add_exception_handler(DBAPIError, database_refused_value)
    app.add_exception_handler(OperationalError, database_error)
    app.add_exception_handler(InterfaceError, database_error)
