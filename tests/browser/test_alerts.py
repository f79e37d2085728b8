"""The alerts pages in Chromium against ``tgfleet run --demo``: a group's replies switched off
through the API make the evaluator fire GroupDisabled for the account; its row on /alerts
opens the silence form prefilled with the alert's labels, the silence is created with a
comment and a preset, the row then says silenced by it; on /alerts/silences it is expired
(confirmed), listed as expired, and the row is no longer muted. Each page passes axe-core;
no JavaScript error and no CSP violation (the watched context)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import BrowserWatch, ConsoleServer, assert_accessible
from tests.browser.test_console import SCREENSHOTS_ENV, WIDTHS, assert_fits
from tests.browser.test_import import sign_in

#: A demo account no other browser test changes.
LABEL = "fleet_0008"
#: The evaluator ticks every 2 s in the demo; the alert fires within this.
FIRES_WITHIN = 30.0


def _fires(api: httpx.Client, label: str, chat: str) -> bool:
    listed = api.get("/alerts", params={"alertname": "GroupDisabled", "limit": 1000})
    listed.raise_for_status()
    return any(
        a["labels"].get("account") == label and a["labels"].get("group") == chat
        for a in listed.json()["items"]
    )


def shoot(page: Page, name: str) -> None:
    """With TGFLEET_CONSOLE_SCREENSHOTS set: the page at each width into that folder (the
    firing alert's pages, which the every-page screenshots of an idle demo cannot show)."""
    folder = os.environ.get(SCREENSHOTS_ENV)
    if not folder:
        return
    size = page.viewport_size
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=Path(folder) / f"{name}-{width}.png", full_page=True)
    if size is not None:
        page.set_viewport_size(size)


@pytest.fixture
def switched_off(console_server: ConsoleServer) -> Iterator[dict[str, Any]]:
    """One of LABEL's groups with replies switched off by the operator (GroupDisabled
    fires for it), its setting put back afterwards."""
    console_server.wait_online()
    headers = {"Authorization": f"Bearer {console_server.api_token()}"}
    with httpx.Client(
        base_url=f"{console_server.base_url}/api/v1", headers=headers, timeout=15
    ) as api:
        found = api.get("/accounts", params={"label": LABEL, "limit": 2})
        found.raise_for_status()
        (account,) = [a for a in found.json()["items"] if a["label"] == LABEL]
        groups = api.get(f"/accounts/{account['id']}/groups", params={"limit": 100})
        groups.raise_for_status()
        group = groups.json()["items"][0]
        url = f"/accounts/{account['id']}/groups/{group['chat_id']}"
        api.put(url, json={"enabled": False}).raise_for_status()
        try:
            deadline = time.monotonic() + FIRES_WITHIN
            while not _fires(api, LABEL, str(group["chat_id"])):
                assert time.monotonic() < deadline, f"no GroupDisabled in {FIRES_WITHIN} s"
                time.sleep(0.25)  # polling another process
            yield group
        finally:
            api.put(
                url,
                json={
                    "enabled": group["enabled"],
                    "playbook_id": group["playbook_id"],
                    "playbook_version": group["playbook_version"],
                },
            ).raise_for_status()


def test_silence_a_firing_alert_from_its_row_then_expire_it(
    page: Page,
    console_server: ConsoleServer,
    switched_off: dict[str, Any],
    browser_watch: BrowserWatch,
) -> None:
    browser_watch.allow_console(r"status of 422")  # the form refused without a comment
    sign_in(page, console_server, "/alerts")
    chat = str(switched_off["chat_id"])
    row = page.locator("tr[data-alert]", has_text=f'account="{LABEL}"').filter(
        has_text=f'group="{chat}"'
    )
    expect(row).to_have_count(1)
    expect(row.get_by_test_id("muted")).to_contain_text("not muted")
    assert_accessible(page)

    row.get_by_test_id("silence-link").click()
    expect(page.get_by_role("heading", name="New silence")).to_be_visible()
    names = page.locator("input[name=name]")
    values = page.locator("input[name=value]")
    expect(names.first).to_have_value("alertname")
    expect(values.first).to_have_value("GroupDisabled")
    labels = {names.nth(i).input_value(): values.nth(i).input_value() for i in range(names.count())}
    assert labels["account"] == LABEL
    assert labels["group"] == chat
    assert_accessible(page)
    shoot(page, "alert-silence-from-row")

    # Without a comment: refused next to the field, nothing written.
    page.get_by_label("4h").check()
    page.get_by_test_id("create-silence").click()
    expect(page.get_by_test_id("comment-error")).to_contain_text("Say why")
    page.get_by_label("Comment (required)").fill("the group is being moved")
    page.get_by_test_id("create-silence").click()
    expect(page).to_have_url(f"{console_server.base_url}/alerts")
    expect(page.locator("#toasts")).to_contain_text("created")
    muted = row.get_by_test_id("muted")
    expect(muted).to_contain_text("silenced")
    expect(muted).to_contain_text("the group is being moved")
    expect(muted).to_contain_text(console_server.username)
    shoot(page, "alerts-silenced")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_fits(page, 390)
    page.set_viewport_size({"width": 1280, "height": 900})

    page.get_by_role("link", name="Silences", exact=True).click()
    current = page.locator("#current tr[data-silence]", has_text="the group is being moved")
    expect(current).to_have_count(1)
    silence_id = current.get_attribute("data-silence")
    assert_accessible(page)
    current.get_by_text("Expire…").click()
    current.get_by_test_id("expire").click()
    expect(page.locator("#toasts")).to_contain_text("expired")
    expired = page.locator(f'#expired tr[data-silence="{silence_id}"]')
    expect(expired.get_by_test_id("silence-state")).to_have_text("expired")
    expect(page.locator(f'#current tr[data-silence="{silence_id}"]')).to_have_count(0)

    page.get_by_role("link", name="Firing", exact=True).click()
    expect(row.get_by_test_id("muted")).to_contain_text("not muted")

    page.get_by_role("link", name="Notification history").click()
    expect(page.get_by_role("heading", name="Notification history")).to_be_visible()
    assert_accessible(page)
