"""Fleet-wide reply decisions (issue 13): the admit and release calls on PostgreSQL (plain
asyncpg, one round trip each), the leader's prune, and one process's saved decisions
(SQLite)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tgfleet.kit.clock import utcnow
from tgfleet.lease.statements import ADMIT_REPLY, PRUNE_CLAIMS, PRUNE_WINDOWS, RELEASE_REPLY
from tgfleet.models import Account, ReplyClaim, ReplyWindow


class ReplyConnection(Protocol):
    """What the reply calls need of a connection: an asyncpg ``Connection`` has it."""

    async def fetchrow(self, query: str, *args: object) -> Any: ...

    async def execute(self, query: str, *args: object) -> str: ...


class ReplyCalls:
    """One fleet-wide reply decision per call, one round trip each. The arguments are the
    SQL functions' own, in their order (migration 0007); ``lease.service.admit_reply`` and
    ``release_reply`` name them."""

    def __init__(self, connection: ReplyConnection) -> None:
        self.connection = connection

    async def admit(self, *arguments: object) -> tuple[str, float | None, float | None]:
        """``tgfleet_reply_admit``: the verdict, the reservation's time and the retry delay."""
        row = await self.connection.fetchrow(ADMIT_REPLY, *arguments)
        return str(row[0]), row[1], row[2]

    async def release(self, *arguments: object) -> None:
        """``tgfleet_reply_release``: the budget given back, the claim too unless kept."""
        await self.connection.execute(RELEASE_REPLY, *arguments)


class ReplyRepository:
    """The reply tables through SQLAlchemy: the leader's prune, and one process's saved
    decisions (SQLite)."""

    def __init__(self, connection: AsyncConnection | AsyncSession) -> None:
        self.connection = connection

    # One process (SQLite): the in-memory gate's decisions, saved and loaded as rows.

    async def saved(self) -> tuple[list[ReplyWindow], list[ReplyClaim]]:
        windows = (await self.connection.execute(select(ReplyWindow))).scalars().all()
        claims = (
            (
                await self.connection.execute(
                    select(ReplyClaim).where(ReplyClaim.expires_at > utcnow())
                )
            )
            .scalars()
            .all()
        )
        return list(windows), list(claims)

    async def save(
        self,
        windows: Mapping[str, list[float]],
        claims: Sequence[tuple[str, uuid.UUID, int, float, float]],
        gone: Collection[str],
    ) -> None:
        if windows:
            await self.connection.execute(
                delete(ReplyWindow).where(ReplyWindow.key.in_(list(windows)))
            )
            window_rows = [
                {"key": key, "sent_at": times} for key, times in windows.items() if times
            ]
            if window_rows:
                await self.connection.execute(insert(ReplyWindow), window_rows)
        keys = [claim[0] for claim in claims] + list(gone)
        if keys:
            await self.connection.execute(delete(ReplyClaim).where(ReplyClaim.key.in_(keys)))
        if claims:
            live = set(
                (
                    await self.connection.execute(
                        select(Account.id).where(Account.id.in_({c[1] for c in claims}))
                    )
                ).scalars()
            )
            rows = [
                {
                    "key": key,
                    "account_id": account_id,
                    "chat_id": chat_id,
                    "claimed_at": datetime.fromtimestamp(claimed_at, UTC),
                    "expires_at": datetime.fromtimestamp(expires_at, UTC),
                }
                for key, account_id, chat_id, claimed_at, expires_at in claims
                if account_id in live
            ]
            if rows:
                await self.connection.execute(insert(ReplyClaim), rows)
        await self.connection.execute(delete(ReplyClaim).where(ReplyClaim.expires_at <= utcnow()))

    async def prune(self) -> tuple[int, int]:
        claims = await self.connection.execute(PRUNE_CLAIMS)
        windows = await self.connection.execute(PRUNE_WINDOWS)
        return _rowcount(claims), _rowcount(windows)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
