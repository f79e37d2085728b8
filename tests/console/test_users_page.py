"""The users page: what an admin, an operator and a viewer see of it, and its actions (create,
disable/enable, change role, reset a password), each the API twin's service with the same
permission and audit record; a generated password shown once; refused input named next to
its field with nothing written, through the real app on both databases."""

from __future__ import annotations

import html
import re

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser, sign_in
from tests.console.test_account_page import flash_after
from tests.factories import DEFAULT_PASSWORD, FACTORY_CONTEXT, audits, create_user
from tgfleet.auth import service as auth_service
from tgfleet.auth.exceptions import UserNotFound
from tgfleet.auth.service import Security
from tgfleet.kit.db import unit_of_work

#: A Greek omicron: "o" + "tto" with it has the skeleton of "otto" (a look-alike name).
GREEK_OMICRON = "\u03bf"
_SECRET = re.compile(r'data-secret data-testid="secret"')
_SECRET_VALUE = re.compile(r'<input id="[\w-]+" type="text" readonly value="([^"]+)"')


def secret_of(page: str) -> str:
    found = _SECRET_VALUE.search(page)
    assert found, "the page shows no secret"
    return html.unescape(found.group(1))


def field_error(page: str, name: str) -> str:
    found = re.search(
        rf'<small id="{name}-error" class="field-error" data-error="{name}">([^<]*)<', page
    )
    assert found, f"no error next to {name}"
    return html.unescape(found.group(1))


def row_of(page: str, username: str) -> str:
    found = re.search(rf'<tr data-user="{re.escape(username)}">(.*?)</tr>', page, re.DOTALL)
    assert found, f"no row for {username}"
    return found.group(1)


async def user_row(maker: async_sessionmaker[AsyncSession], username: str) -> tuple[str, bool]:
    async with unit_of_work(maker) as session:
        user = await auth_service.get_user(session, username)
        return user.role.name, user.disabled


async def user_exists(maker: async_sessionmaker[AsyncSession], username: str) -> bool:
    try:
        await user_row(maker, username)
    except UserNotFound:
        return False
    return True


async def test_an_admin_sees_every_user_with_role_state_and_controls(
    console_admin: Browser, operator: Browser, console_viewer: Browser
) -> None:
    page = await console_admin.http.get("/users", headers=HTML)
    assert page.status_code == 200, page.text
    text = page.text
    for name, role in (("ada", "admin"), ("otto", "operator"), ("vera", "viewer")):
        row = row_of(text, name)
        assert f'<td data-testid="role">{role}</td>' in row
        assert "enabled" in row
        assert f'action="/users/{name}/disable"' in row
        assert f'action="/users/{name}/password"' in row
    assert "(you)" in row_of(text, "ada")
    assert '<form method="post" action="/users" novalidate>' in text  # the create form
    # The nav: Users and Roles for whoever may read users; the name links to /me.
    assert '<a href="/users" aria-current="page">Users</a>' in text
    assert '<a href="/roles"' in text
    assert 'href="/me"' in text


async def test_an_operator_and_a_viewer_get_no_users_page_nor_its_links(
    operator: Browser, console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    for browser in (operator, console_viewer):
        overview = await browser.http.get("/", headers=HTML)
        assert 'href="/users"' not in overview.text
        assert 'href="/roles"' not in overview.text
        assert 'href="/me"' in overview.text
        for path in ("/users", "/roles"):
            page = await browser.http.get(path, headers=HTML)
            assert page.status_code == 403, path
    denied = await audits(sessionmaker, "auth.denied")
    assert [(r.actor, r.target, r.details["permission"]) for r in denied] == [
        ("user:otto", "GET /users", "user:read"),
        ("user:otto", "GET /roles", "user:read"),
        ("user:vera", "GET /users", "user:read"),
        ("user:vera", "GET /roles", "user:read"),
    ]


async def test_forged_posts_by_an_operator_are_refused_audited_and_change_nothing(
    operator: Browser, console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """With their own valid CSRF token, every user action is the server's 403."""
    forged = [
        ("/users", {"username": "mallory", "role": "admin", "password": "x" * 20}),
        ("/users/vera/role", {"role": "admin"}),
        ("/users/vera/disable", {}),
        ("/users/vera/password", {}),
    ]
    for url, data in forged:
        refused = await operator.post(url, data)
        assert refused.status_code == 403, url
    assert not await user_exists(sessionmaker, "mallory")
    assert await user_row(sessionmaker, "vera") == ("viewer", False)
    assert await audits(sessionmaker, "user.password.reset") == []
    denied = await audits(sessionmaker, "auth.denied")
    assert [(r.actor, r.target, r.details) for r in denied] == [
        ("user:otto", f"POST {path}", {"permission": "user:admin", "role": "operator"})
        for path in (
            "/users",
            "/users/{username}/role",
            "/users/{username}/disable",
            "/users/{username}/password",
        )
    ]
    # The viewer's session still works: a refusal is no sign-out.
    assert (await console_viewer.http.get("/", headers=HTML)).status_code == 200


async def test_a_user_created_with_a_generated_password_is_shown_it_once(
    console_admin: Browser,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    created = await console_admin.post(
        "/users", {"username": "Nina", "role": "operator", "password": ""}
    )
    assert created.status_code == 200, created.text
    assert created.headers["cache-control"] == "no-store"
    assert "User nina created" in created.text
    password = secret_of(created.text)
    assert len(password) >= 20
    assert "not show it again" in created.text
    assert 'data-testid="role">operator<' in row_of(created.text, "nina")
    (record,) = [r for r in await audits(sessionmaker, "user.create") if r.target == "user:nina"]
    assert (record.actor, record.target, record.details) == (
        "user:ada",
        "user:nina",
        {"role": "operator", "generated": True},
    )
    assert password not in str(record.details)
    # A reload (the page asked for again) does not show it.
    again = await console_admin.http.get("/users", headers=HTML)
    assert password not in again.text
    assert not _SECRET.search(again.text)
    # It signs nina in.
    nina = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    try:
        assert (await sign_in(nina, "nina", password)).status_code == 303
    finally:
        await nina.aclose()


async def test_a_user_created_with_a_chosen_password_goes_back_to_the_list(
    console_admin: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await console_admin.post(
        "/users", {"username": "omar", "role": "viewer", "password": DEFAULT_PASSWORD}
    )
    level, text = await flash_after(console_admin, response)
    assert (level, text) == ("ok", "User omar created.")
    assert await user_row(sessionmaker, "omar") == ("viewer", False)


async def test_refused_new_users_are_named_next_to_the_field_and_nothing_is_written(
    console_admin: Browser, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    cases = [
        (
            {"username": GREEK_OMICRON + "tto", "role": "viewer"},
            "username",
            "looks like the existing user 'otto'",
        ),
        ({"username": "OTTO", "role": "viewer"}, "username", "a user named 'otto' already exists"),
        ({"username": "x" * 300, "role": "viewer"}, "username", "username must be 1 to 64"),
        ({"username": "<script>", "role": "viewer"}, "username", "username must be 1 to 64"),
        ({"username": "paula", "role": "nosuchrole"}, "role", "no role named 'nosuchrole'"),
        ({"username": "paula", "role": "viewer", "password": "abc"}, "password", "at least"),
        (
            {"username": "paula", "role": "viewer", "password": "aaaaaaaaaaaaaaaa"},
            "password",
            "4 different",
        ),
    ]
    for data, field, expected in cases:
        refused = await console_admin.post("/users", data)
        assert refused.status_code == 400, data
        assert expected in field_error(refused.text, field), (
            data,
            field_error(refused.text, field),
        )
        assert 'aria-invalid="true"' in refused.text
        assert "<script>" not in refused.text
    assert not await user_exists(sessionmaker, "paula")
    assert [r.target for r in await audits(sessionmaker, "user.create")] == [
        "user:ada",
        "user:otto",
    ]  # the fixtures' own


async def test_disable_ends_the_users_session_and_enable_lets_them_back(
    console_admin: Browser, operator: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    level, text = await flash_after(console_admin, await console_admin.post("/users/otto/disable"))
    assert (level, text) == ("ok", "otto is disabled: their sessions and API tokens ended.")
    assert await user_row(sessionmaker, "otto") == ("operator", True)
    ended = await operator.http.get("/accounts", headers=HTML)
    assert ended.status_code == 303
    assert ended.headers["location"].startswith("/login?next=")
    page = await console_admin.http.get("/users", headers=HTML)
    assert "disabled" in row_of(page.text, "otto")
    assert 'action="/users/otto/enable"' in row_of(page.text, "otto")

    level, text = await flash_after(console_admin, await console_admin.post("/users/otto/enable"))
    assert (level, text) == ("ok", "otto is enabled again.")
    assert await user_row(sessionmaker, "otto") == ("operator", False)
    assert [(r.actor, r.target) for r in await audits(sessionmaker, "user.disable")] == [
        ("user:ada", "user:otto")
    ]
    assert [(r.actor, r.target) for r in await audits(sessionmaker, "user.enable")] == [
        ("user:ada", "user:otto")
    ]


async def test_the_last_admin_can_be_neither_disabled_nor_demoted(
    console_admin: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    level, text = await flash_after(console_admin, await console_admin.post("/users/ada/disable"))
    assert level == "bad"
    assert text == "Not changed: refused to disable 'ada': it is the last enabled admin."
    level, text = await flash_after(
        console_admin, await console_admin.post("/users/ada/role", {"role": "viewer"})
    )
    assert level == "bad"
    assert text == "Role not changed: refused to demote 'ada': it is the last enabled admin."
    assert await user_row(sessionmaker, "ada") == ("admin", False)
    assert await audits(sessionmaker, "user.disable") == []
    assert await audits(sessionmaker, "user.role.change") == []


async def test_change_role_gives_the_user_the_roles_permissions(
    console_admin: Browser, console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    level, text = await flash_after(
        console_admin, await console_admin.post("/users/vera/role", {"role": "auditor"})
    )
    assert (level, text) == ("ok", "vera now has the role auditor.")
    (record,) = await audits(sessionmaker, "user.role.change")
    assert (record.actor, record.target, record.details) == (
        "user:ada",
        "user:vera",
        {"from": "viewer", "to": "auditor"},
    )
    # vera's next request has the auditor's permissions: the users page (read only).
    page = await console_viewer.http.get("/users", headers=HTML)
    assert page.status_code == 200
    assert 'method="post" action="/users"' not in page.text
    assert 'action="/users/otto' not in page.text
    unknown = await console_admin.post("/users/vera/role", {"role": "nope"})
    level, text = await flash_after(console_admin, unknown)
    assert (level, text) == ("bad", "Role not changed: no role named 'nope'.")


async def test_a_reset_password_is_shown_once_and_the_old_one_stops_working(
    console_admin: Browser,
    operator: Browser,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    reset = await console_admin.post("/users/otto/password")
    assert reset.status_code == 200, reset.text
    assert reset.headers["cache-control"] == "no-store"
    assert "New password for otto" in reset.text
    password = secret_of(reset.text)
    assert password != DEFAULT_PASSWORD
    again = await console_admin.http.get("/users", headers=HTML)
    assert password not in again.text
    (record,) = await audits(sessionmaker, "user.password.reset")
    assert (record.actor, record.target, record.details) == (
        "user:ada",
        "user:otto",
        {"generated": True},
    )
    # otto's console session ended with it.
    assert (await operator.http.get("/", headers=HTML)).status_code == 303
    fresh = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    try:
        old = await sign_in(fresh, "otto", DEFAULT_PASSWORD)
        assert old.status_code == 401
        assert "Wrong username or password." in old.text
        assert (await sign_in(fresh, "otto", password)).status_code == 303
    finally:
        await fresh.aclose()


async def test_users_are_paged_and_searched(
    console_admin: Browser, sessionmaker: async_sessionmaker[AsyncSession], security: Security
) -> None:
    async with unit_of_work(sessionmaker) as session:
        for index in range(55):
            await auth_service.create_user(
                session,
                security,
                FACTORY_CONTEXT,
                username=f"u{index:02d}",
                role="viewer",
                password=DEFAULT_PASSWORD,
            )
    first = await console_admin.http.get("/users", headers=HTML)
    listed = re.findall(r'<tr data-user="([^"]+)">', first.text)
    assert listed == ["ada", *[f"u{i:02d}" for i in range(49)]]
    more = re.search(r'<a href="([^"]+)" rel="next">', first.text)
    assert more
    second = await console_admin.http.get(html.unescape(more.group(1)), headers=HTML)
    assert re.findall(r'<tr data-user="([^"]+)">', second.text) == [
        f"u{i:02d}" for i in range(49, 55)
    ]
    assert 'rel="next"' not in second.text
    found = await console_admin.http.get("/users?q=u1", headers=HTML)
    assert re.findall(r'<tr data-user="([^"]+)">', found.text) == [f"u1{i}" for i in range(10)]


async def test_an_admin_who_gives_themselves_a_lesser_role_goes_to_their_own_page(
    console_admin: Browser,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
) -> None:
    """With a second admin, ada may demote herself; her next page is /me, not a 403."""
    await create_user(sessionmaker, security, username="root", role="admin")
    demoted = await console_admin.post("/users/ada/role", {"role": "operator"})
    assert demoted.status_code == 303
    assert demoted.headers["location"] == "/me"
    page = await console_admin.http.get("/me", headers=HTML)
    assert '<strong data-testid="my-role">operator</strong>' in page.text
    assert 'href="/users"' not in page.text
    assert await user_row(sessionmaker, "ada") == ("operator", False)
