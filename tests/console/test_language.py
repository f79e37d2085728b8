"""The console's languages: the browser's Accept-Language, the switch (a cookie for the
browser, the user's saved choice when signed in), and Chinese pages that say Chinese."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser, csrf_of, sign_in
from tgfleet.console import i18n
from tgfleet.console.web import LANGUAGE_COOKIE
from tgfleet.models import AuditRecord, User

ZH = {**HTML, "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "en"),
        ("", "en"),
        ("zh-CN,zh;q=0.9", "zh-Hans"),
        ("zh", "zh-Hans"),
        ("zh-Hans-SG", "zh-Hans"),
        ("zh_CN", "zh-Hans"),
        ("zh-TW", "en"),  # Traditional Chinese is not shipped: English, not the wrong script
        ("zh-Hant, zh-HK", "en"),
        ("de-DE, zh;q=0.5", "zh-Hans"),
        ("en;q=0.3, zh;q=0.8", "zh-Hans"),
        ("zh;q=0, en", "en"),  # q=0 means "not this one"
        ("zh;q=abc, en", "en"),  # a malformed weight drops that entry only
        (";;,,=q", "en"),
        ("x" * 5000, "en"),
    ],
)
def test_accept_language_picks_the_best_shipped_language(header: str | None, expected: str) -> None:
    assert i18n.negotiate(header).code == expected


def test_a_saved_choice_wins_over_the_browser_and_an_unknown_one_is_ignored() -> None:
    assert i18n.negotiate("zh-CN", "en").code == "en"
    assert i18n.negotiate("en", "zh-Hans").code == "zh-Hans"
    assert i18n.negotiate("zh-CN", "fr").code == "zh-Hans"


def test_numbers_ratios_and_dates_follow_the_language() -> None:
    moment = datetime(2026, 12, 7, 17, 5, 9, tzinfo=UTC)
    assert (i18n.number(12345), i18n.ratio(0.975)) == ("12,345", "97.5%")
    assert i18n.moment(moment) == "2026-12-07 17:05:09 UTC"
    with i18n.using(i18n.BY_CODE["zh-Hans"]):
        assert i18n.moment(moment) == "2026年12月7日 17:05:09 UTC"
        assert i18n.gettext("Sign out") == "退出登录"
        assert i18n.ngettext("Stop %(num)s account?", "Stop %(num)s accounts?", 2) == (
            "停止 %(num)s 个账号？"  # noqa: RUF001 - Chinese punctuation
        )
    assert i18n.gettext("Sign out") == "Sign out"  # the block's language ended with it


async def test_the_sign_in_page_speaks_the_browsers_language(client: httpx.AsyncClient) -> None:
    english = await client.get("/login", headers=HTML)
    assert '<html lang="en">' in english.text
    assert ">Sign in</button>" in english.text
    assert english.headers["content-language"] == "en"
    chinese = await client.get("/login", headers=ZH)
    assert '<html lang="zh-Hans">' in chinese.text
    assert ">登录</button>" in chinese.text
    assert "Sign in" not in chinese.text
    assert chinese.headers["content-language"] == "zh-Hans"
    assert "Accept-Language" in chinese.headers["vary"]


async def test_an_error_page_is_translated_too(operator: Browser) -> None:
    missing = await operator.http.get("/no-such-page", headers={**ZH})
    assert missing.status_code == 404
    assert "未找到" in missing.text


async def test_the_switch_is_saved_on_the_user_and_follows_them_to_another_browser(
    operator: Browser,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    mine = await operator.http.get("/me", headers=HTML)
    assert '<option value="auto" selected>Follow the browser</option>' in mine.text
    switched = await operator.post("/language", {"language": "zh-Hans", "next": "/accounts"})
    assert switched.status_code == 303
    assert switched.headers["location"] == "/accounts"
    assert f"{LANGUAGE_COOKIE}=zh-Hans" in switched.headers["set-cookie"]
    async with sessionmaker() as session:
        user = (await session.execute(select(User).where(User.username == "otto"))).scalar_one()
        assert user.language == "zh-Hans"
        record = (
            await session.execute(select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(1))
        ).scalar_one()
    assert (record.action, record.target, record.actor) == (
        "user.language",
        "user:otto",
        "user:otto",
    )
    assert record.details == {"from": None, "to": "zh-Hans"}
    mine = await operator.http.get("/me", headers=HTML)
    assert '<option value="zh-Hans" lang="zh-Hans" selected>简体中文</option>' in mine.text
    assert "跟随浏览器" in mine.text

    # Another browser, asking for English, signs in as otto: the saved choice wins.
    other = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    try:
        assert (await sign_in(other, "otto")).status_code == 303
        page = await other.get("/accounts", headers={**HTML, "Accept-Language": "en"})
        assert '<html lang="zh-Hans">' in page.text
        assert ">账号</a>" in page.text
        # "auto" follows the browser again, and forgets the saved choice.
        back = await other.post(
            "/language",
            data={"language": "auto", "csrf_token": csrf_of(page.text), "next": "/"},
            headers={**HTML, "Accept-Language": "en"},
        )
        assert back.status_code == 303
        english = await other.get("/", headers={**HTML, "Accept-Language": "en"})
        assert '<html lang="en">' in english.text
    finally:
        await other.aclose()
    async with sessionmaker() as session:
        user = (await session.execute(select(User).where(User.username == "otto"))).scalar_one()
        assert user.language is None


async def test_a_switch_without_the_sessions_token_changes_only_that_browser(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await operator.http.post(
        "/language", data={"language": "zh-Hans", "next": "/"}, headers=HTML
    )
    assert response.status_code == 303
    async with sessionmaker() as session:
        user = (await session.execute(select(User).where(User.username == "otto"))).scalar_one()
    assert user.language is None  # a forged form cannot change the saved choice


async def test_a_switch_from_another_site_or_to_an_unknown_language_is_refused(
    operator: Browser, client: httpx.AsyncClient
) -> None:
    forged = await operator.http.post(
        "/language",
        data={"language": "zh-Hans", "csrf_token": operator.csrf},
        headers={**HTML, "Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    assert "set-cookie" not in forged.headers or LANGUAGE_COOKIE not in forged.headers["set-cookie"]
    unknown = await client.post("/language", data={"language": "klingon"}, headers=HTML)
    assert unknown.status_code == 400
    assert "Choose one of the languages the console offers." in unknown.text
    too_long = await client.post("/language", data={"language": "x" * 100}, headers=HTML)
    assert too_long.status_code == 422


async def test_a_next_address_on_another_site_falls_back_to_the_overview(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/language", data={"language": "zh-Hans", "next": "//evil.example/"}, headers=HTML
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"
