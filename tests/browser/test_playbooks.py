"""The playbook pages in Chromium: write a playbook with a typo and see the problem at its
line (the gutter marks it, the link moves the caret there), fix it (Check, then Create),
save a second version, diff v1 and v2, dry-run it; pin a demo group to a version and let it
follow the latest again. axe-core on every page; no JavaScript error and no CSP violation
(the watched context)."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import Page, expect

from tests.browser.conftest import BrowserWatch, ConsoleServer, assert_accessible
from tests.browser.test_import import OUTSIDE, sign_in

V1 = """\
rules:
  - name: greet
    when:
      keywords: [hello]
    reply:
      templtes: ["Hi {{ sender.first_name }}!"]
"""
FIXED = V1.replace("templtes", "templates")
V2 = FIXED.replace("Hi ", "Hello again, ")


def caret_line(page: Page, selector: str) -> int:
    """The 1-based line of the textarea's caret."""
    line: int = page.eval_on_selector(
        selector, "el => el.value.slice(0, el.selectionStart).split('\\n').length"
    )
    return line


def test_write_with_a_typo_fix_diff_and_dry_run(
    page: Page, console_server: ConsoleServer, browser_watch: BrowserWatch
) -> None:
    # The refused save answers 422 with the form (Chromium logs the status as an error).
    browser_watch.allow_console(r"status of 422")
    name = f"journey-{uuid.uuid4().hex[:6]}"
    sign_in(page, console_server, "/playbooks")
    expect(page.get_by_role("heading", name="Playbooks", exact=True)).to_be_visible()
    assert_accessible(page)

    page.get_by_text("New playbook", exact=True).click()
    page.get_by_label("Name").fill(name)
    source = page.locator("#new-source")
    source.fill(V1)
    expect(page.locator("[data-gutter='new-source'] li")).to_have_count(6)  # kept in step
    page.get_by_role("button", name="Create").click()

    # Refused: the problem at line 6, the line marked, the text kept; nothing saved.
    problem = page.get_by_test_id("problem")
    expect(problem).to_have_count(1)
    expect(problem).to_contain_text("line 6")
    expect(problem).to_contain_text("rules[0].reply.templtes")
    expect(problem).to_contain_text("did you mean 'templates'?")
    expect(page.get_by_test_id("problems-summary")).to_have_text("1 problem: nothing was saved.")
    expect(page.locator("#new-L6")).to_have_class("bad")
    expect(source).to_have_value(V1)
    assert_accessible(page)
    problem.get_by_role("link", name="line 6").click()
    expect(source).to_be_focused()
    assert caret_line(page, "#new-source") == 6

    # Fixed: Check says so without saving, then Create saves version 1.
    source.fill(FIXED)
    page.get_by_role("button", name="Check").click()
    expect(page.get_by_test_id("problems-summary")).to_have_text(
        "No problems: the playbook compiles."
    )
    expect(page.locator("#new-L6")).not_to_have_class("bad")
    expect(page).to_have_url(re.compile(r"/playbooks$"))  # htmx: no navigation
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#toasts")).to_contain_text(f"Playbook {name} created: version 1.")
    expect(page.get_by_test_id("playbook-name")).to_have_text(name)
    playbook_url = page.url

    # Version 2 from the editor, then the diff of v1 and v2.
    editor = page.locator("[data-source-editor]")
    editor.fill(V2)
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.locator("#toasts")).to_contain_text("Saved as version 2.")
    expect(page.get_by_test_id("latest-version")).to_have_text("v2")
    assert_accessible(page)
    page.get_by_role("link", name="Changes from v1").click()
    changed = page.locator("table.diff tr.changed")
    expect(changed).to_have_count(1)
    expect(changed.locator("td.old")).to_have_text(
        '      templates: ["Hi {{ sender.first_name }}!"]'
    )
    expect(changed.locator("td.new")).to_have_text(
        '      templates: ["Hello again, {{ sender.first_name }}!"]'
    )
    expect(changed.locator("td.mark")).to_have_text("~changed")
    expect(page.get_by_test_id("diff-summary")).to_have_text("1 changed, 0 added, 0 removed lines")
    assert_accessible(page)

    # Dry run: a rule fires with its reply; a message no rule matches says why.
    page.goto(playbook_url)
    panel = page.get_by_test_id("dry-run-form")
    panel.get_by_label("Message").fill("hello everyone")
    panel.get_by_label("Sender first name").fill("Dana")
    panel.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("dry-run-verdict")).to_have_text(
        "Rule greet fires (version 2, template)."
    )
    expect(page.get_by_test_id("dry-run-reply")).to_have_text("Hello again, Dana!")
    panel.get_by_label("Message").fill("good night")
    panel.get_by_label("Version").fill("1")
    panel.get_by_role("button", name="Run").click()
    expect(page.get_by_test_id("dry-run-verdict")).to_have_text(
        "No reply (version 1): no_rule_matched"
    )
    expect(page).to_have_url(playbook_url)  # swapped in place
    assert_accessible(page)

    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate(OUTSIDE) == []
    assert_accessible(page)

    # Dark mode: as readable (axe-core's contrast) on the editor and the diff's tints.
    # (Without motion: axe-core would measure the links mid-transition to their dark colour.)
    page.emulate_media(color_scheme="dark", reduced_motion="reduce")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.reload()
    expect(page.get_by_test_id("playbook-name")).to_have_text(name)
    assert_accessible(page)
    page.goto(f"{playbook_url}/diff?old=1&new=2")
    expect(page.locator("table.diff tr.changed")).to_have_count(1)
    assert_accessible(page)


def test_pin_a_group_to_a_version_and_follow_the_latest_again(
    page: Page, console_server: ConsoleServer
) -> None:
    """A demo group (its playbook has one version, so replies do not change)."""
    sign_in(page, console_server, "/playbooks")
    page.get_by_role("link", name="support-faq").click()
    row = page.locator("tr[data-group]").first
    group = row.get_attribute("data-group")
    pin = row.get_by_test_id("pin").get_by_role("combobox")
    expect(pin).to_have_value("")
    pin.select_option("1")
    row.get_by_role("button", name="Set").click()
    expect(page.locator("#toasts")).to_contain_text("pinned to version 1.")
    row = page.locator(f'tr[data-group="{group}"]')
    expect(row.get_by_test_id("pin").get_by_role("combobox")).to_have_value("1")
    assert_accessible(page)
    page.goto(f"{console_server.base_url}/playbooks")
    listed = page.locator("tr[data-playbook]", has=page.get_by_role("link", name="support-faq"))
    expect(listed.get_by_test_id("used-by").locator("li").first).to_contain_text("pinned to v1")

    page.get_by_role("link", name="support-faq").click()
    row = page.locator(f'tr[data-group="{group}"]')
    row.get_by_test_id("pin").get_by_role("combobox").select_option("")
    row.get_by_role("button", name="Set").click()
    expect(page.locator("#toasts")).to_contain_text("now follows the latest version.")
    expect(
        page.locator(f'tr[data-group="{group}"]').get_by_test_id("pin").get_by_role("combobox")
    ).to_have_value("")
