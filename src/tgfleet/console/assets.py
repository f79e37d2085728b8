"""The console's static files, the offline API docs (/docs, /redoc) and response compression.

Everything under ``static/`` is served at ``/static`` (`mount_static`). The vendored files
(``static/vendor/<name>-<version>/``, listed in ``static/VENDORED.md``) carry their version
in their path, so browsers may keep them for a year without asking again; the console's own
files are revalidated on every use (an ETag answers 304 when unchanged) and `static_url`
gives them a ``?v=<hash of content>`` so a new release is fetched at once.

/docs (Swagger UI) and /redoc load only vendored files, so they work without internet; each
page is sent with a Content-Security-Policy: no inline script anywhere (Swagger UI's set-up
is a static file), inline styles only on /redoc, whose CSS-in-JS needs them.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
from functools import cache
from os import PathLike
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
VENDOR_DIR: Final = STATIC_DIR / "vendor"
STATIC_PATH: Final = "/static"
#: Vendored files: their path names their version, so they never change under one URL.
IMMUTABLE: Final = "public, max-age=31536000, immutable"
#: The console's own files: kept, but checked (ETag) before every use.
REVALIDATE: Final = "no-cache"


class Vendor:
    """The vendored files, relative to ``static/``, for `static_url` (a template writes
    ``static_url(vendor.htmx)``); `tools/vendor.py` fetches and checks them."""

    htmx: Final = "vendor/htmx-2.0.11/htmx.min.js"
    htmx_sse: Final = "vendor/htmx-ext-sse-2.2.4/sse.js"
    pico: Final = "vendor/pico-2.1.1/pico.min.css"
    swagger_ui_js: Final = "vendor/swagger-ui-5.36.0/swagger-ui-bundle.js"
    swagger_ui_css: Final = "vendor/swagger-ui-5.36.0/swagger-ui.css"
    redoc: Final = "vendor/redoc-2.5.2/redoc.standalone.js"


SWAGGER_INIT: Final = "docs/swagger-init.js"
#: Swagger UI's colours that fail WCAG AA contrast, redrawn.
SWAGGER_CONTRAST: Final = "docs/swagger-contrast.css"

_COMMON_CSP: Final = (
    "default-src 'none'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: /docs: scripts and styles from this origin only.
DOCS_CSP: Final = f"script-src 'self'; style-src 'self'; {_COMMON_CSP}"
#: /redoc: ReDoc writes its styles inline (styled-components) and runs its search in a
#: worker made from a blob.
REDOC_CSP: Final = (
    f"script-src 'self'; style-src 'self' 'unsafe-inline'; worker-src blob:; {_COMMON_CSP}"
)


class StaticAssets(StaticFiles):
    """StaticFiles with the cache policy above (StaticFiles itself sends the ETag and
    Last-Modified and answers 304)."""

    def file_response(
        self,
        full_path: str | PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        vendored = Path(full_path).resolve().is_relative_to(VENDOR_DIR)
        response.headers["Cache-Control"] = IMMUTABLE if vendored else REVALIDATE
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_static(app: FastAPI) -> None:
    """Serve ``static/`` at ``/static``."""
    app.mount(STATIC_PATH, StaticAssets(directory=STATIC_DIR), name="static")


def add_compression(app: FastAPI) -> None:
    """gzip for responses of 1 KB and more when the client accepts it. Starlette's
    GZipMiddleware never compresses ``text/event-stream`` (the live updates reach the
    browser as they are sent) and flushes every chunk of other streamed responses."""
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=6)


@cache
def static_url(path: str) -> str:
    """The URL of the static file ``path`` (relative to ``static/``): vendored files as
    they are (their path holds their version), the console's own with ``?v=`` the start of
    their content's SHA-256. A file that does not exist is a ValueError. Worked out once per
    process: the files are part of the installed package."""
    file = _existing(path)
    if path.startswith("vendor/"):
        return f"{STATIC_PATH}/{path}"
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:12]
    return f"{STATIC_PATH}/{path}?v={digest}"


def _existing(path: str) -> Path:
    file = (STATIC_DIR / path).resolve()
    if not file.is_relative_to(STATIC_DIR) or not file.is_file():
        raise ValueError(f"no static file {path!r} under {STATIC_DIR}")
    return file


#: ReDoc's colours that fail WCAG AA contrast (axe-core's color-contrast), darkened where
#: its theme sets them (ReDoc reads the theme as JSON from the element's attribute): the
#: red of inline code and of the error responses' tabs; REDOC_CONTRAST does the rest.
_REDOC_THEME: Final = html.escape(
    json.dumps(
        {
            "typography": {"code": {"color": "#b71c1c"}},
            "colors": {"responses": {"error": {"tabTextColor": "#ff7b72"}}},
        }
    ),
    quote=True,
)
REDOC_CONTRAST: Final = "docs/redoc-contrast.css"

docs_router = APIRouter(include_in_schema=False)


def _page(title: str, head: str, body: str, csp: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n",
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": REVALIDATE,
        },
    )


@docs_router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI on the OpenAPI document, from the vendored files."""
    openapi_url = html.escape(request.app.openapi_url or "", quote=True)
    return _page(
        f"{request.app.title} API - Swagger UI",
        f'<link rel="stylesheet" href="{static_url(Vendor.swagger_ui_css)}">\n'
        f'<link rel="stylesheet" href="{static_url(SWAGGER_CONTRAST)}">\n',
        f'<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>\n'
        f'<script src="{static_url(Vendor.swagger_ui_js)}"></script>\n'
        f'<script src="{static_url(SWAGGER_INIT)}"></script>\n',
        DOCS_CSP,
    )


@docs_router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc on the OpenAPI document, from the vendored file (it starts itself on the
    ``<redoc spec-url>`` element: no set-up script)."""
    openapi_url = html.escape(request.app.openapi_url or "", quote=True)
    return _page(
        f"{request.app.title} API - ReDoc",
        f'<link rel="stylesheet" href="{static_url(REDOC_CONTRAST)}">\n',
        f'<redoc spec-url="{openapi_url}" theme="{_REDOC_THEME}"></redoc>\n'
        f'<script src="{static_url(Vendor.redoc)}"></script>\n',
        REDOC_CSP,
    )
