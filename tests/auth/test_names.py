"""Names shown to operators: no bidi or invisible characters, and no username that looks like
an existing one (Unicode TR39 skeletons), through the API and the services (both databases)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Boolean, Integer, String, Uuid, column, insert, select, table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import Credentials, create_user, telethon_string
from tgfleet import migrations
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth import service as auth_service
from tgfleet.auth.exceptions import UserExists
from tgfleet.auth.service import Security
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.kit.model import TZDateTime
from tgfleet.kit.names import skeleton_key
from tgfleet.models import Role, User

USERS = "/api/v1/users"
RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "evil\u202egnp.exe" shows as "evilexe.png"
CYRILLIC_A = "\u0430"
CONTEXT = AuditContext(actor="cli:test")
#: The user table as revision 0007 left it (the model has the newer columns).
USER_AT_0007 = table(
    "user",
    column("id", Uuid()),
    column("username", String()),
    column("password_hash", String()),
    column("role_id", Integer()),
    column("disabled", Boolean()),
    column("created_at", TZDateTime()),
    column("updated_at", TZDateTime()),
    column("credentials_changed_at", TZDateTime()),
)


class TestUsernames:
    async def test_a_look_alike_of_an_existing_user_is_refused(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """``\\u0430dmin`` (Cyrillic a) beside ``admin`` is a 409 naming the existing user;
        its mixed-case and full-width forms were already the same user."""
        first = await client.post(
            USERS, json={"username": "admin", "role": "viewer"}, headers=admin.headers
        )
        assert first.status_code == 201
        for look_alike in (f"{CYRILLIC_A}dmin", "adrnin"):
            response = await client.post(
                USERS, json={"username": look_alike, "role": "viewer"}, headers=admin.headers
            )
            assert response.status_code == 409, response.text
            assert response.json()["error"] == "username_confusable"
            assert "looks like the existing user 'admin'" in response.json()["detail"]
        same = await client.post(
            USERS, json={"username": "\uff21DMIN", "role": "viewer"}, headers=admin.headers
        )
        assert same.status_code == 409
        assert same.json()["error"] == "user_exists"

    async def test_an_invisible_filler_is_refused(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """A Hangul filler passes ``\\w`` but shows as nothing: 422 naming it."""
        response = await client.post(
            USERS, json={"username": "admin\u3164", "role": "viewer"}, headers=admin.headers
        )
        assert response.status_code == 422
        assert "HANGUL" in response.text

    async def test_concurrent_look_alikes_create_one_user(
        self, sessionmaker: async_sessionmaker[AsyncSession], security: Security
    ) -> None:
        """Two look-alike names created at the same time: the unique skeleton key lets one
        through and refuses the other with a 409, whichever commits first."""

        async def create(name: str) -> str:
            try:
                await create_user(sessionmaker, security, username=name, role="viewer")
            except UserExists as error:
                return error.code
            return "created"

        outcomes = await asyncio.gather(create("paypal"), create(f"p{CYRILLIC_A}ypal"))
        assert sorted(outcomes) in (
            ["created", "user_exists"],
            ["created", "username_confusable"],
        )
        async with unit_of_work(sessionmaker) as session:
            names = (await session.scalars(select(User.username))).all()
        assert len(names) == 1

    async def test_ensure_admin_does_not_create_beside_a_look_alike(
        self, sessionmaker: async_sessionmaker[AsyncSession], security: Security
    ) -> None:
        """With no enabled admin and a viewer named ``\\u0430dmin``, start-up creates no
        ``admin`` beside it (it logs a hint instead of failing)."""
        await create_user(sessionmaker, security, username=f"{CYRILLIC_A}dmin", role="viewer")
        async with unit_of_work(sessionmaker) as session:
            assert await auth_service.ensure_admin(session, security, CONTEXT) is None
            names = (await session.scalars(select(User.username))).all()
        assert names == [f"{CYRILLIC_A}dmin"]


class TestMigration:
    async def test_existing_look_alikes_keep_their_names_the_oldest_the_key(
        self, db_url: str
    ) -> None:
        """Upgrading a database that already holds look-alike users works: the oldest gets
        the skeleton key, the younger none; the downgrade drops the columns again."""
        await asyncio.to_thread(migrations.downgrade, db_url, "0007_reply_coordination")
        engine = create_engine(db_url)
        try:
            async with unit_of_work(create_sessionmaker(engine)) as session:
                role_id = await session.scalar(select(Role.id).where(Role.name == "viewer"))
                for index, name in enumerate(("admin", f"{CYRILLIC_A}dmin", "bob")):
                    at = datetime(2026, 1, index + 1, tzinfo=UTC)
                    await session.execute(
                        insert(USER_AT_0007).values(
                            id=uuid.UUID(int=index + 1),
                            username=name,
                            password_hash="x",
                            role_id=role_id,
                            disabled=False,
                            created_at=at,
                            updated_at=at,
                            credentials_changed_at=at,
                        )
                    )
            await asyncio.to_thread(migrations.upgrade, db_url)
            async with unit_of_work(create_sessionmaker(engine)) as session:
                rows = await session.execute(
                    select(User.username, User.username_skeleton, User.token_epoch)
                )
                keys = {name: (key, epoch) for name, key, epoch in rows.all()}
        finally:
            await engine.dispose()
        assert keys == {
            "admin": (skeleton_key("admin"), 0),
            f"{CYRILLIC_A}dmin": (None, 0),
            "bob": (skeleton_key("bob"), 0),
        }


class TestOtherNames:
    async def test_an_imported_label_loses_its_direction_override(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """An account label (given, or taken from a file name) keeps its visible text; a
        right-to-left override becomes '_' and cannot disguise the label."""
        response = await client.post(
            "/api/v1/accounts/import",
            content=telethon_string(7).encode(),
            params={"name": "x.txt", "label": f"evil{RLO}gnp.exe"},
            headers=admin.headers | {"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["label"] == "evil_gnp.exe"

    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("POST", "/api/v1/playbooks", {"name": f"faq{RLO}", "source": "rules: []\n"}),
            ("POST", "/api/v1/auth/tokens", {"name": "ci\u200bbot"}),
            (
                "POST",
                "/api/v1/roles",
                {"name": "ops", "description": f"on {RLO}call", "permissions": ["user:read"]},
            ),
        ],
        ids=["playbook-name", "token-name", "role-description"],
    )
    async def test_names_with_hidden_characters_are_a_422(
        self,
        client: httpx.AsyncClient,
        admin: Credentials,
        method: str,
        path: str,
        body: dict[str, object],
    ) -> None:
        """Playbook names, token names and role descriptions refuse bidi and zero-width
        characters with a 422 that names the character; nothing is created."""
        response = await client.request(method, path, json=body, headers=admin.headers)
        assert response.status_code == 422, response.text
        assert "U+202E" in response.text or "U+200B" in response.text

    async def test_a_group_title_with_an_override_is_a_422(
        self, client: httpx.AsyncClient, admin: Credentials
    ) -> None:
        """A group title an operator sets is shown as is: a bidi override is refused."""
        imported = await client.post(
            "/api/v1/accounts/import",
            content=telethon_string(8).encode(),
            params={"name": "g.txt"},
            headers=admin.headers | {"Content-Type": "application/octet-stream"},
        )
        account_id = imported.json()["results"][0]["account_id"]
        url = f"/api/v1/accounts/{account_id}/groups/-42"
        refused = await client.put(
            url, json={"enabled": False, "title": f"Sales{RLO}"}, headers=admin.headers
        )
        assert refused.status_code == 422
        assert "U+202E" in refused.text
        accepted = await client.put(
            url, json={"enabled": False, "title": "\uff33ales"}, headers=admin.headers
        )
        assert accepted.status_code == 200
        assert accepted.json()["title"] == "Sales"
