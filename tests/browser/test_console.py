"""The console in Chromium against a real ``tgfleet run --demo``: an operator's journeys,
the guards a browser meets (CSRF, permissions, escaping, the CSP), accessibility, layout at
1280 and 390 px (screenshots) and the keyboard.

The demo's accounts are labelled fleet_0001 ... fleet_0020. A test that stops some asks
for `fleet`, which starts them again and waits until all 20 are online, so the tests pass
in any order on the one server of the session.

Screenshots go to pytest's temporary directory; with ``TGFLEET_CONSOLE_SCREENSHOTS=docs/console``
they replace the committed ones that docs/console.md shows (a run must not dirty the tree).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Dialog,
    FilePayload,
    Page,
    Response,
    StorageState,
    expect,
)

from tests.browser.conftest import (
    DEMO_ACCOUNTS,
    BrowserWatch,
    ConsoleServer,
    assert_accessible,
    watch,
)
from tests.factories import telethon_string
from tgfleet.demo.seed import chat_id_of
from tgfleet.sandbox.world_file import load_world

XSS = "<img src=x onerror=alert(1)>"
ADMIN_NAME = "admin"
VIEWER = "vera"
#: The label prefix "all matching" acts on: fleet_0010 ... fleet_0019, half the demo
#: ("fleet_00" would be all 20).
PREFIX = "fleet_001"
#: The demo's own accounts (and only them: imported test accounts are named otherwise).
DEMO_PREFIX = "fleet_"
SCREENSHOTS_ENV = "TGFLEET_CONSOLE_SCREENSHOTS"
WIDTHS = (1280, 390)
HEIGHTS = {1280: 900, 390: 844}
#: The overview's screenshot at 1280 px is this tall, to show its workers and events.
OVERVIEW_HEIGHT = 1350
NIL_ID = "00000000-0000-0000-0000-000000000000"


# ----------------------------------------------------------------------------- helpers


def eventually(check: Callable[[], bool], what: str, within: float = 30) -> None:
    """Until ``check()`` holds (it asks another process); fails naming ``what``."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.25)  # polling another process


def sign_in(page: Page, username: str, password: str) -> None:
    """Through the form, as a person does; lands on the overview."""
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()


def csrf_token(page: Page) -> str:
    """The session's CSRF token the page carries (base.html's hx-headers)."""
    headers = page.locator("body").get_attribute("hx-headers")
    assert headers, "the page carries no CSRF token"
    token: str = json.loads(headers)["X-CSRF-Token"]
    return token


def has_live_bar(page: Page) -> bool:
    return page.locator("[data-live]").count() > 0


def wait_live(page: Page) -> None:
    """Until the page's live stream is open (a page without one has no live bar)."""
    if has_live_bar(page):
        expect(page.locator("[data-live-state]")).to_have_attribute("data-status", "open")


@dataclass
class Console:
    """Opens watched browser contexts on the server (every one is checked at the end)."""

    browser: Browser
    server: ConsoleServer
    watcher: BrowserWatch
    contexts: list[BrowserContext] = field(default_factory=list)

    def page(self, state: StorageState | None = None, *, width: int = 1280, **options: Any) -> Page:
        # Reduced motion: a live update's highlight (.updated fades from a tinted background)
        # would have axe-core measure contrast against the tint while it lasts.
        context = self.browser.new_context(
            base_url=self.server.base_url,
            storage_state=state,
            viewport={"width": width, "height": HEIGHTS.get(width, 900)},
            **{"reduced_motion": "reduce", **options},
        )
        watch(context, self.watcher)
        self.contexts.append(context)
        return context.new_page()


@pytest.fixture
def console(
    browser: Browser, console_server: ConsoleServer, browser_watch: BrowserWatch
) -> Iterator[Console]:
    opened = Console(browser, console_server, browser_watch)
    yield opened
    for context in opened.contexts:
        context.close()
    problems = browser_watch.problems()
    assert not problems, "the browser saw:\n" + "\n".join(problems)


@pytest.fixture
def api(console_server: ConsoleServer) -> Iterator[httpx.Client]:
    """The JSON API as the admin: what the console did, read the other way."""
    headers = {"Authorization": f"Bearer {console_server.api_token()}"}
    with httpx.Client(
        base_url=f"{console_server.base_url}/api/v1", headers=headers, timeout=15
    ) as client:
        yield client


@pytest.fixture
def fleet(console_server: ConsoleServer, api: httpx.Client) -> Iterator[None]:
    """All 20 demo accounts online before the test, and again after it."""
    console_server.wait_online()
    yield
    started = api.post("/accounts/bulk", json={"action": "start", "filter": {"label": DEMO_PREFIX}})
    started.raise_for_status()
    console_server.wait_online()


@pytest.fixture(scope="session")
def admin_state(browser: Browser, console_server: ConsoleServer) -> StorageState:
    """The admin's console session (signed in through the form once)."""
    context = browser.new_context(base_url=console_server.base_url)
    try:
        sign_in(context.new_page(), console_server.username, console_server.password)
        state = context.storage_state()
    finally:
        context.close()
    return state


@pytest.fixture(scope="session")
def viewer_state(browser: Browser, console_server: ConsoleServer) -> StorageState:
    """A viewer's console session (``vera``, made with the CLI)."""
    password = "viewer-password-for-the-browser-suite"
    console_server.cli(
        "user", "create", VIEWER, "--role", "viewer", "--password-stdin", stdin=password
    )
    context = browser.new_context(base_url=console_server.base_url)
    try:
        sign_in(context.new_page(), VIEWER, password)
        state = context.storage_state()
    finally:
        context.close()
    return state


@pytest.fixture(scope="session")
def hostile_account(console_server: ConsoleServer) -> str:
    """An account labelled ``<img src=x onerror=alert(1)>`` (imported through the API,
    never started); its id."""
    imported = httpx.post(
        f"{console_server.base_url}/api/v1/accounts/import",
        params={"label": XSS, "name": "hostile.txt"},
        content=telethon_string(1601),
        headers={
            "Authorization": f"Bearer {console_server.api_token()}",
            "Content-Type": "application/octet-stream",
        },
        timeout=30,
    )
    imported.raise_for_status()
    (result,) = imported.json()["results"]
    assert result["ok"], result
    assert result["label"] == XSS
    account_id: str = result["account_id"]
    return account_id


def account_of(api: httpx.Client, label: str) -> dict[str, Any]:
    found = api.get("/accounts", params={"label": label, "limit": 2})
    found.raise_for_status()
    account: dict[str, Any]
    (account,) = [a for a in found.json()["items"] if a["label"] == label]
    return account


def bulk_stop(account_id: str, token: str | None = None) -> dict[str, str | float | bool]:
    """The bulk bar's form stopping one selected account (with ``token`` as its CSRF field)."""
    form: dict[str, str | float | bool] = {"action": "stop", "scope": "selected", "ids": account_id}
    if token is not None:
        form["csrf_token"] = token
    return form


def denials(api: httpx.Client, actor: str) -> list[dict[str, Any]]:
    """The ``auth.denied`` audit records of ``actor``, newest first."""
    records = api.get("/audit", params={"action": "auth.denied", "actor": actor, "limit": 50})
    records.raise_for_status()
    items: list[dict[str, Any]] = records.json()["items"]
    return items


# ----------------------------------------------------------------------------- journeys


def test_sign_in_shows_the_fleet_online(console: Console, console_server: ConsoleServer) -> None:
    """Signing in through the form lands on the overview (the page asked for first), which
    counts the demo's 20 accounts online."""
    console_server.wait_online()
    page = console.page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$|/login\?next=/$"))
    sign_in(page, console_server.username, console_server.password)
    expect(page).to_have_url(f"{console_server.base_url}/")
    expect(page.get_by_test_id("online-count")).to_have_text(str(DEMO_ACCOUNTS))
    expect(page.get_by_test_id("online-ratio")).to_have_text("100.0%")


def test_a_stopped_account_changes_in_another_tab_without_reload(
    console: Console,
    console_server: ConsoleServer,
    admin_state: StorageState,
    api: httpx.Client,
    fleet: None,
) -> None:
    """ "Stop" on an account's page; another tab on /accounts sees the row turn to stopped
    over the live stream, without reloading; the sandbox sees the connection closed."""
    label = "fleet_0012"
    account = account_of(api, label)
    assert console_server.sandbox_connections().get(label, 0) == 1

    watcher = console.page(admin_state)
    watcher.goto("/accounts")
    wait_live(watcher)
    watcher.evaluate("() => { window.notReloaded = true }")
    cell = watcher.locator(f'tr[data-account="{account["id"]}"] [data-testid=state]')
    expect(cell).to_contain_text("online")

    actor = console.page(admin_state)
    actor.goto(f"/accounts/{account['id']}")
    actor.get_by_role("button", name="Stop", exact=True).click()
    expect(actor.locator("#toasts")).to_contain_text("the account is now wanted stopped")
    expect(actor.get_by_test_id("desired")).to_have_text("stopped")

    expect(cell).to_contain_text("stopped")
    assert watcher.evaluate("() => window.notReloaded") is True
    eventually(
        lambda: console_server.sandbox_connections().get(label, 0) == 0,
        f"the sandbox sees {label} disconnected",
    )
    assert account_of(api, label)["desired_state"] == "stopped"


def test_bulk_stop_all_matching_a_label(
    console: Console, admin_state: StorageState, api: httpx.Client, fleet: None
) -> None:
    """ "All accounts matching" label fleet_00: the preview names as many as the API's dry
    run, the confirmation stops exactly those and says matched/changed."""
    dry = api.post(
        "/accounts/bulk", json={"action": "stop", "filter": {"label": PREFIX}, "dry_run": True}
    ).json()
    matching = api.get("/accounts", params={"label": PREFIX, "limit": 100}).json()["items"]
    count = dry["matched"]
    assert count == len(matching) == 10

    page = console.page(admin_state)
    page.goto(f"/accounts?label={PREFIX}")
    page.get_by_label("all accounts matching the filter").check()
    page.get_by_role("button", name="Stop…").click()
    expect(page.get_by_test_id("preview-count")).to_have_text(
        f"This will stop {count} accounts matching the filter."
    )
    expect(page.locator("ul.preview li")).to_have_count(len(dry["sample"]))
    named = [text.split()[0] for text in page.locator("ul.preview li").all_inner_texts()]
    assert named == [match["label"] for match in dry["sample"]]

    page.get_by_role("button", name=f"Yes, stop {count}").click()
    expect(page).to_have_url(re.compile(rf"/accounts\?label={PREFIX}"))
    expect(page.locator("#toasts")).to_contain_text(f"stop: {count} matched, {count} changed.")
    after = api.get("/accounts", params={"label": DEMO_PREFIX, "limit": 100}).json()["items"]
    stopped = sorted(a["label"] for a in after if a["desired_state"] == "stopped")
    assert stopped == sorted(a["label"] for a in matching)
    (record,) = api.get("/audit", params={"action": "account.bulk", "limit": 1}).json()["items"]
    assert record["actor"] == f"user:{ADMIN_NAME}"
    assert record["details"]["matched"] == count


def test_enable_a_group_with_a_playbook_and_see_the_replies(
    console: Console,
    console_server: ConsoleServer,
    admin_state: StorageState,
    api: httpx.Client,
    fleet: None,
) -> None:
    """On an account's page: replies off in one of its groups, then on with the support FAQ
    playbook (each Save audited by the API's service); a member then mentions the account
    there (the sandbox's control API), the account answers, and the page lists the reply."""
    label = "fleet_0005"
    world = load_world(Path(console_server.env["TGFLEET_DATA_DIR"]) / "demo" / "world.yaml")
    (me,) = [a for a in world.accounts if a.username == label]
    group = next(g for g in world.groups if me.id in g.members)
    member = next(m for m in group.members if m in world.members_by_id)
    chat_id = chat_id_of(group)
    account = account_of(api, label)

    page = console.page(admin_state)
    page.goto(f"/accounts/{account['id']}")
    row = page.locator(f'tr[data-chat="{chat_id}"]')
    row.get_by_role("switch").uncheck()
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#toasts")).to_contain_text("replies off")
    row.get_by_role("switch").check()
    faq = row.locator("select[name=playbook] option", has_text="support-faq")
    playbook_id = faq.get_attribute("value")
    row.get_by_label("Playbook").select_option(value=playbook_id)
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#toasts")).to_contain_text("replies on")
    expect(row.get_by_role("switch")).to_be_checked()
    groups = api.get(f"/accounts/{account['id']}/groups", params={"limit": 100}).json()["items"]
    (saved,) = [g for g in groups if g["chat_id"] == chat_id]
    assert saved["enabled"] is True
    assert saved["playbook_id"] == playbook_id

    sandbox = console_server.sandbox_url()
    answered: list[str] = []

    def replied() -> bool:
        sent = httpx.get(f"{sandbox}/stats", timeout=10).json()["messages_sent"].get(label, [])
        answered[:] = [m["text"] for m in sent if m["reply_to_origin"] in origins]
        return bool(answered)

    origins: list[int] = []
    for _ in range(3):  # the playbook lets an account answer once in 30 s per group
        posted = httpx.post(
            f"{sandbox}/groups/{group.id}/messages",
            json={"sender": member, "text": f"@{label} can you help me?"},
            timeout=10,
        )
        posted.raise_for_status()
        origins.append(posted.json()["origin_id"])
        with contextlib.suppress(AssertionError):
            eventually(replied, f"{label} answers in {group.title}", within=35)
            break
    assert answered, f"{label} never answered in {group.title}"

    def listed() -> bool:
        page.reload()
        return page.get_by_test_id("reply").filter(has_text=answered[0]).count() > 0

    eventually(listed, "the page lists the reply")
    reply = page.get_by_test_id("reply").filter(has_text=answered[0]).first
    expect(reply).to_contain_text(group.title)


def test_a_viewer_sees_no_controls_and_a_forged_post_is_refused(
    console: Console, viewer_state: StorageState, api: httpx.Client
) -> None:
    """A viewer's pages have no control; a POST forged from its session (with its own CSRF
    token) is refused with 403 by the permission, audited, and changes nothing."""
    page = console.page(viewer_state)
    target = account_of(api, "fleet_0015")
    for path in ("/", "/accounts", f"/accounts/{target['id']}"):
        page.goto(path)
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        expect(page.locator("main form[method=post]")).to_have_count(0)
        for name in ("Start…", "Stop…", "Restart…"):
            expect(page.get_by_role("button", name=name)).to_have_count(0)
        expect(page.locator("[data-select-row]")).to_have_count(0)
        expect(page.get_by_role("switch")).to_have_count(0)
    before = len(denials(api, f"user:{VIEWER}"))

    forged = page.request.post("/accounts/bulk", form=bulk_stop(target["id"], csrf_token(page)))
    assert forged.status == 403
    on_its_page = page.request.post(
        f"/accounts/{target['id']}/control",
        form={"csrf_token": csrf_token(page), "action": "stop"},
    )
    assert on_its_page.status == 403
    records = denials(api, f"user:{VIEWER}")
    assert len(records) == before + 2
    assert [r["target"] for r in records[:2]] == [
        "POST /accounts/{account_id}/control",
        "POST /accounts/bulk",
    ]
    assert {r["details"]["permission"] for r in records[:2]} == {"account:control"}
    assert account_of(api, "fleet_0015")["desired_state"] == target["desired_state"]


def test_a_post_without_the_csrf_token_is_refused(
    console: Console, admin_state: StorageState, api: httpx.Client
) -> None:
    """The admin's own session without the CSRF token, or with it from another site's
    page (its Origin): 403, audited, nothing stopped."""
    page = console.page(admin_state)
    page.goto("/accounts")
    target = account_of(api, "fleet_0016")
    before = len(denials(api, f"user:{ADMIN_NAME}"))
    refused = page.request.post("/accounts/bulk", form=bulk_stop(target["id"]))
    assert refused.status == 403
    elsewhere = page.request.post(
        "/accounts/bulk",
        form=bulk_stop(target["id"], csrf_token(page)),
        headers={"Origin": "https://attacker.example"},
    )
    assert elsewhere.status == 403
    records = denials(api, f"user:{ADMIN_NAME}")
    assert len(records) == before + 2
    assert [r["target"] for r in records[:2]] == ["POST /accounts/bulk"] * 2
    assert [r["details"] for r in records[:2]] == [
        {"reason": "cross_origin", "via": "console"},
        {"reason": "csrf_token", "via": "console"},
    ]
    assert account_of(api, "fleet_0016")["desired_state"] == target["desired_state"]


def test_a_hostile_label_renders_as_text(
    console: Console, admin_state: StorageState, hostile_account: str
) -> None:
    """The label ``<img src=x onerror=alert(1)>`` shows as those characters: no image, no
    dialog."""
    page = console.page(admin_state)
    dialogs: list[str] = []

    def answer(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", answer)
    page.goto(f"/accounts?q={quote('<img')}")
    link = page.locator(f'tr[data-account="{hostile_account}"] th a')
    expect(link).to_have_text(XSS)
    expect(page.locator("main img")).to_have_count(0)
    page.goto("/")
    expect(page.locator("main img")).to_have_count(0)
    assert dialogs == []


# ----------------------------------------------------------------------------- every page


@dataclass(frozen=True)
class ConsolePage:
    """A page of the console and how to reach it (``open`` returns its response)."""

    name: str
    open: Callable[[Page], Response | None]
    signed_in: bool = True
    status: int = 200


def _goto(path: str) -> Callable[[Page], Response | None]:
    return lambda page: page.goto(path)


def _bulk_preview(page: Page) -> Response | None:
    page.goto(f"/accounts?label={PREFIX}")
    page.get_by_label("all accounts matching the filter").check()
    with page.expect_response(re.compile(r"/accounts/bulk/preview$")) as answer:
        page.get_by_role("button", name="Stop…").click()
    expect(page.get_by_test_id("preview-count")).to_be_visible()
    return answer.value


def _groups_preview(page: Page) -> Response | None:
    """The preview of switching replies off in the first chat (not confirmed)."""
    page.goto("/groups")
    page.locator("tbody[data-chat]").first.get_by_role("checkbox").first.check()
    with page.expect_response(re.compile(r"/groups/preview$")) as answer:
        page.get_by_role("button", name="Disable…").click()
    expect(page.get_by_test_id("preview-count")).to_be_visible()
    return answer.value


def _account(page: Page) -> Response | None:
    page.goto("/accounts?label=fleet_0001")
    with page.expect_response(re.compile(r"/accounts/[0-9a-f-]{36}$")) as answer:
        page.get_by_role("link", name="fleet_0001", exact=True).click()
    expect(page.get_by_test_id("account-label")).to_have_text("fleet_0001")
    return answer.value


def _import_result(page: Page) -> Response | None:
    """The import page's result table, for a file that is no session (nothing imported)."""
    page.goto("/import")
    page.get_by_label("Session files or zips").set_input_files(
        files=[FilePayload(name="notes.session", mimeType="text/plain", buffer=b"not a session")]
    )
    with page.expect_response(re.compile(r"/import$")) as answer:
        page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_test_id("import-summary")).to_have_text("0 imported, 1 failed.")
    return answer.value


# playbooks (routes/playbooks.py)
#: A playbook with two versions for the diff's pictures, made once through the console.
DIFF_EXAMPLE = "docs-example"
DIFF_V1 = """\
rules:
  - name: greet
    when:
      keywords: [hello, hi]
    reply:
      templates: ["Hello {{ sender.first_name }}!"]
"""
DIFF_V2 = DIFF_V1.replace("[hello, hi]", "[hello, hi, hey]") + (
    "  - name: hours\n    when: {keywords: [open, hours]}\n"
    '    reply: {templates: ["We are open 9 to 17, Monday to Friday."]}\n'
)


def _playbook(page: Page) -> Response | None:
    """The demo's support FAQ: its editor, the groups using it, versions, the dry run."""
    page.goto("/playbooks")
    with page.expect_response(re.compile(r"/playbooks/[0-9a-f-]{36}$")) as answer:
        page.get_by_role("link", name="support-faq", exact=True).click()
    expect(page.get_by_test_id("playbook-name")).to_have_text("support-faq")
    return answer.value


def _playbook_problems(page: Page) -> Response | None:
    """A new playbook refused for a typo: the problem at its line, nothing saved."""
    page.goto("/playbooks")
    page.get_by_text("New playbook", exact=True).click()
    page.get_by_label("Name").fill("draft")
    page.locator("#new-source").fill(DIFF_V1.replace("templates", "templtes"))
    with page.expect_response(re.compile(r"/playbooks$")) as answer:
        page.get_by_role("button", name="Create").click()
    expect(page.get_by_test_id("problem")).to_contain_text("line 6")
    return answer.value


def _playbook_diff(page: Page) -> Response | None:
    """Versions 1 and 2 of ``DIFF_EXAMPLE`` side by side (created on the first call)."""
    page.goto("/playbooks")
    if page.get_by_role("link", name=DIFF_EXAMPLE, exact=True).count() == 0:
        page.get_by_text("New playbook", exact=True).click()
        page.get_by_label("Name").fill(DIFF_EXAMPLE)
        page.locator("#new-source").fill(DIFF_V1)
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_test_id("playbook-name")).to_have_text(DIFF_EXAMPLE)
        page.locator("[data-source-editor]").fill(DIFF_V2)
        page.get_by_role("button", name="Save as a new version").click()
        expect(page.get_by_test_id("latest-version")).to_have_text("v2")
    else:
        page.get_by_role("link", name=DIFF_EXAMPLE, exact=True).click()
    with page.expect_response(re.compile(r"/diff\?old=1&new=2$")) as answer:
        page.get_by_role("link", name="Changes from v1").click()
    expect(page.get_by_test_id("diff")).to_be_visible()
    return answer.value


def _me_token(page: Page) -> Response | None:
    """The own-account page answering a new API token (shown once)."""
    page.goto("/me")
    page.get_by_text("Create an API token", exact=True).click()
    page.get_by_label("Name", exact=True).fill(f"screenshot-{uuid.uuid4().hex[:8]}")
    with page.expect_response(re.compile(r"/me/tokens$")) as answer:
        page.get_by_role("button", name="Create token").click()
    expect(page.get_by_test_id("secret")).to_be_visible()
    return answer.value


PAGES = {
    page.name: page
    for page in (
        ConsolePage("login", _goto("/login"), signed_in=False),
        ConsolePage("overview", _goto("/")),
        ConsolePage("accounts", _goto("/accounts")),
        ConsolePage("bulk-preview", _bulk_preview),
        ConsolePage("account", _account),
        ConsolePage("import", _goto("/import")),
        ConsolePage("import-result", _import_result),
        ConsolePage("error", _goto(f"/accounts/{NIL_ID}/nowhere"), status=404),
        # alerts (routes/alerts.py)
        ConsolePage("alerts", _goto("/alerts")),
        ConsolePage(
            "alert-silence-new", _goto("/alerts/silences/new?name=account&value=fleet_0001")
        ),
        ConsolePage("alert-silences", _goto("/alerts/silences")),
        ConsolePage("alert-history", _goto("/alerts/history")),
        # playbooks (routes/playbooks.py)
        ConsolePage("playbooks", _goto("/playbooks")),
        ConsolePage("playbook", _playbook),
        ConsolePage("playbook-problems", _playbook_problems, status=422),
        ConsolePage("playbook-diff", _playbook_diff),
        # audit and vault pages (routes/audit.py, routes/vault.py)
        ConsolePage("audit", _goto("/audit")),
        ConsolePage("audit-verify", _goto("/audit/verify")),
        ConsolePage("audit-record", _goto("/audit/1")),
        ConsolePage("vault", _goto("/vault")),
        # groups, workers, health (routes/groups.py, routes/workers.py)
        ConsolePage("groups", _goto("/groups")),
        ConsolePage("groups-preview", _groups_preview),
        ConsolePage("workers", _goto("/workers")),
        ConsolePage("health", _goto("/health/checks")),
        # users, roles, your account (routes/users.py, routes/me.py)
        ConsolePage("users", _goto("/users")),
        ConsolePage("roles", _goto("/roles")),
        ConsolePage("me", _goto("/me")),
        ConsolePage("me-token", _me_token),
    )
}


def screenshots(tmp_path: Path) -> Path:
    folder = os.environ.get(SCREENSHOTS_ENV)
    return Path(folder) if folder else tmp_path


def assert_fits(page: Page, width: int) -> None:
    """No horizontal scrolling of the page: nothing but a table's scroll region is wider
    than the viewport (html hides overflow-x, so each element is measured), and every
    table is inside its .table-scroll region."""
    sizes = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    sticking_out = page.evaluate(
        """(limit) => [...document.querySelectorAll('body *')]
            .filter(el => !el.closest('.table-scroll, .visually-hidden, .skip-link'))
            .filter(el => el.getBoundingClientRect().right > limit + 1)
            .map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : '')
                 + ' ' + Math.round(el.getBoundingClientRect().right))""",
        sizes[1],
    )
    assert sizes[0] <= sizes[1], f"the page scrolls sideways at {width} px: {sizes} {sticking_out}"
    assert not sticking_out, f"wider than {width} px: {sticking_out[:10]}"
    assert page.evaluate(
        "() => [...document.querySelectorAll('table')].every(t => t.closest('.table-scroll'))"
    ), "a table outside a .table-scroll region"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(PAGES))
def test_every_page(
    name: str,
    width: int,
    console: Console,
    admin_state: StorageState,
    browser_watch: BrowserWatch,
    tmp_path: Path,
) -> None:
    """Each page: its status, the CSP header, no JavaScript error or CSP violation (the
    watch), axe-core's serious and critical rules, no sideways scrolling, a screenshot."""
    spec = PAGES[name]
    if spec.status >= 400:
        browser_watch.allow_console(rf"status of {spec.status}")
    page = console.page(admin_state if spec.signed_in else None, width=width)
    response = spec.open(page)
    assert response is not None
    assert response.status == spec.status
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    # Measured once the styles and fonts are in (a POST's page answers before its CSS).
    page.wait_for_load_state("load")
    page.evaluate("() => document.fonts.ready.then(() => true)")
    wait_live(page)
    assert_fits(page, width)
    assert_accessible(page)
    folder = screenshots(tmp_path)
    if name == "overview" and width == WIDTHS[0]:  # the workers and events, below 900 px
        page.set_viewport_size({"width": width, "height": OVERVIEW_HEIGHT})
    page.screenshot(path=folder / f"{name}-{width}.png")
    if name == "account":  # its groups and replies are below the fold
        page.locator("#groups").scroll_into_view_if_needed()
        page.evaluate("() => document.getElementById('groups').scrollIntoView()")
        page.screenshot(path=folder / f"account-groups-{width}.png")
    if name == "playbook-problems":  # the form is below the list
        page.locator("#problems-new").evaluate("el => el.scrollIntoView({block: 'center'})")
        page.screenshot(path=folder / f"{name}-{width}.png")
    if name == "playbook":  # its groups, versions and dry run are below the editor
        page.evaluate("() => document.getElementById('dry-run').scrollIntoView()")
        page.screenshot(path=folder / f"playbook-dry-run-{width}.png")


def test_dark_mode(console: Console, admin_state: StorageState, tmp_path: Path) -> None:
    """The pages follow prefers-color-scheme: dark, as readable (axe's contrast rule) as in
    light."""
    page = console.page(admin_state, color_scheme="dark")
    _account(page)
    assert page.evaluate("() => matchMedia('(prefers-color-scheme: dark)').matches")
    assert_accessible(page)
    for path in ("/import", "/accounts", "/"):
        page.goto(path)
        assert_accessible(page)
    page.set_viewport_size({"width": WIDTHS[0], "height": OVERVIEW_HEIGHT})
    page.screenshot(path=screenshots(tmp_path) / "overview-1280-dark.png")


# ----------------------------------------------------------------------------- keyboard


def test_the_sign_in_form_works_by_keyboard(
    console: Console, console_server: ConsoleServer
) -> None:
    page = console.page()
    page.goto("/login")
    expect(page.get_by_label("Username")).to_be_focused()
    page.keyboard.type(console_server.username)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(console_server.password)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()


def test_the_accounts_page_by_keyboard(console: Console, admin_state: StorageState) -> None:
    """ "/" focuses the search; Tab reaches the bulk buttons, each with a visible focus
    ring; Enter on "Stop…" with nothing selected says so (a toast)."""
    page = console.page(admin_state)
    page.goto("/accounts")
    page.keyboard.press("/")
    expect(page.get_by_role("searchbox", name="Search")).to_be_focused()
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent.trim()") == "Stop…":
            break
    else:
        pytest.fail("Tab never reached the bulk bar's Stop… button")
    ring = page.evaluate(
        """() => { const s = getComputedStyle(document.activeElement);
                   return [s.outlineStyle, parseFloat(s.outlineWidth)] }"""
    )
    assert ring[0] != "none"
    assert ring[1] >= 2, ring
    page.keyboard.press("Enter")
    expect(page.locator("#toasts")).to_contain_text("Select at least one account")


# ----------------------------------------------------------------------------- without JavaScript


def test_reading_works_without_javascript(
    console: Console, admin_state: StorageState, console_server: ConsoleServer
) -> None:
    """With JavaScript off the overview and the accounts are plain pages: counts, rows, and
    a live bar that says to reload."""
    console_server.wait_online()
    page = console.page(admin_state, java_script_enabled=False)
    page.goto("/")
    expect(page.get_by_test_id("online-count")).to_have_text(str(DEMO_ACCOUNTS))
    page.goto("/accounts")
    expect(page.get_by_role("link", name="fleet_0001", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="fleet_0020", exact=True)).to_be_visible()
    if has_live_bar(page):
        expect(page.locator("[data-live-state]")).to_have_text(
            "Live updates need JavaScript; reload to refresh."
        )
