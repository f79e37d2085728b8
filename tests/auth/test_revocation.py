"""Disabling a user ends its credentials for good; so does a password change (both databases).

Every JWT carries its user's token epoch; disabling the user, changing or resetting their
password increments it in the database, so a token issued before is refused by every API
process, also after the user is enabled again. The user's API tokens are deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.auth.conftest import ME
from tests.conftest import TEST_JWT_SECRET, make_settings
from tests.factories import DEFAULT_PASSWORD, Credentials, login
from tgfleet.app import create_app
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth import service as auth_service
from tgfleet.auth.exceptions import InvalidToken
from tgfleet.auth.schemas import Principal
from tgfleet.auth.service import Security
from tgfleet.kit.db import unit_of_work
from tgfleet.models import ApiToken, AuditRecord

# The viewer here is the ``viewer`` fixture of tests/auth/conftest.py: the user vera.
CONTEXT = AuditContext(actor="cli:test")


@pytest.fixture
async def second_process(db_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Another API process on the same database (its own app, engine and memory)."""
    application = create_app(make_settings(db_url, tmp_path / "data-2"))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as http:
            yield http


async def _status(client: httpx.AsyncClient, credentials: Credentials) -> int:
    return (await client.get(ME, headers=credentials.headers)).status_code


class TestDisable:
    async def test_disable_then_enable_leaves_old_jwts_dead(
        self, client: httpx.AsyncClient, admin: Credentials, viewer: Credentials
    ) -> None:
        """A JWT issued before a disable stays refused after the user is enabled again; a
        new login works."""
        assert await _status(client, viewer) == 200
        disabled = await client.post("/api/v1/users/vera/disable", headers=admin.headers)
        assert disabled.status_code == 200
        enabled = await client.post("/api/v1/users/vera/enable", headers=admin.headers)
        assert enabled.status_code == 200
        refused = await client.get(ME, headers=viewer.headers)
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]
        fresh = await login(client, "vera", DEFAULT_PASSWORD)
        again = await client.get(ME, headers={"Authorization": f"Bearer {fresh}"})
        assert again.status_code == 200

    async def test_every_process_refuses_the_old_jwt(
        self,
        client: httpx.AsyncClient,
        second_process: httpx.AsyncClient,
        admin: Credentials,
        viewer: Credentials,
    ) -> None:
        """The revocation is state in the database: a disable made through one API process
        is honoured by another, also after the enable."""
        assert await _status(second_process, viewer) == 200
        await client.post("/api/v1/users/vera/disable", headers=admin.headers)
        assert await _status(second_process, viewer) == 401
        await second_process.post("/api/v1/users/vera/enable", headers=admin.headers)
        assert await _status(client, viewer) == 401
        assert await _status(second_process, viewer) == 401

    async def test_api_tokens_are_deleted_and_audited(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        admin: Credentials,
        viewer: Credentials,
    ) -> None:
        """Disabling deletes the user's API tokens (they stay dead after the enable); the
        audit record says how many."""
        for name in ("ci", "backup"):
            created = await client.post(
                "/api/v1/auth/tokens", json={"name": name}, headers=viewer.headers
            )
            assert created.status_code == 201
        secret = created.json()["token"]
        bearer = {"Authorization": f"Bearer {secret}"}
        assert (await client.get(ME, headers=bearer)).status_code == 200
        await client.post("/api/v1/users/vera/disable", headers=admin.headers)
        await client.post("/api/v1/users/vera/enable", headers=admin.headers)
        assert (await client.get(ME, headers=bearer)).status_code == 401
        async with unit_of_work(sessionmaker) as session:
            left = await session.scalar(select(func.count()).select_from(ApiToken))
            record = await session.scalar(
                select(AuditRecord).where(AuditRecord.action == "user.disable")
            )
        assert left == 0
        assert record is not None
        assert record.details == {"api_credentials_deleted": 2}

    async def test_a_token_without_the_epoch_claim_dies_at_the_disable(
        self, client: httpx.AsyncClient, admin: Credentials, viewer: Credentials
    ) -> None:
        """A JWT minted before the epoch claim existed counts as epoch 0: accepted until the
        user's first disable, refused after it."""
        claims = jwt.decode(viewer.token, TEST_JWT_SECRET, algorithms=["HS256"])
        del claims["epo"]
        legacy = {"Authorization": f"Bearer {jwt.encode(claims, TEST_JWT_SECRET, 'HS256')}"}
        assert (await client.get(ME, headers=legacy)).status_code == 200
        await client.post("/api/v1/users/vera/disable", headers=admin.headers)
        await client.post("/api/v1/users/vera/enable", headers=admin.headers)
        assert (await client.get(ME, headers=legacy)).status_code == 401


class TestPasswordChange:
    async def test_a_reset_ends_a_jwt_issued_in_the_same_second(
        self, client: httpx.AsyncClient, admin: Credentials, viewer: Credentials
    ) -> None:
        """No one-second grace: a JWT issued just before an admin resets the password is
        refused at once (``iat`` has one-second resolution; the epoch has none)."""
        fresh = Credentials("vera", DEFAULT_PASSWORD, await login(client, "vera", DEFAULT_PASSWORD))
        reset = await client.post(
            "/api/v1/users/vera/password",
            json={"password": "another long passphrase"},
            headers=admin.headers,
        )
        assert reset.status_code == 200
        assert await _status(client, fresh) == 401
        assert await _status(client, viewer) == 401

    async def test_own_change_ends_own_older_jwts(
        self, client: httpx.AsyncClient, viewer: Credentials
    ) -> None:
        """Changing one's password refuses every JWT issued before, the one used included."""
        other = Credentials("vera", DEFAULT_PASSWORD, await login(client, "vera", DEFAULT_PASSWORD))
        changed = await client.post(
            "/api/v1/auth/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": "a brand new passphrase"},
            headers=viewer.headers,
        )
        assert changed.status_code == 204
        assert await _status(client, viewer) == 401
        assert await _status(client, other) == 401


class TestAbsurdClaims:
    @pytest.mark.parametrize("claim", ["iat", "exp"])
    @pytest.mark.parametrize("value", [-(10**20), 10**20])
    async def test_signed_out_of_range_times_are_a_401(
        self, client: httpx.AsyncClient, viewer: Credentials, claim: str, value: int
    ) -> None:
        """A correctly signed JWT whose iat or exp is ±1e20 is refused with 401, not a 500."""
        claims = jwt.decode(viewer.token, TEST_JWT_SECRET, algorithms=["HS256"]) | {claim: value}
        token = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
        response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"


class TestConcurrentTokenCreation:
    """A token created while the user is being disabled never survives the disable
    (PostgreSQL, where the two transactions overlap; SQLite runs one writer at a time)."""

    @pytest.fixture(autouse=True)
    def _postgresql_only(self, db_url: str) -> None:
        if not db_url.startswith("postgresql"):
            pytest.skip("SQLite serialises write transactions: they cannot overlap")

    async def test_creation_waiting_for_a_disable_is_refused(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
        viewer: Credentials,
    ) -> None:
        """The disable holds the user's row; the creation waits for it, then sees the user
        disabled and refuses: no token outlives the disable."""
        principal = await _principal(sessionmaker, security, viewer)
        async with unit_of_work(sessionmaker) as disabling:
            await auth_service.set_user_disabled(disabling, CONTEXT, "vera", disabled=True)
            creating = asyncio.create_task(_create_token(sessionmaker, principal))
            async with asyncio.timeout(10):
                await _wait_for_lock_wait(disabling)
            assert not creating.done()
        with pytest.raises(InvalidToken, match="revoked"):
            await asyncio.wait_for(creating, timeout=10)
        assert await _tokens(sessionmaker) == 0

    async def test_a_disable_waiting_for_a_creation_deletes_its_token(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        security: Security,
        viewer: Credentials,
    ) -> None:
        """The creation holds the user's row; the disable waits for it, then deletes the
        token it created."""
        principal = await _principal(sessionmaker, security, viewer)
        async with unit_of_work(sessionmaker) as creating:
            await auth_service.create_api_token(
                creating, CONTEXT, principal, name="racing", expires_at=None, scopes=None
            )
            disabling = asyncio.create_task(_disable(sessionmaker, "vera"))
            async with asyncio.timeout(10):
                await _wait_for_lock_wait(creating)
            assert not disabling.done()
        await asyncio.wait_for(disabling, timeout=10)
        assert await _tokens(sessionmaker) == 0


async def _principal(
    sessionmaker: async_sessionmaker[AsyncSession], security: Security, user: Credentials
) -> Principal:
    async with unit_of_work(sessionmaker) as session:
        return await auth_service.authenticate(session, security, user.token)


async def _create_token(
    sessionmaker: async_sessionmaker[AsyncSession], principal: Principal
) -> None:
    async with unit_of_work(sessionmaker) as session:
        await auth_service.create_api_token(
            session, CONTEXT, principal, name="racing", expires_at=None, scopes=None
        )


async def _tokens(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with unit_of_work(sessionmaker) as session:
        return int(await session.scalar(select(func.count()).select_from(ApiToken)) or 0)


async def _disable(sessionmaker: async_sessionmaker[AsyncSession], username: str) -> None:
    async with unit_of_work(sessionmaker) as session:
        await auth_service.set_user_disabled(session, CONTEXT, username, disabled=True)


async def _wait_for_lock_wait(session: AsyncSession) -> None:
    """Until another backend of this database waits for a lock (the blocked transaction);
    the caller bounds it with ``asyncio.timeout``."""
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database()"
    )
    while True:
        # pg_stat_activity is read once per transaction unless the snapshot is cleared.
        await session.execute(text("SELECT pg_stat_clear_snapshot()"))
        if await session.scalar(waiting):
            return
        await asyncio.sleep(0.02)
