"""Lease statements (PostgreSQL). Each is one round trip whatever the number of accounts,
so the coordination load grows with workers, not with accounts (docs/scaling.md)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

REGISTER = text(
    """
    INSERT INTO worker (id, epoch, host, pid, version, capacity, state, started_at,
                        heartbeat_at, expires_at)
    VALUES (:id, 1, :host, :pid, :version, :capacity, 'running', now(), now(),
            now() + make_interval(secs => :ttl))
    ON CONFLICT (id) DO UPDATE SET
        epoch = worker.epoch + 1, host = excluded.host, pid = excluded.pid,
        version = excluded.version, capacity = excluded.capacity, state = 'running',
        started_at = now(), heartbeat_at = now(), expires_at = excluded.expires_at
    RETURNING epoch, expires_at
    """
)

HEARTBEAT = text(
    """
    UPDATE worker SET heartbeat_at = now(), expires_at = now() + make_interval(secs => :ttl)
    WHERE id = :id AND epoch = :epoch AND state <> 'stopped'
    RETURNING expires_at
    """
)

# Free rows for accounts that have none yet, so that claims can lock rows.
ENSURE_ROWS = text(
    """
    INSERT INTO account_lease (account_id)
    SELECT a.id FROM account a
    WHERE a.desired_state = 'running'
      AND NOT EXISTS (SELECT 1 FROM account_lease l WHERE l.account_id = a.id)
    ON CONFLICT (account_id) DO NOTHING
    """
)

# Claimable: free; or held by a worker that expired more than `grace` ago; or held by an
# earlier run (epoch) of a worker that registered again more than `grace` ago; or held by a
# worker row that no longer exists. Locked with SKIP LOCKED: concurrent claimers split the
# candidates instead of waiting on each other.
CLAIM = text(
    """
    WITH candidates AS (
        SELECT l.account_id
        FROM account_lease l
        JOIN account a ON a.id = l.account_id
        LEFT JOIN worker w ON w.id = l.worker_id
        WHERE a.desired_state = 'running'
          AND (l.worker_id IS NULL
               OR w.id IS NULL
               OR w.expires_at < now() - make_interval(secs => :grace)
               OR (w.epoch <> l.epoch AND w.started_at < now() - make_interval(secs => :grace)))
        ORDER BY l.account_id
        LIMIT :limit
        FOR UPDATE OF l SKIP LOCKED
    )
    UPDATE account_lease l
    SET worker_id = :id, epoch = :epoch, acquired_at = now()
    FROM candidates c, worker me
    WHERE l.account_id = c.account_id
      AND me.id = :id AND me.epoch = :epoch AND me.expires_at > now()
    RETURNING l.account_id
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

RELEASE_STOPPED = text(
    """
    UPDATE account_lease l SET worker_id = NULL, epoch = NULL, acquired_at = NULL
    FROM account a
    WHERE a.id = l.account_id AND l.worker_id = :id AND l.epoch = :epoch
      AND a.desired_state <> 'running'
    """
)

DEREGISTER = text(
    """
    UPDATE worker SET state = 'stopped', expires_at = now(), heartbeat_at = now()
    WHERE id = :id AND epoch = :epoch
    """
)

SHAPE = text(
    """
    SELECT
        (SELECT count(*) FROM worker WHERE expires_at > now() AND state = 'running'),
        (SELECT coalesce(sum(capacity), 0) FROM worker
         WHERE expires_at > now() AND state = 'running'),
        (SELECT count(*) FROM account WHERE desired_state = 'running'),
        (SELECT min(id) FROM worker WHERE expires_at > now() AND state = 'running')
    """
)

# Status rows of accounts desired running that no live worker holds (past the grace) say
# `unassigned`, so the API and alerts see them; the worker that takes one moves it on.
MARK_UNASSIGNED = text(
    """
    UPDATE account_status s
    SET state = 'unassigned', since = now(), updated_at = now(), worker_id = NULL,
        reason = 'no_worker'
    FROM account a
    LEFT JOIN account_lease l ON l.account_id = a.id
    LEFT JOIN worker w ON w.id = l.worker_id
    WHERE s.account_id = a.id AND a.desired_state = 'running'
      AND s.state NOT IN ('unassigned', 'quarantined', 'error')
      AND (l.worker_id IS NULL OR w.id IS NULL OR w.epoch <> l.epoch
           OR w.expires_at < now() - make_interval(secs => :grace))
      AND s.updated_at < now() - make_interval(secs => :grace)
    """
)

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

UNASSIGNED = text(
    """
    SELECT count(*) FROM account a
    LEFT JOIN account_lease l ON l.account_id = a.id
    LEFT JOIN worker w ON w.id = l.worker_id
    WHERE a.desired_state = 'running'
      AND (l.worker_id IS NULL OR w.id IS NULL OR w.epoch <> l.epoch OR w.expires_at <= now())
    """
)


# The same for accounts no worker ever ran (no status row yet).
INSERT_UNASSIGNED = text(
    """
    INSERT INTO account_status (account_id, state, since, reason, restart_seq,
                                messages_received, replies_sent, replies_suppressed,
                                reconnects, updated_at)
    SELECT a.id, 'unassigned', now(), 'no_worker', 0, 0, 0, 0, 0, now()
    FROM account a
    LEFT JOIN account_lease l ON l.account_id = a.id
    LEFT JOIN worker w ON w.id = l.worker_id
    WHERE a.desired_state = 'running'
      AND NOT EXISTS (SELECT 1 FROM account_status s WHERE s.account_id = a.id)
      AND (l.worker_id IS NULL OR w.id IS NULL OR w.epoch <> l.epoch
           OR w.expires_at < now() - make_interval(secs => :grace))
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

    async def heartbeat(self, worker_id: str, epoch: int, ttl: float) -> datetime | None:
        row = await self._one(HEARTBEAT, id=worker_id, epoch=epoch, ttl=ttl)
        return None if row is None else row[0]

    async def claim(
        self, worker_id: str, epoch: int, *, limit: int, grace: float
    ) -> list[uuid.UUID]:
        if limit <= 0:
            return []
        await self.session.execute(ENSURE_ROWS)
        result = await self.session.execute(
            CLAIM, {"id": worker_id, "epoch": epoch, "limit": limit, "grace": grace}
        )
        return [row[0] for row in result.all()]

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

    async def shape(self) -> tuple[int, int, int, str | None]:
        row = await self._one(SHAPE)
        return int(row[0]), int(row[1]), int(row[2]), row[3]

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
