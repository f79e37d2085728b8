"""The own-account page: API tokens (created with scopes and an expiry, shown once, used
against the API, revoked), console sessions (listed, this one marked, another ended) and the
password change (the API's rules; every session ends, this one too), through the real app on
both databases."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser, csrf_of, sign_in
from tests.console.test_account_page import flash_after
from tests.console.test_users_page import field_error, secret_of
from tests.factories import DEFAULT_PASSWORD, audits
from tgfleet.kit.clock import utcnow
from tgfleet.models import ApiToken

NEW_PASSWORD = "a much longer passphrase 42"


def token_ids(page: str) -> dict[str, str]:
    """Token name -> id, from the revoke forms."""
    rows = re.findall(
        r'<tr data-token="([^"]+)">.*?action="/me/tokens/([0-9a-f-]+)/revoke"', page, re.DOTALL
    )
    return {html.unescape(name): token_id for name, token_id in rows}


def session_ids(page: str) -> list[str]:
    return re.findall(r'<tr data-session="([0-9a-f-]+)"', page)


async def second_browser(client: httpx.AsyncClient, username: str) -> Browser:
    http = httpx.AsyncClient(
        transport=client._transport,
        base_url="http://testserver",
        headers={"User-Agent": "second-browser/1.0"},
    )
    assert (await sign_in(http, username)).status_code == 303
    page = await http.get("/me", headers=HTML)
    return Browser(http=http, username=username, csrf=csrf_of(page.text))


async def test_the_page_shows_role_sections_and_the_language_spot(operator: Browser) -> None:
    page = await operator.http.get("/me", headers=HTML)
    assert page.status_code == 200, page.text
    assert '<strong data-testid="my-role">operator</strong>' in page.text
    assert '<a href="/me" aria-current="page"' in page.text
    for form in ('action="/me/password"', 'action="/me/tokens"'):
        assert form in page.text
    assert 'data-testid="my-language"' in page.text  # the language, saved on the user
    assert "You have no API tokens." in page.text
    # Scopes offered: the viewer's own permissions only.
    assert 'name="scopes" value="account:control"' in page.text
    assert 'name="scopes" value="user:admin"' not in page.text


async def test_a_token_is_shown_once_works_against_the_api_and_stops_when_revoked(
    operator: Browser, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await operator.http.post(
        "/me/tokens",
        data={
            "csrf_token": operator.csrf,
            "name": "ci deploy",
            "scopes": ["account:read", "account:control"],
            "expires": "30",
        },
        headers=HTML,
    )
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"] == "no-store"
    assert "API token ci deploy created" in created.text
    secret = secret_of(created.text)
    assert secret.startswith("tgf_")
    ids = token_ids(created.text)
    assert list(ids) == ["ci deploy"]
    row = re.search(r'<tr data-token="ci deploy">(.*?)</tr>', created.text, re.DOTALL)
    assert row
    assert "<code>account:control</code> <code>account:read</code>" in row.group(1)
    assert f"<code>{secret[:12]}…</code>" in row.group(1)

    again = await operator.http.get("/me", headers=HTML)
    assert secret not in again.text
    assert 'data-testid="secret"' not in again.text
    assert "ci deploy" in again.text

    bearer = {"Authorization": f"Bearer {secret}"}
    me = await client.get("/api/v1/auth/me", headers=bearer)
    assert me.status_code == 200, me.text
    assert me.json()["via"] == "api_token"
    assert me.json()["token_name"] == "ci deploy"
    assert me.json()["permissions"] == ["account:control", "account:read"]
    (record,) = await audits(sessionmaker, "auth.token.create")
    assert record.actor == "user:otto"
    assert record.details["name"] == "ci deploy"
    assert record.details["scopes"] == ["account:control", "account:read"]
    expires = datetime.fromisoformat(str(record.details["expires_at"]))
    assert abs(expires - (utcnow() + timedelta(days=30))) < timedelta(minutes=5)

    used = await operator.http.get("/me", headers=HTML)
    used_row = re.search(r'<tr data-token="ci deploy">(.*?)</tr>', used.text, re.DOTALL)
    assert used_row
    assert used_row.group(1).count("<time") == 3  # created, expires and now last used

    revoked = await operator.post(f"/me/tokens/{ids['ci deploy']}/revoke")
    assert await flash_after(operator, revoked) == ("ok", "Token revoked: it no longer works.")
    assert (await client.get("/api/v1/auth/me", headers=bearer)).status_code == 401
    (gone,) = await audits(sessionmaker, "auth.token.revoke")
    assert (gone.actor, gone.target) == ("user:otto", f"token:{ids['ci deploy']}")


async def test_hostile_token_forms_are_refused_next_to_the_field(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    cases: list[tuple[dict[str, str | list[str]], str, str]] = [
        ({"name": "x" * 300}, "name", "at most 100 characters"),
        ({"name": ""}, "name", "at least 1 character"),
        (
            {"name": "a", "scopes": ["user:admin"]},
            "scopes",
            "You do not hold these permissions: user:admin",
        ),
        (
            {"name": "a", "scopes": ["<i>nope</i>"]},
            "scopes",
            "Unknown permission codes: <i>nope</i>",
        ),
        ({"name": "a", "expires": "date", "expires_on": yesterday}, "expires_on", "has passed"),
        ({"name": "a", "expires": "date", "expires_on": "soon"}, "expires_on", "YYYY-MM-DD"),
        ({"name": "a", "expires": "3650"}, "expires", "Choose one of the expiry presets."),
    ]
    for data, field, expected in cases:
        refused = await operator.http.post(
            "/me/tokens", data={"csrf_token": operator.csrf, **data}, headers=HTML
        )
        assert refused.status_code == 400, data
        assert expected in field_error(refused.text, field), field_error(refused.text, field)
        assert "<i>nope</i>" not in refused.text
    assert await audits(sessionmaker, "auth.token.create") == []
    # A second token of the same name is refused by the service.
    first = await operator.post("/me/tokens", {"name": "dup", "expires": "never"})
    assert first.status_code == 200
    second = await operator.post("/me/tokens", {"name": "dup", "expires": "7"})
    assert second.status_code == 400
    assert "already have a token named 'dup'" in field_error(second.text, "name")
    async with sessionmaker() as session:
        names = (await session.execute(select(ApiToken.name))).scalars().all()
    assert names == ["dup"]


async def test_a_token_through_the_date_expiry_works_to_the_end_of_that_day(
    operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    created = await operator.post(
        "/me/tokens", {"name": "short", "expires": "date", "expires_on": day.isoformat()}
    )
    assert created.status_code == 200, created.text
    (record,) = await audits(sessionmaker, "auth.token.create")
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    assert datetime.fromisoformat(str(record.details["expires_at"])) == end


async def test_own_sessions_are_listed_and_ending_one_signs_that_browser_out(
    operator: Browser, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    other = await second_browser(client, "otto")
    try:
        page = await operator.http.get("/me", headers=HTML)
        ids = session_ids(page.text)
        assert len(ids) == 2
        assert page.text.count('data-testid="this-session"') == 1
        current = re.search(r'<tr data-session="([0-9a-f-]+)" aria-current="true">', page.text)
        assert current
        (other_id,) = [i for i in ids if i != current.group(1)]
        assert "second-browser/1.0" in page.text
        ended = await operator.post(f"/me/sessions/{other_id}/revoke")
        assert await flash_after(operator, ended) == (
            "ok",
            "Session ended: that browser has to sign in again.",
        )
        gone = await other.http.get("/me", headers=HTML)
        assert gone.status_code == 303
        assert gone.headers["location"] == "/login?next=%2Fme"
        assert session_ids((await operator.http.get("/me", headers=HTML)).text) == [
            current.group(1)
        ]
        (record,) = await audits(sessionmaker, "auth.console_session.revoke")
        assert record.details == {"via": "console", "console_session_id": other_id}
        # Ending this session signs this browser out, with a notice.
        mine = await operator.post(f"/me/sessions/{current.group(1)}/revoke")
        assert mine.status_code == 303
        assert mine.headers["location"] == "/login?next=%2Fme"
        login = await operator.http.get(mine.headers["location"], headers=HTML)
        assert "This session ended. Sign in again to continue." in login.text
        assert (await operator.http.get("/", headers=HTML)).status_code == 303
    finally:
        await other.http.aclose()


async def test_someone_elses_session_cannot_be_ended(
    operator: Browser, console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    page = await console_viewer.http.get("/me", headers=HTML)
    (vera_session,) = session_ids(page.text)
    for session_id in (vera_session, "not-an-id"):
        refused = await operator.post(f"/me/sessions/{session_id}/revoke")
        assert refused.status_code == 404
    assert (await operator.post("/me/tokens/not-an-id/revoke")).status_code == 404
    assert (await console_viewer.http.get("/me", headers=HTML)).status_code == 200
    assert await audits(sessionmaker, "auth.console_session.revoke") == []


async def test_the_password_change_follows_the_apis_rules_and_signs_out(
    operator: Browser, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    cases = [
        ({"current": "wrong one", "new": NEW_PASSWORD, "repeat": NEW_PASSWORD}, "current", "wrong"),
        ({"current": DEFAULT_PASSWORD, "new": NEW_PASSWORD, "repeat": "other"}, "repeat", "differ"),
        ({"current": DEFAULT_PASSWORD, "new": "short", "repeat": "short"}, "new", "at least"),
        ({"current": DEFAULT_PASSWORD, "new": "otto", "repeat": "otto"}, "new", "password must"),
        ({"current": "", "new": "", "repeat": ""}, "current", "Enter your current password."),
    ]
    for data, field, expected in cases:
        refused = await operator.post("/me/password", data)
        assert refused.status_code == 400, data
        assert expected in field_error(refused.text, field)
    assert await audits(sessionmaker, "auth.password.change") == []
    assert (await operator.http.get("/me", headers=HTML)).status_code == 200  # still signed in

    jwt = (
        await client.post(
            "/api/v1/auth/login", json={"username": "otto", "password": DEFAULT_PASSWORD}
        )
    ).json()["access_token"]
    changed = await operator.post(
        "/me/password", {"current": DEFAULT_PASSWORD, "new": NEW_PASSWORD, "repeat": NEW_PASSWORD}
    )
    assert changed.status_code == 303
    assert changed.headers["location"] == "/login?next=%2Fme"
    login = await operator.http.get(changed.headers["location"], headers=HTML)
    assert "Password changed." in login.text
    assert (await operator.http.get("/me", headers=HTML)).status_code == 303
    assert (
        await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {jwt}"})
    ).status_code == 401
    (record,) = await audits(sessionmaker, "auth.password.change")
    assert (record.actor, record.target) == ("user:otto", "user:otto")
    assert (await sign_in(operator.http, "otto", DEFAULT_PASSWORD)).status_code == 401
    assert (await sign_in(operator.http, "otto", NEW_PASSWORD)).status_code == 303
