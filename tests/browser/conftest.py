"""The browser suite: Playwright driving Debian's Chromium against a real ``tgfleet run --demo``.

- Chromium is ``/usr/bin/chromium`` (``TGFLEET_CHROMIUM`` names another); Playwright's own
  browser download cannot run here. Without it the suite skips with the reason, unless
  ``CI=true``, where its absence fails the run (as PostgreSQL does in tests/conftest.py).
- `console_server`: one ``tgfleet run --demo`` process for the session on 127.0.0.1, a free
  port, SQLite in its own data directory, user ``admin`` with a password the fixture set.
- Every browser context is watched (`BrowserWatch`): a request leaving loopback is refused,
  and such a request, a JavaScript error, an error on the console or a Content-Security-Policy
  violation fails the test at its end (a test expecting one says so: ``allow_console``).
- `assert_accessible` runs axe-core (tests/browser/vendor) and fails on serious or critical
  violations.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    Request,
    Route,
    expect,
)

from tests.conftest import IN_CI
from tests.demo_server import demo_env, demo_process

BROWSER_DIR = Path(__file__).resolve().parent
AXE = BROWSER_DIR / "vendor" / "axe.min.js"
CHROMIUM_ENV = "TGFLEET_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
ADMIN = "admin"
DEMO_ACCOUNTS = 20
#: Chromium logs a CSP violation on the console in these words.
CSP_VIOLATION = re.compile(r"Content Security Policy", re.IGNORECASE)
SERIOUS = frozenset({"serious", "critical"})

# expect() waits up to 20 s (Playwright's default is 5): ReDoc lays out the whole API
# document on a 2-core machine shared with the server and its 20 accounts connecting.
expect.set_options(timeout=20_000)


@pytest.hookimpl(trylast=True)  # after any shuffling (pytest-randomly)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this folder's tests ``browser`` and run them after every other test: while
    Playwright's sync API is started (a session fixture) it holds the main thread's event
    loop, so no asyncio test or fixture could run after the first browser test."""
    browser = [item for item in items if item.path.is_relative_to(BROWSER_DIR)]
    for item in browser:
        item.add_marker(pytest.mark.browser)
    items[:] = [item for item in items if not item.path.is_relative_to(BROWSER_DIR)] + browser


def chromium_path() -> str:
    """The Chromium to drive; skips (fails in CI) when there is none."""
    path = os.environ.get(CHROMIUM_ENV, DEFAULT_CHROMIUM)
    if not os.access(path, os.X_OK):
        reason = f"no Chromium at {path} (apt-get install chromium, or set {CHROMIUM_ENV})"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}: the browser suite is mandatory in CI")
        pytest.skip(f"browser suite skipped: {reason}")
    return path


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch arguments with Debian's Chromium, headless."""
    return {**browser_type_launch_args, "executable_path": chromium_path(), "headless": True}


# ----------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class ConsoleServer:
    """A running ``tgfleet run --demo``: where it answers, who may sign in, its log."""

    base_url: str
    username: str
    password: str
    log: Path
    env: dict[str, str]

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """``tgfleet ARGS`` on this server's database and data directory (e.g. to add a
        viewer: ``cli("user", "create", "vera", "--role", "viewer", "--password-stdin",
        stdin=password)``); fails with its output unless it exits 0."""
        done = subprocess.run(
            [sys.executable, "-m", "tgfleet", *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"tgfleet {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def api_token(self) -> str:
        """A bearer token of the admin, for setting up through the API."""
        login = httpx.post(
            f"{self.base_url}/api/v1/auth/login",
            json={"username": self.username, "password": self.password},
            timeout=10,
        )
        login.raise_for_status()
        token: str = login.json()["access_token"]
        return token

    def sandbox_url(self) -> str:
        """The demo sandbox's HTTP control API (tgfleet.sandbox.control: ``/stats`` names
        each account's open connections), from the ``sandbox.ready`` line of the log."""
        found = re.search(
            r"sandbox\.ready .*control_port=(\d+)", self.log.read_text(errors="replace")
        )
        assert found, f"no sandbox.ready in the log:\n{_tail(self.log)}"
        return f"http://127.0.0.1:{found.group(1)}"

    def sandbox_connections(self) -> dict[str, int]:
        """Open connections per account username, as the sandbox counts them now."""
        stats = httpx.get(f"{self.sandbox_url()}/stats", timeout=10)
        stats.raise_for_status()
        connections: dict[str, int] = stats.json()["connections"]
        return connections

    def wait_online(self, count: int = DEMO_ACCOUNTS, within: float = 90) -> dict[str, int]:
        """Until ``count`` accounts are online (the demo's 20 connect over the first
        seconds); the accounts per state then. Fails with the last counts after ``within``."""
        headers = {"Authorization": f"Bearer {self.api_token()}"}
        deadline = time.monotonic() + within
        while True:
            page = httpx.get(f"{self.base_url}/api/v1/accounts?limit=1", headers=headers)
            page.raise_for_status()
            counts: dict[str, int] = page.json()["counts"]
            if counts.get("online", 0) >= count:
                return counts
            assert time.monotonic() < deadline, f"not {count} online in {within} s: {counts}"
            time.sleep(0.25)  # polling another process


@pytest.fixture(scope="session")
def console_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ConsoleServer]:
    """``tgfleet run --demo`` for the whole session (the sandbox brings its 20 accounts
    online over the first seconds); ``admin``'s password is set through the CLI once the
    server is ready. Its log is printed when a test of the session failed.

    Synchronous on purpose (not tests.harness.Proc): Playwright's sync API holds the event
    loop of the main thread while the browser runs, so no asyncio fixture can run beside it."""
    folder = tmp_path_factory.mktemp("console-server")
    log = folder / "run.log"
    env = demo_env(folder)
    try:
        with demo_process(folder, env, log) as base_url:
            password = secrets.token_urlsafe(24)
            running = ConsoleServer(base_url, ADMIN, password, log, env)
            running.cli("user", "reset-password", ADMIN, "--password-stdin", stdin=password)
            yield running
    finally:
        if request.session.testsfailed:
            print(f"\n--- tgfleet run --demo ({log}) ---\n{_tail(log, 200)}")


def _tail(log: Path, lines: int = 60) -> str:
    """The log's last lines, without the passwords the demo prints (the generated
    ``admin``'s, on the line after it is announced, and ``demo``'s)."""
    kept: list[str] = []
    hide_next = False
    for line in log.read_text(errors="replace").splitlines():
        if hide_next and line.strip():
            kept.append("    <password hidden>")
            hide_next = False
        elif "password" in line:
            # rich wraps a long line: the password may start the next one
            hide_next = "shown only this once" in line or line.rstrip().endswith("password")
            kept.append(re.sub(r"password\s+\S+", "password <hidden>", line))
        else:
            kept.append(line)
    return "\n".join(kept[-lines:])


# ----------------------------------------------------------------------------- watching pages


@dataclass
class BrowserWatch:
    """What went wrong in one browser context: requests refused for leaving loopback,
    uncaught JavaScript errors, console errors and CSP violations."""

    outside_requests: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow_console(self, pattern: str) -> None:
        """A console error or CSP violation this test expects (e.g. the 403 it provokes)
        fails nothing; the test says why."""
        self.allowed.append(re.compile(pattern))

    def route(self, route: Route, request: Request) -> None:
        host = urlsplit(request.url).hostname or ""
        if host in LOOPBACK:
            route.continue_()
            return
        self.outside_requests.append(request.url)
        route.abort("blockedbyclient")

    def console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = message.text
        if any(pattern.search(text) for pattern in self.allowed):
            return
        if CSP_VIOLATION.search(text):
            self.csp_violations.append(text)
        else:
            self.console_errors.append(text)

    def page_error(self, error: Error) -> None:
        self.page_errors.append(f"{error.name}: {error.message}")

    def problems(self) -> list[str]:
        return [
            *(f"request leaving loopback: {url}" for url in self.outside_requests),
            *(f"JavaScript error: {text}" for text in self.page_errors),
            *(f"console error: {text}" for text in self.console_errors),
            *(f"CSP violation: {text}" for text in self.csp_violations),
        ]


@pytest.fixture
def browser_watch() -> BrowserWatch:
    return BrowserWatch()


def watch(context: BrowserContext, browser_watch: BrowserWatch) -> None:
    """Hold every page of ``context`` (other tabs too) to loopback and record into
    ``browser_watch`` what goes wrong in them."""
    context.route("**/*", browser_watch.route)
    context.on("console", browser_watch.console)
    context.on("weberror", lambda web_error: browser_watch.page_error(web_error.error))


@pytest.fixture
def context(context: BrowserContext, browser_watch: BrowserWatch) -> Iterator[BrowserContext]:
    """pytest-playwright's context, watched (`watch`): the test fails at its end on
    anything `BrowserWatch` recorded."""
    watch(context, browser_watch)
    yield context
    problems = browser_watch.problems()
    assert not problems, "the browser saw:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------- accessibility


def axe_violations(page: Page, *, skip_rules: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now. axe is evaluated through the DevTools
    protocol, which the page's CSP (no inline script) does not apply to."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    rules = {rule: {"enabled": False} for rule in skip_rules}
    violations: list[dict[str, Any]] = page.evaluate(
        "(rules) => axe.run(document, {resultTypes: ['violations'], rules})"
        ".then(result => result.violations)",
        rules,
    )
    return violations


def assert_accessible(page: Page, *, skip_rules: tuple[str, ...] = ()) -> None:
    """No serious or critical axe-core violation on the page (``skip_rules``: rule ids a
    vendored component breaks and we cannot fix; say why where you pass them)."""
    serious = [v for v in axe_violations(page, skip_rules=skip_rules) if v["impact"] in SERIOUS]
    lines = [
        f"{v['id']} ({v['impact']}): {v['help']} - "
        + ", ".join(json.dumps(node["target"]) for node in v["nodes"][:5])
        + (f" and {len(v['nodes']) - 5} more" if len(v["nodes"]) > 5 else "")
        for v in serious
    ]
    assert not serious, f"axe-core on {page.url}:\n" + "\n".join(lines)
