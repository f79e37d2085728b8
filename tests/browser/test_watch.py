"""The guard every browser test runs under (`watch`) records what it must: a request
leaving loopback (refused), an uncaught error, a console error, a CSP violation."""

from __future__ import annotations

import time

from playwright.sync_api import Browser

from tests.browser.conftest import BrowserWatch, ConsoleServer, watch


def test_records_what_goes_wrong(browser: Browser, console_server: ConsoleServer) -> None:
    """On /docs (CSP script-src 'self'), each kind of trouble lands in its list; a console
    error the test allowed does not."""
    recorded = BrowserWatch()
    recorded.allow_console("expected by the test")
    context = browser.new_context()
    try:
        watch(context, recorded)
        page = context.new_page()
        page.goto("about:blank")  # no CSP: the request reaches the route and is refused
        page.evaluate("() => fetch('https://example.com/x').catch(() => null)")
        page.goto(f"{console_server.base_url}/docs")
        page.evaluate("() => { setTimeout(() => { throw new Error('boom') }, 0) }")
        page.evaluate("() => console.error('broken on purpose')")
        page.evaluate("() => console.error('expected by the test')")
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.ran = 1'; document.body.append(s) }"
        )
        deadline = time.monotonic() + 10
        while not (recorded.page_errors and recorded.csp_violations) and (
            time.monotonic() < deadline
        ):
            page.wait_for_timeout(50)  # polls: the events arrive from the browser
    finally:
        context.close()
    assert recorded.outside_requests == ["https://example.com/x"]
    assert recorded.page_errors == ["Error: boom"]
    refused, broken = recorded.console_errors  # Chromium logs the refused request too
    assert "ERR_BLOCKED_BY_CLIENT" in refused
    assert broken == "broken on purpose"
    assert len(recorded.csp_violations) == 1
    assert "script-src 'self'" in recorded.csp_violations[0]
