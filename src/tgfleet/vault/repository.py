from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tgfleet.kit.repository import RepositoryBase
from tgfleet.models import RotationState, SecretState, SessionSecret, VaultRotation

# Key of the PostgreSQL advisory lock between writers of secrets (shared) and the end of a
# rotation (exclusive), so a KEK is never retired under an import still writing with it.
VAULT_LOCK_KEY = 0x7467766175_6C74  # "tgvault"


async def lock_vault(session: AsyncSession, *, exclusive: bool) -> None:
    """Hold the vault lock for the rest of the transaction. SQLite needs none: its units of
    work already hold the database write lock from their first statement."""
    if session.get_bind().dialect.name != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await session.execute(text(f"SELECT {function}(:key)"), {"key": VAULT_LOCK_KEY})


#: Key of the PostgreSQL advisory lock a rotation holds from start to end (one at a time).
ROTATION_LOCK_KEY = 0x7467726F74_6174  # "tgrotat"


@asynccontextmanager
async def rotation_lock(engine: AsyncEngine) -> AsyncIterator[bool]:
    """PostgreSQL: try the rotation lock on a connection of its own (autocommit, so no
    transaction stays open for the run) and hold it until the block ends; yields whether
    it was taken. A process that dies drops its connection, and the lock with it. Other
    databases: yields True (the caller locks otherwise)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    async with engine.connect() as raw:
        connection = await raw.execution_options(isolation_level="AUTOCOMMIT")
        taken = bool(
            (
                await connection.execute(
                    text("SELECT pg_try_advisory_lock(:key)"), {"key": ROTATION_LOCK_KEY}
                )
            ).scalar_one()
        )
        try:
            yield taken
        finally:
            if taken:
                await connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": ROTATION_LOCK_KEY}
                )


#: What a listing shows of a secret (``summaries``): never the key material.
_SUMMARY_COLUMNS = (
    SessionSecret.account_id,
    SessionSecret.state,
    SessionSecret.source_format,
    SessionSecret.version,
    SessionSecret.kek_id,
    SessionSecret.updated_at,
)


class SecretRepository(RepositoryBase[SessionSecret]):
    model = SessionSecret

    async def active_per_kek(self) -> dict[str, int]:
        """How many active secrets each KEK id wraps."""
        result = await self.session.execute(
            select(SessionSecret.kek_id, func.count())
            .where(SessionSecret.state == SecretState.ACTIVE, SessionSecret.kek_id.is_not(None))
            .group_by(SessionSecret.kek_id)
        )
        return {str(kek_id): int(count) for kek_id, count in result.all()}

    async def one_under(self, kek_id: str) -> SessionSecret | None:
        """One active secret wrapped by ``kek_id`` (a key check decrypts one per key)."""
        return await self.first(
            select(SessionSecret)
            .where(SessionSecret.state == SecretState.ACTIVE, SessionSecret.kek_id == kek_id)
            .limit(1)
        )

    async def by_fingerprint(self, fingerprint: str) -> SessionSecret | None:
        return await self.first(
            select(SessionSecret).where(SessionSecret.auth_key_fingerprint == fingerprint)
        )

    async def fingerprint(self, only: Sequence[uuid.UUID] | None = None) -> tuple[object, ...]:
        statement = select(
            func.count(), func.max(SessionSecret.updated_at), func.sum(SessionSecret.version)
        )
        if only is not None:
            statement = statement.where(SessionSecret.account_id.in_(list(only)))
        result = await self.session.execute(statement)
        return tuple(result.one())

    async def versions(
        self, only: Sequence[uuid.UUID] | None = None
    ) -> dict[uuid.UUID, tuple[int, str]]:
        """Every secret's (version, state), without loading key material."""
        statement = select(SessionSecret.account_id, SessionSecret.version, SessionSecret.state)
        if only is not None:
            statement = statement.where(SessionSecret.account_id.in_(list(only)))
        result = await self.session.execute(statement)
        return {account_id: (version, state) for account_id, version, state in result.all()}

    async def holders(self, fingerprints: Sequence[str]) -> dict[str, uuid.UUID]:
        """Which account holds each of these auth-key fingerprints (those in the vault)."""
        if not fingerprints:
            return {}
        result = await self.session.execute(
            select(SessionSecret.auth_key_fingerprint, SessionSecret.account_id).where(
                SessionSecret.auth_key_fingerprint.in_(list(fingerprints))
            )
        )
        return {str(fingerprint): account_id for fingerprint, account_id in result.all()}

    async def summaries(
        self, account_ids: Sequence[uuid.UUID]
    ) -> list[tuple[uuid.UUID, str, str, int, str | None, datetime]]:
        """(account id, state, source format, version, KEK id, updated at) of these
        accounts' secrets: those columns alone, not the wrapped key and ciphertext (about
        28 KiB a session) a page of 50 would otherwise load."""
        if not account_ids:
            return []
        result = await self.session.execute(
            select(*_SUMMARY_COLUMNS).where(SessionSecret.account_id.in_(list(account_ids)))
        )
        return [tuple(row) for row in result.all()]  # type: ignore[misc]

    async def in_state(
        self, state: str, *, limit: int
    ) -> list[tuple[uuid.UUID, str, str, int, str | None, datetime]]:
        """``summaries``' columns of the first ``limit`` secrets in ``state``, the most
        recently changed first."""
        result = await self.session.execute(
            select(*_SUMMARY_COLUMNS)
            .where(SessionSecret.state == state)
            .order_by(SessionSecret.updated_at.desc(), SessionSecret.account_id)
            .limit(limit)
        )
        return [tuple(row) for row in result.all()]  # type: ignore[misc]

    async def for_accounts(self, account_ids: Sequence[uuid.UUID]) -> list[SessionSecret]:
        if not account_ids:
            return []
        return await self.all(
            select(SessionSecret).where(SessionSecret.account_id.in_(list(account_ids)))
        )

    async def needing_rewrap(
        self, target_kek_id: str, *, after: uuid.UUID | None, limit: int
    ) -> list[SessionSecret]:
        """Secrets wrapped by any other KEK, in account id order (keyset pagination)."""
        statement = (
            select(SessionSecret)
            .where(
                SessionSecret.kek_id.is_not(None),
                SessionSecret.kek_id != target_kek_id,
                SessionSecret.wrapped_key.is_not(None),
            )
            .order_by(SessionSecret.account_id)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(SessionSecret.account_id > after)
        return await self.all(statement)

    async def set_wrapped_keys(self, rows: list[tuple[uuid.UUID, int, str, bytes]]) -> None:
        """Write many re-wrapped data keys in one executemany. Each row names the version it
        re-wrapped: a secret re-sealed meanwhile (a recovering re-import bumps the version)
        is left alone rather than given a key that no longer matches its ciphertext."""
        if not rows:
            return
        # A Core UPDATE on the table (not the ORM entity), so executemany may filter on
        # more than the primary key.
        table = cast("Table", SessionSecret.__table__)
        statement = (
            update(table)
            .where(
                table.c.account_id == bindparam("match_account_id"),
                table.c.version == bindparam("match_version"),
            )
            .values(kek_id=bindparam("new_kek_id"), wrapped_key=bindparam("new_wrapped_key"))
        )
        await self.session.execute(
            statement,
            [
                {
                    "match_account_id": account_id,
                    "match_version": version,
                    "new_kek_id": kek_id,
                    "new_wrapped_key": wrapped,
                }
                for account_id, version, kek_id, wrapped in rows
            ],
        )

    async def count_by_kek(self) -> dict[str, int]:
        result = await self.session.execute(
            select(SessionSecret.kek_id, func.count())
            .where(SessionSecret.kek_id.is_not(None))
            .group_by(SessionSecret.kek_id)
        )
        return {str(kek_id): int(count) for kek_id, count in result.all()}

    async def count_by_state(self) -> dict[str, int]:
        result = await self.session.execute(
            select(SessionSecret.state, func.count()).group_by(SessionSecret.state)
        )
        return {str(state): int(count) for state, count in result.all()}


class RotationRepository(RepositoryBase[VaultRotation]):
    model = VaultRotation

    async def running(self) -> VaultRotation | None:
        return await self.first(
            select(VaultRotation)
            .where(VaultRotation.state == RotationState.RUNNING)
            .order_by(VaultRotation.id.desc())
        )

    async def latest(self) -> VaultRotation | None:
        return await self.first(select(VaultRotation).order_by(VaultRotation.id.desc()))
