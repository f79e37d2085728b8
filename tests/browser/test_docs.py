"""/docs and /redoc in Chromium: they render from the vendored files with nothing fetched
from outside loopback, no JavaScript error and no CSP violation (the watched context fails
the test on any), under their Content-Security-Policy."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import BrowserWatch, ConsoleServer, assert_accessible

#: Swagger UI 5.36's own markup breaks this and no stylesheet can mend it: each operation's
#: summary is a button holding other buttons (copy the path, the authorize lock).
#: (Its colours that failed color-contrast are redrawn by static/docs/swagger-contrast.css.)
SWAGGER_UI_RULES = ("nested-interactive",)


def open_under_csp(page: Page, url: str) -> None:
    """Opens ``url``: a page, sent with a CSP allowing scripts from this origin only."""
    response = page.goto(url)
    assert response is not None
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "frame-ancestors 'none'" in csp


class TestSwaggerUi:
    def test_lists_the_operations(self, page: Page, console_server: ConsoleServer) -> None:
        """Swagger UI renders the API's operations offline, under a strict CSP."""
        open_under_csp(page, f"{console_server.base_url}/docs")
        expect(page.get_by_text("/api/v1/accounts", exact=True).first).to_be_visible()
        expect(page.get_by_text("/api/v1/auth/login", exact=True)).to_be_visible()

    def test_is_accessible(self, page: Page, console_server: ConsoleServer) -> None:
        """axe-core finds no serious or critical violation but Swagger UI's own (above)."""
        page.goto(f"{console_server.base_url}/docs")
        expect(page.get_by_text("/api/v1/auth/login", exact=True)).to_be_visible()
        assert_accessible(page, skip_rules=SWAGGER_UI_RULES)


class TestRedoc:
    @pytest.fixture(autouse=True)
    def _redoc_logo(self, browser_watch: BrowserWatch) -> None:
        """ReDoc 2.5 always renders its sidebar logo from its CDN; the CSP (img-src 'self')
        blocks it before any request, and ReDoc hides the broken image. Nothing else may."""
        browser_watch.allow_console(r"cdn\.redoc\.ly/redoc/logo-mini\.svg")

    def test_renders_the_document(self, page: Page, console_server: ConsoleServer) -> None:
        """ReDoc renders the API's title and operations offline, under its CSP."""
        open_under_csp(page, f"{console_server.base_url}/redoc")
        expect(page.get_by_role("heading", level=1)).to_contain_text("tgfleet")
        expect(page.get_by_text("/api/v1/auth/login").first).to_be_attached()

    def test_is_accessible(self, page: Page, console_server: ConsoleServer) -> None:
        """axe-core finds no serious or critical violation (ReDoc's failing colours are
        redrawn by its theme attribute and static/docs/redoc-contrast.css)."""
        page.goto(f"{console_server.base_url}/redoc")
        expect(page.get_by_role("heading", level=1)).to_contain_text("tgfleet")
        assert_accessible(page)
