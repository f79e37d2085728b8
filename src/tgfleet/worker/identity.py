"""Which id a ``tgfleet worker`` takes, and the refusal of an id a live worker holds.

A worker's id names its row in ``worker`` and its leases. Two live processes under one id
fence each other's leases off in turn (each registration bumps the epoch) and the later one
marks the earlier one's accounts stopped at start: so an id a live worker holds is refused.

Whether the holder of a row is live: a row that expired or was stopped is free. A row on
this host whose pid is a running process other than this one is held. Anything else (a row
of another host; on this host a pid that no longer exists or is this process's own — a crash
and restart, a container restarted in place, or a sibling container sharing the host name
in its own pid namespace) is decided by watching its heartbeat: a live worker renews every
TTL/3, and one that has not renewed for TTL/2 has stopped its clients itself (it fences
itself off), so a heartbeat that does not move for TTL/2 + 1 s belongs to no live worker.

Without ``--id`` or ``TGFLEET_WORKER_ID`` the id is the host name, or ``<host>-2``,
``<host>-3``, ... when a live worker already holds it: several workers on one host just
work, and a restarted worker gets the first free one back. The choice and the registration
that follows happen under a PostgreSQL advisory lock, so workers started together cannot
pick the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tgfleet.exceptions import ConfigError
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.lease import service as lease_service
from tgfleet.models import WorkerState

#: The advisory lock between workers choosing an id and registering it (any constant).
IDENTITY_LOCK = 0x7467_666C_6964_01
#: How long a starting worker waits for another one's choice and registration.
LOCK_TIMEOUT_SECONDS = 30
#: Most workers one host runs under its default ids (``<host>`` .. ``<host>-64``).
MAX_DEFAULT_SLOTS = 64
ID_MAX_CHARS = 128  # the worker table's id column
#: How often a watched heartbeat is read again.
WATCH_STEP_SECONDS = 0.5

Workers = Mapping[str, lease_service.WorkerView]


class WorkerIdInUse(ConfigError):
    """A live worker other than this process holds the id."""


@dataclass(frozen=True, slots=True)
class Process:
    """This process, as a worker row records it."""

    host: str
    pid: int

    @classmethod
    def current(cls) -> Process:
        return cls(socket.gethostname(), os.getpid())


class Holder(Enum):
    FREE = "free"
    LIVE = "live"
    UNSURE = "unsure"  # decided by its heartbeat


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return True


def holder(worker: lease_service.WorkerView | None, me: Process) -> Holder:
    """What the row alone says about its holder (see the module's docstring)."""
    if worker is None or not worker.alive or worker.state is WorkerState.STOPPED:
        return Holder.FREE
    if worker.host == me.host and worker.pid != me.pid and _pid_exists(worker.pid):
        return Holder.LIVE
    return Holder.UNSURE


def _describe(worker: lease_service.WorkerView) -> str:
    age = max(0.0, (utcnow() - worker.heartbeat_at).total_seconds())
    return f"host {worker.host}, pid {worker.pid}, heartbeat {age:.0f} s ago"


def default_ids(host: str) -> list[str]:
    """The ids a worker without one tries, in order: the host name, then ``<host>-2``..."""
    base = host[: ID_MAX_CHARS - 4] or "worker"
    return [base, *(f"{base}-{slot}" for slot in range(2, MAX_DEFAULT_SLOTS + 1))]


def _candidates(workers: Workers, requested: str | None, me: Process) -> list[str]:
    """The ids to decide about: the requested one, or the default ids up to the first one
    that is surely free."""
    if requested is not None:
        return [requested]
    wanted: list[str] = []
    for candidate in default_ids(me.host):
        wanted.append(candidate)
        if holder(workers.get(candidate), me) is Holder.FREE:
            break
    return wanted


async def _workers(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, lease_service.WorkerView]:
    async with unit_of_work(sessionmaker, read_only=True) as session:
        return {worker.id: worker for worker in await lease_service.list_workers(session)}


async def _renewing(
    sessionmaker: async_sessionmaker[AsyncSession],
    seen: Mapping[str, tuple[int, datetime]],
    within: float,
) -> set[str]:
    """Which of the ``seen`` rows (id -> epoch, heartbeat) renew or re-register within
    ``within`` seconds: their holders are live."""
    renewing: set[str] = set()
    deadline = time.monotonic() + within
    while len(renewing) < len(seen) and time.monotonic() < deadline:
        await asyncio.sleep(WATCH_STEP_SECONDS)
        now = await _workers(sessionmaker)
        for worker_id, (epoch, heartbeat_at) in seen.items():
            row = now.get(worker_id)
            if row is not None and (row.epoch, row.heartbeat_at) != (epoch, heartbeat_at):
                renewing.add(worker_id)
    return renewing


def _pick(
    workers: Workers, candidates: Collection[str], live: Collection[str], me: Process
) -> str | None:
    for candidate in candidates:
        state = holder(workers.get(candidate), me)
        if state is Holder.FREE or (state is Holder.UNSURE and candidate not in live):
            return candidate
    return None


async def claim(
    sessionmaker: async_sessionmaker[AsyncSession],
    requested: str | None,
    me: Process,
    *,
    ttl: float,
) -> str:
    """The id this worker registers under (call it under :func:`start_lock`):
    ``requested`` unless a live other worker holds it (then :class:`WorkerIdInUse`), or the
    first default id no live other worker holds. ``ttl`` is the workers' lease TTL; an
    unsure holder's heartbeat is watched for TTL/2 + 1 s."""
    workers = await _workers(sessionmaker)
    candidates = _candidates(workers, requested, me)
    unsure = {
        worker_id: (workers[worker_id].epoch, workers[worker_id].heartbeat_at)
        for worker_id in candidates
        if holder(workers.get(worker_id), me) is Holder.UNSURE
    }
    live = await _renewing(sessionmaker, unsure, ttl / 2 + 1) if unsure else set()
    chosen = _pick(workers, candidates, live, me)
    if chosen is not None:
        return chosen
    if requested is not None:
        msg = (
            f"worker id {requested!r} is held by a live worker "
            f"({_describe(workers[requested])}); give this one another --id (or "
            "TGFLEET_WORKER_ID), or leave both unset so each worker on a host picks its own"
        )
        raise WorkerIdInUse(msg)
    msg = f"{MAX_DEFAULT_SLOTS} live workers already run on {me.host}; give this one an --id"
    raise WorkerIdInUse(msg)


@contextlib.asynccontextmanager
async def start_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Held from choosing an id until the worker has registered it (PostgreSQL; on other
    databases there is one process and nothing to hold)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    connection = await engine.connect()
    try:
        await connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'"))
        await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": IDENTITY_LOCK})
        await connection.commit()
        yield
    finally:
        # Invalidate, not close: a pooled connection would keep the session-level lock.
        with contextlib.suppress(Exception):
            await connection.invalidate()
        with contextlib.suppress(Exception):
            await connection.close()
