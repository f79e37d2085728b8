"""The account page in Chromium: reached from the accounts table, it passes axe-core with
every control an admin has (export and replace forms open), fits 390 px (its tables scroll
in themselves), and its timeline filter swaps the timeline alone (htmx) with the filter in
the address; an account started on its page comes online, a group's replies go off and
on again with a playbook (the replies it then sends are listed: test_console's journey); no
JavaScript error and no CSP violation (the watched context)."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import ConsoleServer, assert_accessible
from tests.browser.test_import import OUTSIDE, sign_in


def test_the_account_page_is_accessible_fits_and_filters_its_timeline(
    page: Page, console_server: ConsoleServer
) -> None:
    console_server.wait_online()
    sign_in(page, console_server, "/accounts")
    first = page.locator("tr[data-account] th a").first
    label = first.inner_text()
    first.click()
    expect(page.get_by_test_id("account-label")).to_have_text(label)
    expect(page.get_by_test_id("state")).to_contain_text("online")
    for summary in ("Replace the session", "Export the session"):
        page.get_by_text(summary, exact=True).click()
    expect(page.get_by_label("Reason")).to_be_visible()
    assert_accessible(page)

    page.get_by_label("Kind").select_option("state")
    expect(page).to_have_url(re.compile(r"[?&]kind=state"))
    kinds = page.locator("table.timeline tbody td:nth-child(2)")
    expect(kinds.first).to_have_text("state")
    assert set(kinds.all_inner_texts()) == {"state"}
    expect(page.get_by_test_id("account-label")).to_have_text(label)  # the rest stayed

    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate(OUTSIDE) == []
    assert_accessible(page)


#: A demo account no other browser test stops (test_console stops fleet_0012 and fleet_001*).
LABEL = "fleet_0003"


def test_start_on_the_page_then_a_group_off_and_on_with_a_playbook(
    page: Page, console_server: ConsoleServer
) -> None:
    sign_in(page, console_server, f"/accounts?label={LABEL}")
    page.get_by_role("link", name=LABEL, exact=True).click()
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.locator("#toasts")).to_contain_text(
        "start: asked; the account is now wanted running."
    )
    expect(page.get_by_test_id("desired")).to_have_text("running")
    expect(page.get_by_test_id("state")).to_contain_text("online")

    row = page.locator("tr[data-chat]").first
    title = row.locator("th").inner_text()
    row.get_by_role("switch").uncheck()
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#toasts")).to_contain_text(f"Group {title}: replies off.")
    row = page.locator("tr[data-chat]").first
    expect(row.get_by_test_id("disabled-reason")).to_contain_text("operator")

    row.get_by_role("switch").check()
    playbooks = row.get_by_label("Playbook")
    playbooks.select_option(index=1)
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#toasts")).to_contain_text(f"Group {title}: replies on.")
    row = page.locator("tr[data-chat]").first
    expect(row.get_by_role("switch")).to_be_checked()
    expect(row.get_by_test_id("disabled-reason")).to_have_text("")
