"""Lease statements (PostgreSQL). Each is one round trip whatever the number of accounts,
so the coordination load grows with workers, not with accounts (docs/scaling.md)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Protocol

from sqlalchemy import TextClause, delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tgfleet.account.schemas import HELD_STATES
from tgfleet.kit.clock import utcnow
from tgfleet.models import (
    Account,
    AccountLease,
    AccountState,
    DesiredState,
    ReplyClaim,
    ReplyWindow,
    WorkerState,
)


def _literal(*states: StrEnum) -> str:
    """States as SQL: ``'running'``, or ``('error', 'quarantined')`` for several."""
    quoted = ", ".join(f"'{state.value}'" for state in states)
    return quoted if len(states) == 1 else f"({quoted})"


#: The states the statements below name (``{desired_running}``...), from the enums.
STATES: Final[Mapping[str, str]] = {
    "desired_running": _literal(DesiredState.RUNNING),
    "worker_running": _literal(WorkerState.RUNNING),
    "worker_stopped": _literal(WorkerState.STOPPED),
    "unassigned": _literal(AccountState.UNASSIGNED),
    #: Statuses the leader never marks unassigned: already so, or held for an operator.
    "kept_statuses": _literal(AccountState.UNASSIGNED, *sorted(HELD_STATES)),
}


def sql(statement: str) -> TextClause:
    """``text(statement)`` with the states it names written in from :data:`STATES` as
    literals: PostgreSQL plans them as constants, and the text is the SQL that runs."""
    return text(statement.format_map(STATES))


REGISTER = sql(
    """
    INSERT INTO worker (id, epoch, host, pid, version, capacity, state, started_at,
                        heartbeat_at, expires_at)
    VALUES (:id, 1, :host, :pid, :version, :capacity, {worker_running}, now(), now(),
            now() + make_interval(secs => :ttl))
    ON CONFLICT (id) DO UPDATE SET
        epoch = worker.epoch + 1, host = excluded.host, pid = excluded.pid,
        version = excluded.version, capacity = excluded.capacity, state = {worker_running},
        started_at = now(), heartbeat_at = now(), expires_at = excluded.expires_at
    RETURNING epoch, expires_at
    """
)

HEARTBEAT = sql(
    """
    UPDATE worker SET heartbeat_at = now(), expires_at = now() + make_interval(secs => :ttl)
    WHERE id = :id AND epoch = :epoch AND state <> {worker_stopped} AND expires_at > now()
    RETURNING expires_at
    """
)

# Lease rows exist for accounts desired running (created by the start commands and the
# leader's sweep); a free row has worker_id NULL and sits in the partial index
# ix_account_lease_free, so a claim reads free rows only, never the whole fleet.
ENSURE_FOR = text(
    """
    INSERT INTO account_lease (account_id)
    SELECT unnest(CAST(:ids AS uuid[]))
    ON CONFLICT (account_id) DO NOTHING
    """
)

ENSURE_ALL = sql(
    """
    INSERT INTO account_lease (account_id)
    SELECT a.id FROM account a
    WHERE a.desired_state = {desired_running}
      AND NOT EXISTS (SELECT 1 FROM account_lease l WHERE l.account_id = a.id)
    ON CONFLICT (account_id) DO NOTHING
    """
)

PRUNE_WORKERS = text(
    """
    DELETE FROM worker w WHERE w.expires_at < now() - interval '1 day'
      AND NOT EXISTS (SELECT 1 FROM account_lease l WHERE l.worker_id = w.id)
    """
)

DROP_STOPPED_FREE = sql(
    """
    DELETE FROM account_lease l USING account a
    WHERE l.worker_id IS NULL AND a.id = l.account_id AND a.desired_state <> {desired_running}
    """
)

# Free rows of accounts desired running, locked with SKIP LOCKED: concurrent claimers split
# the candidates instead of waiting on each other. Only while the claimer's own lease holds.
CLAIM = sql(
    """
    WITH candidates AS (
        SELECT l.account_id
        FROM account_lease l
        JOIN account a ON a.id = l.account_id AND a.desired_state = {desired_running}
        WHERE l.worker_id IS NULL
        ORDER BY l.account_id
        LIMIT :limit
        FOR UPDATE OF l SKIP LOCKED
    )
    UPDATE account_lease l
    SET worker_id = :id, epoch = :epoch, acquired_at = now()
    FROM candidates c
    WHERE l.account_id = c.account_id
      AND EXISTS (SELECT 1 FROM worker me
                  WHERE me.id = :id AND me.epoch = :epoch AND me.expires_at > now())
    RETURNING l.account_id
    """
)

# The leader frees the leases of workers that expired more than `grace` ago (by then the
# holder has fenced itself) through ix_account_lease_worker_id, and those of earlier runs
# (epochs) of workers that registered again more than `grace` ago.
REAP_DEAD = text(
    """
    UPDATE account_lease SET worker_id = NULL, epoch = NULL, acquired_at = NULL
    WHERE worker_id = ANY(CAST(:ids AS varchar[]))
    """
)

REAP_SUPERSEDED = text(
    """
    UPDATE account_lease l SET worker_id = NULL, epoch = NULL, acquired_at = NULL
    FROM unnest(CAST(:ids AS varchar[]), CAST(:epochs AS bigint[])) AS s(id, epoch)
    WHERE l.worker_id = s.id AND l.epoch < s.epoch
    """
)

HELD = text(
    """
    SELECT l.account_id FROM account_lease l JOIN worker w ON w.id = l.worker_id
    WHERE l.worker_id = :id AND l.epoch = :epoch AND w.epoch = :epoch
      AND w.expires_at > now()
    """
)

RELEASE_SOME = text(
    """
    UPDATE account_lease SET worker_id = NULL, epoch = NULL, acquired_at = NULL
    WHERE worker_id = :id AND epoch = :epoch AND account_id = ANY(:ids)
    """
)

RELEASE_ALL = text(
    """
    UPDATE account_lease SET worker_id = NULL, epoch = NULL, acquired_at = NULL
    WHERE worker_id = :id AND epoch = :epoch
    """
)

RELEASE_STOPPED = sql(
    """
    DELETE FROM account_lease l USING account a
    WHERE a.id = l.account_id AND l.worker_id = :id AND l.epoch = :epoch
      AND a.desired_state <> {desired_running}
    """
)

DEREGISTER = sql(
    """
    UPDATE worker SET state = {worker_stopped}, expires_at = now(), heartbeat_at = now()
    WHERE id = :id AND epoch = :epoch
    """
)

# Every registered worker (a small table): who is live, who is dead, who re-registered.
WORKER_CLOCK = sql(
    """
    SELECT id, epoch, state = {worker_running} AS running,
           EXTRACT(EPOCH FROM (expires_at - now())) AS expires_in,
           EXTRACT(EPOCH FROM (now() - started_at)) AS age
    FROM worker
    ORDER BY id
    """
)

RUNNING_ACCOUNTS = sql("SELECT count(*) FROM account WHERE desired_state = {desired_running}")


WORKERS = text(
    """
    SELECT w.id, w.epoch, w.host, w.pid, w.version, w.capacity, w.state, w.started_at,
           w.heartbeat_at, w.expires_at, w.expires_at > now() AS alive,
           (SELECT count(*) FROM account_lease l
            WHERE l.worker_id = w.id AND l.epoch = w.epoch) AS held
    FROM worker w
    ORDER BY w.id
    """
)

HOLDERS = text(
    """
    SELECT l.account_id, l.worker_id FROM account_lease l JOIN worker w ON w.id = l.worker_id
    WHERE l.account_id = ANY(:ids) AND l.epoch = w.epoch AND w.expires_at > now()
    """
)

UNASSIGNED = sql(
    """
    SELECT count(*) FROM account a
    LEFT JOIN account_lease l ON l.account_id = a.id
    LEFT JOIN worker w ON w.id = l.worker_id
    WHERE a.desired_state = {desired_running}
      AND (l.worker_id IS NULL OR w.id IS NULL OR w.epoch <> l.epoch OR w.expires_at <= now())
    """
)


# Status rows of accounts desired running whose lease is free (nobody holds it, or the
# leader reaped it from a dead worker) say `unassigned`, so the API and alerts see them;
# the worker that claims one moves it on. Reads free lease rows only (ix_account_lease_free).
MARK_UNASSIGNED = sql(
    """
    UPDATE account_status s
    SET state = {unassigned}, since = now(), updated_at = now(), worker_id = NULL,
        reason = 'no_worker'
    FROM account_lease l
    JOIN account a ON a.id = l.account_id AND a.desired_state = {desired_running}
    WHERE l.worker_id IS NULL AND s.account_id = l.account_id
      AND s.state NOT IN {kept_statuses}
      AND s.updated_at < now() - make_interval(secs => :grace)
    """
)

# The same for accounts no worker ever ran (no status row yet).
INSERT_UNASSIGNED = sql(
    """
    INSERT INTO account_status (account_id, state, since, reason, restart_seq,
                                messages_received, replies_sent, replies_suppressed,
                                reconnects, updated_at)
    SELECT l.account_id, {unassigned}, now(), 'no_worker', 0, 0, 0, 0, 0, now()
    FROM account_lease l
    JOIN account a ON a.id = l.account_id AND a.desired_state = {desired_running}
    WHERE l.worker_id IS NULL
      AND NOT EXISTS (SELECT 1 FROM account_status s WHERE s.account_id = l.account_id)
      AND a.updated_at < now() - make_interval(secs => :grace)
    ON CONFLICT (account_id) DO NOTHING
    """
)


class LeaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _one(self, statement: Any, **params: Any) -> Any:
        return (await self.session.execute(statement, params)).one_or_none()

    async def register(
        self, *, worker_id: str, host: str, pid: int, version: str, capacity: int, ttl: float
    ) -> tuple[int, datetime]:
        row = await self._one(
            REGISTER,
            id=worker_id,
            host=host,
            pid=pid,
            version=version,
            capacity=capacity,
            ttl=ttl,
        )
        return int(row[0]), row[1]

    async def current_epoch(self, worker_id: str) -> int | None:
        row = await self._one(text("SELECT epoch FROM worker WHERE id = :id"), id=worker_id)
        return None if row is None else int(row[0])

    async def heartbeat(self, worker_id: str, epoch: int, ttl: float) -> datetime | None:
        row = await self._one(HEARTBEAT, id=worker_id, epoch=epoch, ttl=ttl)
        return None if row is None else row[0]

    async def claim(self, worker_id: str, epoch: int, *, limit: int) -> list[uuid.UUID]:
        if limit <= 0:
            return []
        result = await self.session.execute(
            CLAIM, {"id": worker_id, "epoch": epoch, "limit": limit}
        )
        return [row[0] for row in result.all()]

    async def ensure(self, account_ids: Collection[uuid.UUID] | None) -> None:
        if account_ids is None:
            await self.session.execute(ENSURE_ALL)
            await self.session.execute(DROP_STOPPED_FREE)
            await self.session.execute(PRUNE_WORKERS)
        elif account_ids:
            await self.session.execute(ENSURE_FOR, {"ids": list(account_ids)})

    async def reap(self, dead: Collection[str], superseded: Collection[tuple[str, int]]) -> int:
        freed = 0
        if dead:
            result = await self.session.execute(REAP_DEAD, {"ids": list(dead)})
            freed += int(getattr(result, "rowcount", 0) or 0)
        if superseded:
            result = await self.session.execute(
                REAP_SUPERSEDED,
                {"ids": [w for w, _e in superseded], "epochs": [e for _w, e in superseded]},
            )
            freed += int(getattr(result, "rowcount", 0) or 0)
        return freed

    async def leased_by(self, worker_id: str, account_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        if not account_ids:
            return set()
        result = await self.session.execute(
            select(AccountLease.account_id).where(
                AccountLease.worker_id == worker_id,
                AccountLease.account_id.in_(list(account_ids)),
            )
        )
        return set(result.scalars().all())

    async def held(self, worker_id: str, epoch: int) -> set[uuid.UUID]:
        result = await self.session.execute(HELD, {"id": worker_id, "epoch": epoch})
        return {row[0] for row in result.all()}

    async def release(
        self, worker_id: str, epoch: int, account_ids: Collection[uuid.UUID] | None
    ) -> int:
        if account_ids is None:
            result = await self.session.execute(RELEASE_ALL, {"id": worker_id, "epoch": epoch})
        else:
            if not account_ids:
                return 0
            result = await self.session.execute(
                RELEASE_SOME, {"id": worker_id, "epoch": epoch, "ids": list(account_ids)}
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def release_stopped(self, worker_id: str, epoch: int) -> int:
        result = await self.session.execute(RELEASE_STOPPED, {"id": worker_id, "epoch": epoch})
        return int(getattr(result, "rowcount", 0) or 0)

    async def deregister(self, worker_id: str, epoch: int) -> None:
        await self.session.execute(DEREGISTER, {"id": worker_id, "epoch": epoch})

    async def worker_clock(self) -> list[tuple[str, int, bool, float, float]]:
        result = await self.session.execute(WORKER_CLOCK)
        return [
            (row[0], int(row[1]), bool(row[2]), float(row[3]), float(row[4]))
            for row in result.all()
        ]

    async def running_accounts(self) -> int:
        return int((await self._one(RUNNING_ACCOUNTS))[0])

    async def mark_unassigned(self, grace: float) -> int:
        inserted = await self.session.execute(INSERT_UNASSIGNED, {"grace": grace})
        updated = await self.session.execute(MARK_UNASSIGNED, {"grace": grace})
        return int(getattr(inserted, "rowcount", 0) or 0) + int(
            getattr(updated, "rowcount", 0) or 0
        )

    async def workers(self) -> list[Any]:
        return list((await self.session.execute(WORKERS)).all())

    async def holders(self, account_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
        if not account_ids:
            return {}
        result = await self.session.execute(HOLDERS, {"ids": list(account_ids)})
        return {row[0]: row[1] for row in result.all()}

    async def unassigned(self) -> int:
        return int((await self._one(UNASSIGNED))[0])


# --- Replies (issue 13): one statement per decision; the functions are in migration 0007.

# Plain asyncpg statements: the per-reply hot path skips SQLAlchemy (half the client CPU).
ADMIT_REPLY = (
    "SELECT verdict, reserved_at, retry_in FROM tgfleet_reply_admit($1, $2, $3, $4, $5, $6,"
    " $7, $8, $9)"
)
RELEASE_REPLY = "SELECT tgfleet_reply_release($1, $2, $3, $4, $5)"


class ReplyConnection(Protocol):
    """What the reply calls need of a connection: an asyncpg ``Connection`` has it."""

    async def fetchrow(self, query: str, *args: object) -> Any: ...

    async def execute(self, query: str, *args: object) -> str: ...


class ReplyCalls:
    """One fleet-wide reply decision per call, one round trip each (migration 0007)."""

    def __init__(self, connection: ReplyConnection) -> None:
        self.connection = connection

    async def admit(
        self,
        *,
        key: str,
        account_id: uuid.UUID,
        chat_id: int,
        sender_id: int | None,
        min_interval: float,
        account_hourly: int,
        group_hourly: int,
        claim_seconds: float,
        announce: str | None = None,
    ) -> tuple[str, float | None, float | None]:
        row = await self.connection.fetchrow(
            ADMIT_REPLY,
            key,
            account_id,
            chat_id,
            sender_id,
            float(min_interval),
            account_hourly,
            group_hourly,
            float(claim_seconds),
            announce,
        )
        return str(row[0]), row[1], row[2]

    async def release(
        self,
        *,
        key: str,
        account_id: uuid.UUID,
        chat_id: int,
        reserved_at: float,
        keep_claim: bool,
    ) -> None:
        await self.connection.execute(
            RELEASE_REPLY, key, account_id, chat_id, reserved_at, keep_claim
        )


PRUNE_CLAIMS = text("DELETE FROM reply_claim WHERE expires_at < now()")

# A window whose newest reply is an hour old can never refuse anything again.
PRUNE_WINDOWS = text(
    """
    DELETE FROM reply_window
    WHERE coalesce(sent_at[cardinality(sent_at)], 0) < extract(epoch FROM now()) - 3600
    """
)


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
