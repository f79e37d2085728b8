"""The roles page: built-in and custom roles with their permission codes; a custom role
created, edited and deleted (refused while a user holds it) through the API twin's services
with the same permission and audit records; hostile input refused with nothing written."""

from __future__ import annotations

import re

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.console.conftest import HTML, Browser, browser_for
from tests.console.test_account_page import flash_after
from tests.console.test_users_page import field_error
from tests.factories import audits
from tgfleet.auth import service as auth_service
from tgfleet.auth.exceptions import RoleNotFound
from tgfleet.auth.permissions import BUILTIN_ROLES, Permission
from tgfleet.auth.service import Security
from tgfleet.kit.db import unit_of_work


def codes_of(page: str, role: str) -> list[str]:
    found = re.search(
        rf'<article class="role" data-role="{role}".*?'
        r'<ul class="codes" data-testid="codes">(.*?)</ul>',
        page,
        re.DOTALL,
    )
    assert found, f"no role {role} on the page"
    return re.findall(r"<code>([^<]+)</code>", found.group(1))


async def role_codes(maker: async_sessionmaker[AsyncSession], name: str) -> list[str] | None:
    async with unit_of_work(maker) as session:
        try:
            role = await auth_service.get_role(session, name)
        except RoleNotFound:
            return None
        return sorted(auth_service.role_permissions(role))


async def test_every_role_is_listed_with_its_codes_and_only_custom_ones_have_controls(
    console_admin: Browser,
) -> None:
    page = await console_admin.http.get("/roles", headers=HTML)
    assert page.status_code == 200, page.text
    for name, permissions in BUILTIN_ROLES.items():
        assert codes_of(page.text, name) == sorted(permissions)
        assert f'action="/roles/{name}"' not in page.text
    # The create form offers every permission code with its description.
    for code in Permission:
        assert f'name="permissions" value="{code}"' in page.text
    assert "see the vault&#39;s keys (ids only) and what they wrap" in page.text


async def test_a_custom_role_is_created_edited_and_deleted_only_when_unused(
    console_admin: Browser, console_viewer: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await console_admin.post(
        "/roles",
        {
            "name": "support",
            "description": "first line",
            "permissions": ["alert:read", "account:read"],
        },
    )
    assert await flash_after(console_admin, created) == ("ok", "Role support created.")
    page = await console_admin.http.get("/roles", headers=HTML)
    assert codes_of(page.text, "support") == ["account:read", "alert:read"]
    assert 'action="/roles/support/delete"' in page.text
    (record,) = await audits(sessionmaker, "role.create")
    assert (record.actor, record.target, record.details) == (
        "user:ada",
        "role:support",
        {"permissions": ["account:read", "alert:read"]},
    )

    edited = await console_admin.http.post(
        "/roles/support",
        data={
            "csrf_token": console_admin.csrf,
            "description": "first line",
            "permissions": ["account:read", "account:control"],
        },
        headers=HTML,
    )
    assert await flash_after(console_admin, edited) == ("ok", "Role support saved.")
    assert await role_codes(sessionmaker, "support") == ["account:control", "account:read"]
    (update,) = await audits(sessionmaker, "role.update")
    assert update.details == {
        "permissions": {
            "from": ["account:read", "alert:read"],
            "to": ["account:control", "account:read"],
        }
    }

    assert await flash_after(
        console_admin, await console_admin.post("/users/vera/role", {"role": "support"})
    ) == (
        "ok",
        "vera now has the role support.",
    )
    refused = await console_admin.post("/roles/support/delete")
    level, text = await flash_after(console_admin, refused)
    assert level == "bad"
    assert text == "Not deleted: role 'support' is held by 1 user(s); change their role first."
    assert await role_codes(sessionmaker, "support") is not None
    # vera now has the custom role's permissions: account control, not alerts.
    assert (await console_viewer.http.get("/accounts", headers=HTML)).status_code == 200

    await console_admin.post("/users/vera/role", {"role": "viewer"})
    deleted = await console_admin.post("/roles/support/delete")
    assert await flash_after(console_admin, deleted) == ("ok", "Role support deleted.")
    assert await role_codes(sessionmaker, "support") is None
    assert [r.target for r in await audits(sessionmaker, "role.delete")] == ["role:support"]


async def test_hostile_role_forms_are_refused_next_to_the_field(
    console_admin: Browser, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    cases = [
        ({"name": "x" * 200, "permissions": ["account:read"]}, "name", "role name must be 2 to 64"),
        ({"name": "Bad Name", "permissions": ["account:read"]}, "name", "role name must be"),
        (
            {"name": "admin", "permissions": ["account:read"]},
            "name",
            "a role named 'admin' already",
        ),
        ({"name": "ops", "permissions": []}, "permissions", "Choose at least one permission."),
        (
            {"name": "ops", "permissions": ["account:read", "root:everything", "<b>x</b>"]},
            "permissions",
            "Unknown permission codes: <b>x</b>, root:everything",
        ),
        (
            {"name": "ops", "description": "a\u202eb", "permissions": ["account:read"]},
            "description",
            "",
        ),
    ]
    for data, field, expected in cases:
        refused = await console_admin.post("/roles", data)  # type: ignore[arg-type]
        assert refused.status_code == 400, data
        assert expected in field_error(refused.text, field)
        assert "<b>x</b>" not in refused.text
    assert await role_codes(sessionmaker, "ops") is None
    assert await audits(sessionmaker, "role.create") == []
    # Built-in roles cannot be changed or deleted, even by a forged form.
    level, text = await flash_after(
        console_admin, await console_admin.post("/roles/viewer", {"permissions": ["user:admin"]})
    )
    assert (level, text) == ("bad", "Not changed: the built-in role 'viewer' cannot be changed.")
    level, text = await flash_after(console_admin, await console_admin.post("/roles/viewer/delete"))
    assert (level, text) == ("bad", "Not deleted: the built-in role 'viewer' cannot be deleted.")
    assert (await console_admin.post("/roles/nope/delete")).status_code == 404


async def test_an_auditor_reads_roles_and_a_forged_change_is_refused_and_audited(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
) -> None:
    auditor = await browser_for(client, sessionmaker, security, "auditor", "aud")
    try:
        page = await auditor.http.get("/roles", headers=HTML)
        assert page.status_code == 200
        assert codes_of(page.text, "viewer") == sorted(BUILTIN_ROLES["viewer"])
        assert 'action="/roles"' not in page.text
        forged = await auditor.post("/roles", {"name": "mine", "permissions": ["user:admin"]})
        assert forged.status_code == 403
    finally:
        await auditor.http.aclose()
    assert await role_codes(sessionmaker, "mine") is None
    (denied,) = await audits(sessionmaker, "auth.denied")
    assert (denied.actor, denied.target, denied.details) == (
        "user:aud",
        "POST /roles",
        {"permission": "user:admin", "role": "auditor"},
    )
