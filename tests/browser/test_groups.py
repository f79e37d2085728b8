"""The groups, workers and health pages in Chromium against the demo: filter the groups by
title, check a whole chat, preview exactly the (account, group) pairs that change, confirm,
and see replies off there with the reason and the playbook kept; then on again with each
group's own playbook (the API reads the same back). The workers and health pages render;
axe-core on each page; no JavaScript error and no CSP violation (the watched context)."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import ConsoleServer, assert_accessible
from tests.browser.test_import import OUTSIDE, sign_in

#: What sticks out of the viewport in the page's own content (the header's navigation is
#: base.html's, shared by every page).
OUTSIDE_MAIN = OUTSIDE.replace('"body *"', '"main *"')


def _api_groups(server: ConsoleServer, account_id: str) -> dict[int, tuple[bool, str | None]]:
    """An account's groups as the API reads them: chat id -> (enabled, playbook id)."""
    headers = {"Authorization": f"Bearer {server.api_token()}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as api:
        answer = api.get(f"/api/v1/accounts/{account_id}/groups")
    assert answer.status_code == 200, answer.text
    return {g["chat_id"]: (g["enabled"], g["playbook_id"]) for g in answer.json()["items"]}


def test_filter_select_preview_confirm_and_back(page: Page, console_server: ConsoleServer) -> None:
    sign_in(page, console_server, "/groups")
    expect(page.get_by_role("heading", name="Groups", level=1)).to_be_visible()
    assert_accessible(page)
    # The last chat (by id): test_account switches the first group of fleet_0003.
    last = page.locator("tbody[data-chat]").last
    chat_id = int(last.get_attribute("data-chat") or "0")
    title = last.get_by_test_id("chat-title").inner_text()
    search = page.get_by_label("Title contains")
    search.fill(title)
    search.press("Enter")  # commits the field: no later change event swaps the results again
    expect(page).to_have_url(re.compile(r"[?&]q="))
    page.wait_for_load_state("networkidle")  # the search's own (delayed) request is in
    expect(page.locator("tbody[data-chat]")).to_have_count(1)
    chat = page.locator(f'tbody[data-chat="{chat_id}"]')
    pairs = [
        p or ""
        for p in chat.locator("tr[data-pair]").evaluate_all("rows => rows.map(r => r.dataset.pair)")
    ]
    assert pairs
    on = chat.locator('tr[data-pair] [data-testid="replies"]', has_text="on")
    expect(on).to_have_count(len(pairs))  # the demo switches every member's replies on
    account_id = pairs[0].split(":")[0]
    before = _api_groups(console_server, account_id)[chat_id]

    chat.get_by_role("checkbox").first.check()  # the whole chat
    expect(page.locator("[data-selected-count]")).to_have_text("1")
    page.get_by_role("button", name="Disable…").click()
    expect(page.get_by_role("heading", name="Switch replies off?")).to_be_visible()
    previewed = page.locator("tr[data-change]").evaluate_all(
        "rows => rows.map(r => r.dataset.change)"
    )
    assert sorted(previewed) == sorted(pairs)
    assert_accessible(page)
    page.get_by_role("button", name=re.compile(r"^Yes, switch replies off")).click()
    expect(page.locator("#toasts")).to_contain_text(f"Replies off in {len(pairs)} group")
    chat = page.locator(f'tbody[data-chat="{chat_id}"]')
    expect(chat.get_by_test_id("replies").first).to_have_text("off")
    expect(chat.get_by_test_id("disabled-reason").first).to_contain_text("operator")
    assert _api_groups(console_server, account_id)[chat_id] == (False, before[1])

    page.get_by_label("Replies").select_option("disabled")
    expect(page).to_have_url(re.compile(r"[?&]state=disabled"))
    page.wait_for_load_state("networkidle")
    chat = page.locator(f'tbody[data-chat="{chat_id}"]')
    chat.get_by_role("checkbox").first.check()
    page.get_by_role("button", name="Enable…").click()
    expect(page.get_by_role("heading", name="Switch replies on?")).to_be_visible()
    assert sorted(
        page.locator("tr[data-change]").evaluate_all("rows => rows.map(r => r.dataset.change)")
    ) == sorted(pairs)
    page.get_by_role("button", name=re.compile(r"^Yes, switch replies on")).click()
    expect(page.locator("#toasts")).to_contain_text(f"Replies on in {len(pairs)} group")
    assert _api_groups(console_server, account_id)[chat_id] == before

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{console_server.base_url}/groups")
    assert page.evaluate(OUTSIDE_MAIN) == []
    assert_accessible(page)


def test_workers_and_health_pages_render(page: Page, console_server: ConsoleServer) -> None:
    sign_in(page, console_server, "/workers")
    expect(page.get_by_role("heading", name="Workers", level=1)).to_be_visible()
    # The demo runs on SQLite: one process, no leases.
    expect(page.get_by_text("tgfleet run runs every account in its own process")).to_be_visible()
    expect(page.get_by_test_id("unassigned")).to_be_visible()
    assert_accessible(page)
    page.get_by_role("link", name="Health", exact=True).click()
    expect(page.get_by_role("heading", name="Health", level=1)).to_be_visible()
    expect(page.locator('tr[data-check^="database:responseTime"]')).to_be_visible()
    expect(page.get_by_test_id("overall")).to_contain_text(re.compile(r"Overall: (ok|warn|fail)"))
    assert_accessible(page)
    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/workers", "/health/checks"):
        page.goto(console_server.base_url + path)
        assert page.evaluate(OUTSIDE_MAIN) == [], path
