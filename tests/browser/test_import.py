"""The import page in Chromium: files picked with the file input and files dropped on the
drop zone (console.js adds them to the input) import, each with its result row; the page
passes axe-core, with no JavaScript error and no CSP violation (the watched context)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import ConsoleServer, assert_accessible
from tests.factories import telethon_file, telethon_string
from tests.vault.test_archive import make_zip

#: Seeds no other browser test imports (the server is shared by the session).
SEEDS = (9101, 9102, 9103)
#: Elements reaching past the viewport's right edge, but inside a table's own scroller.
OUTSIDE = """() => {
    const width = document.documentElement.clientWidth;
    return [...document.querySelectorAll("body *")]
        .filter((el) => !el.parentElement.closest(".table-scroll"))
        .filter((el) => el.getBoundingClientRect().right > width + 1)
        .map((el) => el.tagName + "." + el.className);
}"""


def sign_in(page: Page, server: ConsoleServer, path: str) -> None:
    page.goto(f"{server.base_url}/login?next={path}")
    page.get_by_label("Username").fill(server.username)
    page.get_by_label("Password").fill(server.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.base_url}{path}")


def test_picked_files_and_a_zip_with_a_bad_file_import(
    page: Page, console_server: ConsoleServer, tmp_path: Path
) -> None:
    sign_in(page, console_server, "/import")
    assert_accessible(page)
    one = telethon_file(tmp_path, SEEDS[0], name="imp-picked.session")
    archive = tmp_path / "imp-batch.zip"
    archive.write_bytes(
        make_zip(
            {
                "imp-zipped.session": telethon_file(tmp_path, SEEDS[1]).read_bytes(),
                "imp-notes.session": b"not a session at all",
            }
        )
    )
    page.get_by_label("Session files or zips").set_input_files([one, archive])
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_test_id("import-summary")).to_have_text("2 imported, 1 failed.")
    rows = page.locator("tr[data-result]")
    expect(rows).to_have_count(3)
    expect(page.locator('tr[data-result="imported"] th')).to_have_text(
        ["imp-picked.session", "imp-zipped.session"]
    )
    expect(page.locator('tr[data-result="bad_session_string"] th')).to_have_text(
        "imp-notes.session"
    )
    expect(page.get_by_role("link", name="imp-picked", exact=True)).to_be_visible()
    assert_accessible(page)
    # 390 px wide: nothing sticks out of the page (the result table scrolls in itself).
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate(OUTSIDE) == []


def test_a_dropped_file_joins_the_file_input(page: Page, console_server: ConsoleServer) -> None:
    sign_in(page, console_server, "/import")
    zone = page.locator("[data-dropzone]")
    expect(zone.locator("[data-dropzone-hint]")).to_be_visible()  # only with JavaScript
    dropped = page.evaluate_handle(
        """(text) => {
            const files = new DataTransfer();
            files.items.add(new File([text], "imp-dropped.txt", {type: "text/plain"}));
            return files;
        }""",
        telethon_string(SEEDS[2]),
    )
    zone.dispatch_event("dragenter", {"dataTransfer": dropped})
    expect(zone).to_have_class("dropzone dragging")
    zone.dispatch_event("drop", {"dataTransfer": dropped})
    expect(zone).to_have_class("dropzone")
    expect(zone.locator("[data-dropzone-list] li")).to_have_count(1)
    expect(zone.locator("[data-dropzone-list] li")).to_contain_text("imp-dropped.txt")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_test_id("import-summary")).to_have_text("1 imported, 0 failed.")
    expect(page.locator('tr[data-result="imported"] th')).to_have_text("imp-dropped.txt")
