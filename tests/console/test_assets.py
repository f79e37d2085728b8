"""The static files, the offline /docs and /redoc pages and compression, through the real
application's middleware (no database needed: nothing here reaches it)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.responses import StreamingResponse
from starlette.types import Message
from tools import vendor

from tests.conftest import make_settings
from tgfleet.app import create_app
from tgfleet.console import assets
from tgfleet.console.assets import IMMUTABLE, REVALIDATE, STATIC_DIR, Vendor, static_url

VENDORED_MD = STATIC_DIR / "VENDORED.md"
#: Hosts a front-end file would load code, styles or fonts from.
CDN = re.compile(r"https?://[^\s\"'()]*(?:cdn|unpkg|jsdelivr|googleapis|gstatic)[^\s\"'()]*")
#: The one CDN address in a vendored file: ReDoc's sidebar logo, an <img> the /redoc CSP
#: (img-src 'self') blocks before any request is made (tests/browser/test_docs.py).
KNOWN_CDN = {"https://cdn.redoc.ly/redoc/logo-mini.svg"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    folder = tmp_path_factory.mktemp("assets")
    return create_app(make_settings(f"sqlite+aiosqlite:///{folder / 'unused.db'}", folder))


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


class TestDocsPages:
    @pytest.mark.parametrize(
        ("path", "csp", "loads"),
        [
            (
                "/docs",
                assets.DOCS_CSP,
                [
                    static_url(Vendor.swagger_ui_css),
                    static_url(assets.SWAGGER_CONTRAST),
                    static_url(Vendor.swagger_ui_js),
                    static_url(assets.SWAGGER_INIT),
                ],
            ),
            (
                "/redoc",
                assets.REDOC_CSP,
                [static_url(assets.REDOC_CONTRAST), static_url(Vendor.redoc)],
            ),
        ],
    )
    async def test_load_only_vendored_files(
        self, client: httpx.AsyncClient, path: str, csp: str, loads: list[str]
    ) -> None:
        """Each page loads its scripts and styles from /static only (no CDN, no inline
        script) and is sent with its Content-Security-Policy."""
        page = await client.get(path)
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == csp
        assert page.headers["x-content-type-options"] == "nosniff"
        assert re.findall(r'(?:src|href)="([^"]*)"', page.text) == loads
        assert "http" not in page.text
        assert re.search(r"<script>|<script [^>]*>[^<]", page.text) is None  # none inline
        for url in loads:
            assert (await client.get(url)).status_code == 200

    def test_policies(self) -> None:
        """No page may be framed; scripts come from this origin only; /docs allows no
        inline style either, /redoc needs them (styled-components)."""
        for csp in (assets.DOCS_CSP, assets.REDOC_CSP):
            assert "frame-ancestors 'none'" in csp
            assert "script-src 'self';" in csp
            assert "unsafe-eval" not in csp
        assert "unsafe-inline" not in assets.DOCS_CSP
        assert "style-src 'self' 'unsafe-inline'" in assets.REDOC_CSP

    async def test_openapi_stays_open(self, client: httpx.AsyncClient) -> None:
        """The document both pages read needs no credentials, as before."""
        document = await client.get("/openapi.json")
        assert document.status_code == 200
        assert "/api/v1/accounts" in document.json()["paths"]


class TestStaticFiles:
    async def test_vendored_files_are_immutable(self, client: httpx.AsyncClient) -> None:
        """A vendored file's URL holds its version: cached for a year, never revalidated."""
        response = await client.get(static_url(Vendor.htmx))
        assert response.status_code == 200
        assert response.headers["cache-control"] == IMMUTABLE
        assert response.headers["content-type"].startswith(("text/javascript", "application/"))
        assert response.content == (STATIC_DIR / Vendor.htmx).read_bytes()

    async def test_own_files_are_revalidated(self, client: httpx.AsyncClient) -> None:
        """The console's own files are checked on each use: 304 while their ETag holds."""
        url = static_url(assets.SWAGGER_INIT)
        first = await client.get(url)
        assert first.status_code == 200
        assert first.headers["cache-control"] == REVALIDATE
        etag = first.headers["etag"]
        again = await client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.headers["cache-control"] == REVALIDATE

    async def test_outside_the_folder_is_not_served(self, client: httpx.AsyncClient) -> None:
        """Only files under static/ are served: not the package's code next to it."""
        for path in ("/static/../assets.py", "/static/%2e%2e/assets.py", "/static/nothing.js"):
            assert (await client.get(path)).status_code == 404, path

    def test_static_url_busts_caches_of_own_files(self) -> None:
        """Own files get ?v= the start of their content's SHA-256; vendored files none."""
        content = (STATIC_DIR / assets.SWAGGER_INIT).read_bytes()
        digest = hashlib.sha256(content).hexdigest()[:12]
        assert static_url(assets.SWAGGER_INIT) == f"/static/{assets.SWAGGER_INIT}?v={digest}"
        assert static_url(Vendor.pico) == "/static/vendor/pico-2.1.1/pico.min.css"

    @pytest.mark.parametrize("path", ["nothing.js", "../assets.py", "vendor/htmx-1.0.0/htmx.js"])
    def test_static_url_refuses_a_missing_file(self, path: str) -> None:
        """A template naming a file that is not there fails loudly, not with a 404 later."""
        with pytest.raises(ValueError, match="no static file"):
            static_url(path)


class TestCompression:
    async def test_text_is_gzipped(self, client: httpx.AsyncClient) -> None:
        """A script is sent gzipped to a client that accepts it, and as it is otherwise."""
        url = static_url(Vendor.swagger_ui_js)
        size = (STATIC_DIR / Vendor.swagger_ui_js).stat().st_size
        async with client.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as zipped:
            assert zipped.headers["content-encoding"] == "gzip"
            wire = b"".join([chunk async for chunk in zipped.aiter_raw()])
        assert len(wire) < size / 3
        plain = await client.get(url, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert len(plain.content) == size

    async def test_event_streams_are_neither_compressed_nor_buffered(self, tmp_path: Path) -> None:
        """An event stream's first event leaves the application while the stream is still
        open (httpx's ASGI transport waits for the whole body, so the app is called
        directly), uncompressed, though the client accepts gzip."""
        app = create_app(make_settings("sqlite+aiosqlite:///:memory:", tmp_path))
        release = asyncio.Event()

        async def events() -> AsyncIterator[bytes]:
            yield b"id: 1\ndata: " + b"x" * 2000 + b"\n\n"
            await release.wait()
            yield b"id: 2\ndata: last\n\n"

        async def stream() -> StreamingResponse:
            return StreamingResponse(events(), media_type="text/event-stream")

        app.add_api_route("/test/stream", stream)
        sent: asyncio.Queue[Message] = asyncio.Queue()

        async def receive() -> Message:
            await release.wait()
            return {"type": "http.disconnect"}

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/test/stream",
            "raw_path": b"/test/stream",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"accept-encoding", b"gzip")],
            "client": ("127.0.0.1", 1234),
            "server": ("testserver", 80),
        }
        call = asyncio.create_task(app(scope, receive, sent.put))
        try:
            async with asyncio.timeout(10):
                start = await sent.get()
                first = await sent.get()
            headers = dict(start["headers"])
            assert b"content-encoding" not in headers
            assert first["body"].startswith(b"id: 1\ndata: xxx")
            assert first["more_body"] is True
            assert not call.done()
        finally:
            release.set()
            async with asyncio.timeout(10):
                await call


class TestVendoredFiles:
    def test_every_pinned_file_is_present_and_recorded(self) -> None:
        """Each package tools/vendor.py pins is in the tree and in VENDORED.md with its
        version, tarball and integrity (``python tools/vendor.py`` checks the bytes)."""
        recorded = VENDORED_MD.read_text(encoding="utf-8")
        for package in vendor.PACKAGES:
            for name in package.files.values():
                assert (package.folder / name).is_file(), f"{package.spec}: {name}"
            assert package.integrity in recorded, package.spec
            assert f"`{package.name}` | {package.version}" in recorded, package.spec
        for attribute in ("htmx", "htmx_sse", "pico", "swagger_ui_js", "swagger_ui_css", "redoc"):
            assert (STATIC_DIR / getattr(Vendor, attribute)).is_file(), attribute

    def test_no_file_loads_from_a_cdn(self) -> None:
        """No vendored script or style names a CDN, but ReDoc's logo (see KNOWN_CDN)."""
        found: set[str] = set()
        for file in (STATIC_DIR / "vendor").rglob("*"):
            if file.suffix in {".js", ".css"}:
                found.update(CDN.findall(file.read_text(encoding="utf-8", errors="replace")))
        assert found == KNOWN_CDN
