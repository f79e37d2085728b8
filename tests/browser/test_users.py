"""Users, roles and the own-account page in Chromium against a real ``tgfleet run --demo``:
the admin creates an operator (a generated password, copied from the page) and a viewer;
each signs in and sees only what their role allows (a forged POST with their own CSRF token
is the server's 403); the operator creates an API token on their own page, copies it with the
Copy button and uses it against the API once, then revokes it; axe-core on every page; no
JavaScript error and no CSP violation (the watched contexts)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import BrowserWatch, ConsoleServer, assert_accessible, watch

OPERATOR = "usr-otto"
VIEWER = "usr-vera"
VIEWER_PASSWORD = "viewer-password-for-the-users-journey"
TOKEN = "deploy-script"


@pytest.fixture
def contexts(
    browser: Browser, console_server: ConsoleServer, browser_watch: BrowserWatch
) -> Iterator[list[BrowserContext]]:
    """Watched contexts, closed (and their problems reported) at the end."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()
    problems = browser_watch.problems()
    assert not problems, "the browser saw:\n" + "\n".join(problems)


def new_page(
    browser: Browser,
    server: ConsoleServer,
    watcher: BrowserWatch,
    contexts: list[BrowserContext],
    *,
    clipboard: bool = False,
) -> Page:
    context = browser.new_context(base_url=server.base_url, reduced_motion="reduce")
    if clipboard:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    watch(context, watcher)
    contexts.append(context)
    return context.new_page()


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/login?next=/me")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name=username, exact=True)).to_be_visible()


def csrf_token(page: Page) -> str:
    headers = page.locator("body").get_attribute("hx-headers")
    assert headers, "the page carries no CSRF token"
    token: str = json.loads(headers)["X-CSRF-Token"]
    return token


def nav_links(page: Page) -> list[str]:
    return page.locator("nav.side .nav-links a").all_inner_texts()


def test_create_an_operator_and_a_viewer_sign_in_as_each_and_use_an_api_token(
    browser: Browser,
    console_server: ConsoleServer,
    browser_watch: BrowserWatch,
    contexts: list[BrowserContext],
) -> None:
    browser_watch.allow_console(r"status of 40[03]")  # the 403 page, a refused form (400)
    admin = new_page(browser, console_server, browser_watch, contexts, clipboard=True)
    sign_in(admin, console_server.username, console_server.password)
    admin.get_by_test_id("me-link").click()
    admin.get_by_role("link", name="Users", exact=True).click()
    expect(admin.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    assert_accessible(admin)

    # An operator with a generated password: shown once, copied with the button.
    admin.get_by_label("Username", exact=True).fill(OPERATOR)
    admin.get_by_label("Role", exact=True).select_option("operator")
    admin.get_by_role("button", name="Create user").click()
    expect(admin.get_by_role("heading", name=f"User {OPERATOR} created")).to_be_visible()
    secret = admin.get_by_test_id("secret")
    generated = secret.input_value()
    assert len(generated) >= 20
    admin.get_by_role("button", name="Copy", exact=True).click()
    expect(admin.locator("[data-copy-state]")).to_have_text("Copied to the clipboard.")
    assert admin.evaluate("() => navigator.clipboard.readText()") == generated
    assert_accessible(admin)
    # A reload asks for the page again (the history entry was replaced): no secret.
    admin.reload()
    expect(admin.get_by_test_id("secret")).to_have_count(0)
    expect(admin.locator(f'tr[data-user="{OPERATOR}"] [data-testid="role"]')).to_have_text(
        "operator"
    )

    # A viewer with a chosen password.
    admin.get_by_label("Username", exact=True).fill(VIEWER)
    admin.get_by_label("Role", exact=True).select_option("viewer")
    admin.get_by_label("Initial password").fill(VIEWER_PASSWORD)
    admin.get_by_role("button", name="Create user").click()
    expect(admin.locator("#toasts")).to_contain_text(f"User {VIEWER} created.")

    # A look-alike name is named next to its field, nothing created.
    admin.get_by_label("Username", exact=True).fill(OPERATOR.upper())
    admin.get_by_role("button", name="Create user").click()
    expect(admin.locator('[data-error="username"]')).to_contain_text("already exists")
    assert_accessible(admin)

    admin.get_by_role("link", name="Roles", exact=True).click()
    expect(admin.locator('article[data-role="operator"] [data-testid="codes"]')).to_contain_text(
        "account:control"
    )
    assert_accessible(admin)

    # The viewer: no Users or Roles, a 403 page when asked anyway; their own page works.
    viewer = new_page(browser, console_server, browser_watch, contexts)
    sign_in(viewer, VIEWER, VIEWER_PASSWORD)
    assert "Users" not in nav_links(viewer)
    assert "Roles" not in nav_links(viewer)
    assert viewer.goto("/users").status == 403  # type: ignore[union-attr]
    expect(viewer.get_by_role("heading", name="Not allowed")).to_be_visible()
    viewer.goto("/me")
    expect(viewer.get_by_test_id("my-role")).to_have_text("viewer")
    expect(viewer.get_by_test_id("this-session")).to_be_visible()
    assert_accessible(viewer)

    # The operator: the same, and a forged POST with their own CSRF token is refused.
    operator = new_page(browser, console_server, browser_watch, contexts, clipboard=True)
    sign_in(operator, OPERATOR, generated)
    assert "Users" not in nav_links(operator)
    forged = operator.request.post(
        "/users",
        form={"csrf_token": csrf_token(operator), "username": "mallory", "role": "admin"},
        headers={"Accept": "text/html"},
    )
    assert forged.status == 403
    api = httpx.Client(
        base_url=f"{console_server.base_url}/api/v1",
        headers={"Authorization": f"Bearer {console_server.api_token()}"},
        timeout=15,
    )
    with api:
        assert api.get("/users/mallory").status_code == 404
        denied = api.get("/audit", params={"action": "auth.denied", "actor": f"user:{OPERATOR}"})
        denied.raise_for_status()
        assert [(item["target"], item["details"]) for item in denied.json()["items"]] == [
            ("POST /users", {"permission": "user:admin", "role": "operator"})
        ]

    # The operator's API token: scoped, shown once, copied, used once, revoked.
    operator.get_by_text("Create an API token", exact=True).click()
    operator.get_by_label("Name", exact=True).fill(TOKEN)
    operator.locator("#scope-account-read").check()
    operator.get_by_label("Expires", exact=True).select_option("7")
    assert_accessible(operator)
    operator.get_by_role("button", name="Create token").click()
    expect(operator.get_by_role("heading", name=f"API token {TOKEN} created")).to_be_visible()
    operator.get_by_role("button", name="Copy", exact=True).click()
    expect(operator.locator("[data-copy-state]")).to_have_text("Copied to the clipboard.")
    token = operator.evaluate("() => navigator.clipboard.readText()")
    assert token.startswith("tgf_")
    assert_accessible(operator)
    bearer = {"Authorization": f"Bearer {token}"}
    me = httpx.get(f"{console_server.base_url}/api/v1/auth/me", headers=bearer, timeout=15)
    assert me.status_code == 200, me.text
    assert (me.json()["username"], me.json()["token_name"]) == (OPERATOR, TOKEN)
    assert me.json()["permissions"] == ["account:read"]

    operator.reload()
    expect(operator.get_by_test_id("secret")).to_have_count(0)
    row = operator.locator(f'tr[data-token="{TOKEN}"]')
    expect(row.get_by_test_id("scopes")).to_have_text("account:read")
    row.get_by_role("button", name=f"Revoke {TOKEN}").click()
    expect(operator.locator("#toasts")).to_contain_text("Token revoked")
    gone = httpx.get(f"{console_server.base_url}/api/v1/auth/me", headers=bearer, timeout=15)
    assert gone.status_code == 401


def test_the_pages_read_in_dark_mode_with_every_confirm_open(
    browser: Browser,
    console_server: ConsoleServer,
    browser_watch: BrowserWatch,
    contexts: list[BrowserContext],
) -> None:
    """axe-core's contrast with prefers-color-scheme: dark, the confirms (Disable, Reset,
    Delete: red buttons) open."""
    context = browser.new_context(
        base_url=console_server.base_url, reduced_motion="reduce", color_scheme="dark"
    )
    watch(context, browser_watch)
    contexts.append(context)
    page = context.new_page()
    sign_in(page, console_server.username, console_server.password)
    assert_accessible(page)
    page.goto("/users")
    page.locator("details.confirm-action").evaluate_all("els => els.forEach(d => d.open = true)")
    expect(page.get_by_role("button", name=f"Disable {console_server.username}")).to_be_visible()
    assert_accessible(page)
    page.goto("/roles")
    assert_accessible(page)


def test_a_refused_clipboard_leaves_the_secret_selected(
    browser: Browser,
    console_server: ConsoleServer,
    browser_watch: BrowserWatch,
    contexts: list[BrowserContext],
) -> None:
    """When the browser refuses the clipboard, Copy selects the password for Ctrl+C and
    says so."""
    page = new_page(browser, console_server, browser_watch, contexts)
    page.add_init_script(
        "navigator.clipboard.writeText = () => Promise.reject(new Error('refused'));"
    )
    sign_in(page, console_server.username, console_server.password)
    page.goto("/users")
    page.get_by_label("Username", exact=True).fill("usr-fallback")
    page.get_by_role("button", name="Create user").click()
    secret = page.get_by_test_id("secret")
    generated = secret.input_value()
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.locator("[data-copy-state]")).to_contain_text("the text is selected")
    expect(secret).to_be_focused()
    selected = page.evaluate(
        "() => { const el = document.activeElement;"
        " return el.value.substring(el.selectionStart, el.selectionEnd); }"
    )
    assert selected == generated
