"""The audit and vault pages in Chromium against a real ``tgfleet run --demo``: the chain
verifies, then a record tampered with in the database is named (and linked) by the page;
the vault's rotation started from its page shows its progress reaching 100 % and the
result. Each page passes axe-core, with no JavaScript error and no CSP violation."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import ConsoleServer, assert_accessible
from tests.browser.test_import import OUTSIDE, sign_in


def database(server: ConsoleServer) -> Path:
    return Path(server.env["TGFLEET_DATA_DIR"]) / "tgfleet.db"


@contextmanager
def tampered(server: ConsoleServer, seq: int) -> Iterator[None]:
    """Record ``seq``'s details rewritten in the database (as an intruder with database
    access would), put back afterwards so the shared server's chain verifies again."""
    with closing(sqlite3.connect(database(server), timeout=30)) as db:
        (original,) = db.execute(
            "SELECT details FROM audit_record WHERE seq = ?", (seq,)
        ).fetchone()
        with db:
            db.execute(
                "UPDATE audit_record SET details = ? WHERE seq = ?", ('{"edited": true}', seq)
            )
        try:
            yield
        finally:
            with db:
                db.execute("UPDATE audit_record SET details = ? WHERE seq = ?", (original, seq))


def test_verify_passes_then_names_the_tampered_record(
    page: Page, console_server: ConsoleServer
) -> None:
    sign_in(page, console_server, "/audit")
    expect(page.locator("tr[data-seq]").first).to_be_visible()
    assert_accessible(page)
    page.get_by_role("button", name="Verify chain").click()
    result = page.get_by_test_id("verify-result")
    expect(result).to_have_attribute("data-ok", "true")
    expect(result).to_contain_text("The chain is intact")
    assert_accessible(page)

    # The third record from the top of the list: a record in the middle of the chain.
    seq = int(page.locator("tr[data-seq]").nth(2).get_attribute("data-seq") or "0")
    assert seq > 0
    with tampered(console_server, seq):
        page.get_by_role("button", name="Verify chain").click()
        expect(result).to_have_attribute("data-ok", "false")
        expect(page.get_by_test_id("first-bad")).to_have_text(f"#{seq}")
        expect(page.get_by_test_id("verify-reason")).to_contain_text("content")
        assert_accessible(page)
        page.get_by_test_id("first-bad").click()
        expect(page).to_have_url(re.compile(rf"/audit/{seq}$"))
        expect(page.get_by_test_id("record-details")).to_contain_text('"edited": true')
        assert_accessible(page)
    page.goto(f"{console_server.base_url}/audit/verify")
    expect(page.get_by_test_id("verify-result")).to_have_attribute("data-ok", "true")


def test_the_log_filters_by_action_and_names_a_backwards_range(
    page: Page, console_server: ConsoleServer
) -> None:
    sign_in(page, console_server, "/audit")
    page.get_by_label("Action").fill("auth.*")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"action=auth\.\*"))
    actions = page.locator("tr[data-seq] td code")
    expect(actions.first).to_have_text(re.compile(r"^auth\."))
    page.get_by_label("From (UTC)").fill("2026-02-01T00:00")
    page.get_by_label("To (UTC)").fill("2026-01-01T00:00")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("error-to")).to_contain_text("after the start")
    assert_accessible(page)


def test_rotation_from_the_page_reaches_100_percent(
    page: Page, console_server: ConsoleServer
) -> None:
    sign_in(page, console_server, "/vault")
    assert_accessible(page)
    before = page.get_by_test_id("active-kek").inner_text()
    page.get_by_role("button", name="Rotate the key").click()
    expect(page).to_have_url(re.compile(r"/vault"))
    progress = page.get_by_test_id("rotation-progress")
    expect(progress).to_have_attribute("data-state", "done", timeout=60_000)
    expect(page.get_by_test_id("rotation-percent")).to_have_text("100 %")
    expect(page.get_by_test_id("rotation-bar")).to_have_attribute("value", "100")
    expect(page.get_by_test_id("rotation-result")).to_contain_text("0 failed")
    assert_accessible(page)
    page.reload()
    expect(page.get_by_test_id("active-kek")).not_to_have_text(before)
    expect(page.get_by_test_id("secrets-rewrap")).to_have_text("0")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate(OUTSIDE) == []
