"""The console in Simplified Chinese, in Chromium against a real ``tgfleet run --demo``: a
walk of every page an admin reaches (following the console's own links) that fails on any
text the catalogue would have translated, axe-core on each, screenshots at 1280 and 390 px;
the language switch (saved on the user, followed in another browser); the command palette
from the keyboard.

The browser asks for Chinese the way a person's does: its locale (``Accept-Language:
zh-CN``). Nothing here saves a language on the suite's admin, whose other tests read
English."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from babel.messages.pofile import read_po
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import BrowserWatch, ConsoleServer, assert_accessible, watch

CATALOGUE = (
    Path(__file__).resolve().parents[2]
    / "src/tgfleet/console/locale/zh_Hans/LC_MESSAGES/console.po"
)
SCREENSHOTS_ENV = "TGFLEET_CONSOLE_SCREENSHOTS"
#: Pages the walk visits at most (one per address shape: /accounts/{id} once).
MOST_PAGES = 80
#: Addresses the walk does not open: not console pages, or not safe to open twice.
SKIP = ("/logout", "/static/", "/api/", "/docs", "/redoc", "/openapi.json", "/metrics",
        "/livez", "/readyz", "/live", "/language")  # fmt: skip
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%\(\w+\)\.\d+f")
#: Every visible text node, and the texts a person meets in attributes.
TEXTS = """() => {
  const out = [];
  const skip = "script, style, code, pre, kbd, samp, textarea, [hidden], [aria-hidden=true]";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const parent = node.parentElement;
    if (!parent || parent.closest(skip)) continue;
    const text = node.textContent.replace(/\\s+/g, " ").trim();
    if (text) out.push(text);
  }
  const labelled = "[aria-label], [placeholder], [title], input[type=submit][value]";
  for (const el of document.querySelectorAll(labelled)) {
    if (el.closest(skip)) continue;
    for (const name of ["aria-label", "placeholder", "title", "value"]) {
      if (name === "value" && el.type !== "submit") continue;
      const value = el.getAttribute(name);
      if (value && value.trim()) out.push(value.replace(/\\s+/g, " ").trim());
    }
  }
  return out;
}"""
OUTSIDE = """() => {
    const width = document.documentElement.clientWidth;
    return [...document.querySelectorAll("body *")]
        .filter((el) => !el.parentElement.closest(".table-scroll"))
        .filter((el) => !el.closest("dialog:not([open])"))
        .filter((el) => el.getBoundingClientRect().right > width + 1)
        .map((el) => el.tagName + "." + el.className);
}"""


def english_texts() -> tuple[frozenset[str], list[re.Pattern[str]]]:
    """The catalogue's English strings whose Chinese differs: those without placeholders as
    they read, the others as patterns (a placeholder matches any text)."""
    with CATALOGUE.open("rb") as source:
        catalogue = read_po(source)
    plain: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for message in catalogue:
        if not message.id:
            continue
        sources = message.id if isinstance(message.id, tuple | list) else (message.id,)
        strings = message.string if isinstance(message.string, tuple | list) else (message.string,)
        for english in sources:
            if english in strings:
                continue  # "API", "ID": the same in both languages
            if PLACEHOLDER.search(english):
                parts = PLACEHOLDER.split(english)
                if sum(len(part.strip()) for part in parts) < 4:
                    continue  # "%(a)s: %(b)s" says nothing in either language
                patterns.append(re.compile(".+?".join(re.escape(part) for part in parts)))
            else:
                plain.add(" ".join(english.split()))
    return frozenset(plain), patterns


def untranslated(page: Page, plain: frozenset[str], patterns: list[re.Pattern[str]]) -> list[str]:
    texts: list[str] = page.evaluate(TEXTS)
    return sorted(
        {text for text in texts if text in plain or any(p.fullmatch(text) for p in patterns)}
    )


def shape(path: str) -> str:
    """An address with its ids as placeholders: the walk opens each shape once."""
    path = UUID.sub("{id}", path)
    return re.sub(r"/\d+(?=/|$)", "/{n}", path)


def shot_name(path: str) -> str:
    parts = [part for part in shape(path).strip("/").split("/") if part]
    return "-".join("item" if part in ("{id}", "{n}") else part for part in parts) or "overview"


def screenshots(tmp_path: Path) -> Path:
    folder = os.environ.get(SCREENSHOTS_ENV)
    return Path(folder) if folder else tmp_path


@pytest.fixture
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    """Every page of this module asks for Chinese, as a browser set to Chinese does."""
    return {**browser_context_args, "locale": "zh-CN", "reduced_motion": "reduce"}


def sign_in_zh(page: Page, server: ConsoleServer, username: str, password: str) -> None:
    """Through the form, read in Chinese: the labels are the translated ones."""
    page.goto(f"{server.base_url}/login")
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_role("heading", name="账号群总览")).to_be_visible()


def test_every_page_reads_chinese(
    page: Page, console_server: ConsoleServer, tmp_path: Path
) -> None:
    """From the overview, every console page the admin's links reach (one per address
    shape): <html lang="zh-Hans">, no English text the catalogue translates, axe-core
    clean, a screenshot at 1280 px; then the pages of the main menu at 390 px."""
    console_server.wait_online()
    plain, patterns = english_texts()
    assert "Sign out" in plain  # the catalogue is read
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in_zh(page, console_server, console_server.username, console_server.password)
    base = console_server.base_url
    queue = ["/"]
    seen: set[str] = {shape("/")}
    walked: list[str] = []
    problems: list[str] = []
    folder = screenshots(tmp_path)
    while queue and len(walked) < MOST_PAGES:
        path = queue.pop(0)
        response = page.goto(base + path)
        assert response is not None
        if "text/html" not in response.headers.get("content-type", ""):
            continue
        page.wait_for_load_state("load")
        walked.append(path)
        if page.locator("html").get_attribute("lang") != "zh-Hans":
            problems.append(f"{path}: <html lang> is not zh-Hans")
        left = untranslated(page, plain, patterns)
        if left:
            problems.append(f"{path}: English left: {left}")
        assert_accessible(page)
        page.screenshot(path=folder / f"{shot_name(path)}-1280-zh.png")
        for href in page.eval_on_selector_all(
            "a[href^='/']:not([download])", "els => els.map(a => a.getAttribute('href'))"
        ):
            target = urlsplit(href).path
            if target.startswith(SKIP) or shape(target) in seen:
                continue
            seen.add(shape(target))
            queue.append(target)
    assert len(walked) >= 5, f"the walk reached only {walked}"
    assert not problems, "\n".join(problems)

    page.set_viewport_size({"width": 390, "height": 844})
    menu = page.eval_on_selector_all(
        "nav.side a[href^='/']", "els => els.map(a => a.getAttribute('href'))"
    )
    for path in dict.fromkeys(urlsplit(href).path for href in menu):
        if path.startswith(SKIP):
            continue
        page.goto(base + path)
        page.wait_for_load_state("load")
        assert page.evaluate(OUTSIDE) == [], f"{path} is wider than 390 px"
        page.screenshot(path=folder / f"{shot_name(path)}-390-zh.png")


@pytest.fixture
def english(browser: Browser, browser_watch: BrowserWatch) -> Iterator[BrowserContext]:
    """A second browser, set to English."""
    context = browser.new_context(locale="en-US")
    watch(context, browser_watch)
    yield context
    context.close()
    problems = browser_watch.problems()
    assert not problems, "the browser saw:\n" + "\n".join(problems)


def test_the_switch_is_saved_on_the_user(
    page: Page, english: BrowserContext, console_server: ConsoleServer
) -> None:
    """A user switches to English in a Chinese browser; another browser, set to English,
    shows them Chinese after they switch back there; "follow the browser" is the user's to
    choose on each."""
    password = "language-switch-password-1"
    console_server.cli(
        "user", "create", "lena", "--role", "viewer", "--password-stdin", stdin=password
    )
    sign_in_zh(page, console_server, "lena", password)
    expect(page.locator("[data-language-apply]")).to_be_hidden()  # console.js has run
    page.get_by_label("语言").select_option("en")  # console.js submits on change
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", name="Fleet overview")).to_be_visible()
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "en")

    other = english.new_page()
    other.goto(f"{console_server.base_url}/login")
    other.get_by_label("Username").fill("lena")
    other.get_by_label("Password").fill(password)
    other.get_by_role("button", name="Sign in").click()
    expect(other.get_by_role("heading", name="Fleet overview")).to_be_visible()
    expect(other.locator("[data-language-apply]")).to_be_hidden()
    other.get_by_label("Language").select_option("zh-Hans")
    expect(other.locator("html")).to_have_attribute("lang", "zh-Hans")
    expect(other.get_by_role("heading", name="账号群总览")).to_be_visible()
    # The first browser's own cookie says English; the user's saved choice is now Chinese,
    # which wins once signed in.
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")


def test_the_palette_jumps_to_an_account_from_the_keyboard(
    page: Page, console_server: ConsoleServer
) -> None:
    console_server.wait_online()
    sign_in_zh(page, console_server, console_server.username, console_server.password)
    # console.js has run (it hides the language switch's button) before the shortcut.
    expect(page.locator("[data-language-apply]")).to_be_hidden()
    page.keyboard.press("Control+K")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    search = dialog.get_by_label("跳转到页面、账号或剧本")
    expect(search).to_be_focused()
    search.fill("fleet_0003")
    first = dialog.locator("[data-palette-item]").first
    expect(first).to_contain_text("fleet_0003")
    assert_accessible(page)
    page.keyboard.press("ArrowDown")
    expect(first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/accounts/[0-9a-f-]{36}$"))
    expect(page.get_by_test_id("account-label")).to_have_text("fleet_0003")

    page.get_by_role("link", name=re.compile("跳转")).click()
    expect(page.get_by_role("dialog")).to_be_visible()
    page.get_by_role("dialog").get_by_label("跳转到页面、账号或剧本").fill("总览")
    expect(page.locator("[data-palette-item]").first).to_have_attribute("href", "/")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
