"""The command palette's search: pages the viewer may read, accounts by label, username
or phone, playbooks by name — as the dialog's block and as a page without JavaScript."""

from __future__ import annotations

import re

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser
from tests.factories import make_accounts, make_playbook

BLOCK = {**HTML, "HX-Request": "true", "HX-Target": "palette-results"}
ITEM = re.compile(r'<a href="([^"]+)" data-palette-item data-kind="(\w+)">')


def hits(html: str) -> list[tuple[str, str]]:
    """(kind, address) of each result, in order."""
    return [(kind, url) for url, kind in ITEM.findall(html)]


async def test_accounts_and_playbooks_are_found_by_what_is_typed(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await make_accounts(
        sessionmaker,
        ["support-eu-1", "support-us-1", "welcome-1"],
        usernames=["eu_help", None, None],
    )
    playbook = await make_playbook(sessionmaker, "support-faq")
    await make_playbook(sessionmaker, "welcome-bot")

    found = await operator.http.get("/palette", params={"q": "support"}, headers=BLOCK)
    assert found.status_code == 200
    assert "<html" not in found.text  # the block alone
    assert hits(found.text) == [
        ("account", f"/accounts/{ids[0]}"),
        ("account", f"/accounts/{ids[1]}"),
        ("playbook", f"/playbooks/{playbook}"),
    ]
    by_username = await operator.http.get("/palette", params={"q": "eu_help"}, headers=BLOCK)
    assert hits(by_username.text) == [("account", f"/accounts/{ids[0]}")]
    two_words = await operator.http.get("/palette", params={"q": "support faq"}, headers=BLOCK)
    assert hits(two_words.text) == [("playbook", f"/playbooks/{playbook}")]


async def test_pages_are_found_by_name_or_by_another_word(operator: Browser) -> None:
    by_name = await operator.http.get("/palette", params={"q": "accounts"}, headers=BLOCK)
    assert ("page", "/accounts") in hits(by_name.text)
    by_word = await operator.http.get("/palette", params={"q": "swagger"}, headers=BLOCK)
    assert hits(by_word.text) == [("page", "/docs")]
    every = await operator.http.get("/palette", headers=BLOCK)
    pages = [url for kind, url in hits(every.text) if kind == "page"]
    assert pages[:3] == ["/", "/accounts", "/import"]  # the operator may import sessions


async def test_a_viewer_finds_only_what_their_role_reads(
    operator: Browser, console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ids = await make_accounts(sessionmaker, ["import-me"])
    seen = await console_viewer.http.get("/palette", params={"q": "import"}, headers=BLOCK)
    # A viewer reads accounts, but may not import sessions: no Import page.
    assert hits(seen.text) == [("account", f"/accounts/{ids[0]}")]
    allowed = await operator.http.get("/palette", params={"q": "import"}, headers=BLOCK)
    assert hits(allowed.text) == [("page", "/import"), ("account", f"/accounts/{ids[0]}")]
    nothing = await console_viewer.http.get("/palette", params={"q": "zzz"}, headers=BLOCK)
    assert hits(nothing.text) == []
    assert "Nothing matches “zzz”." in nothing.text


async def test_without_javascript_the_palette_is_a_search_page(operator: Browser) -> None:
    page = await operator.http.get("/palette", params={"q": "overview"}, headers=HTML)
    assert page.status_code == 200
    assert "<html" in page.text
    assert 'name="q" type="search" value="overview"' in page.text
    assert ("page", "/") in hits(page.text)


async def test_hostile_input_is_bounded_and_escaped(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    script = '<script>alert("x")</script>'
    found = await operator.http.get("/palette", params={"q": script}, headers=BLOCK)
    assert found.status_code == 200
    assert "<script>alert" not in found.text
    assert "&lt;script&gt;" in found.text
    too_long = await operator.http.get("/palette", params={"q": "x" * 101}, headers=HTML)
    assert too_long.status_code == 422
    percent = await operator.http.get("/palette", params={"q": "%_"}, headers=BLOCK)
    assert hits(percent.text) == []  # LIKE's wildcards are text, not patterns


async def test_the_palette_speaks_chinese_too(operator: Browser) -> None:
    found = await operator.http.get(
        "/palette", params={"q": "账号"}, headers={**BLOCK, "Accept-Language": "zh-CN"}
    )
    assert ("page", "/accounts") in hits(found.text)
    assert ">页面<" in found.text
