"""Which id a ``tgfleet worker`` takes, and the refusal of an id a live worker holds.

A worker's id names its row in ``worker`` and its leases. Two live processes under one id
fence each other's leases off in turn (each registration bumps the epoch) and the later one
marks the earlier one's accounts stopped at start: so an id a live worker holds is refused.

"Live and not us": the row's lease has not expired, it is not stopped, and it is not an
earlier run of this process — same host and either the same pid (a container restarted in
place is pid 1 again) or a pid that no longer exists (a crash, a systemd restart). On another
host a fresh heartbeat is all there is to go by.

Without ``--id`` or ``TGFLEET_WORKER_ID`` the id is the host name, or ``<host>-2``,
``<host>-3``, ... when a live worker on this host already holds it: several workers on one
host just work, and each keeps its id across restarts (the first free one is its own). The
choice and the registration that follows happen under a PostgreSQL advisory lock, so workers
started together cannot pick the same id.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tgfleet.exceptions import ConfigError
from tgfleet.fleet import service as fleet_service
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work

#: The advisory lock between workers choosing an id and registering it (any constant).
IDENTITY_LOCK = 0x7467_666C_6964_01
#: How long a starting worker waits for another one's choice and registration.
LOCK_TIMEOUT_SECONDS = 30
#: Most workers one host runs under its default ids (``<host>`` .. ``<host>-64``).
MAX_DEFAULT_SLOTS = 64
ID_MAX_CHARS = 128  # the worker table's id column


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


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    return True


def _held_by_other(worker: fleet_service.WorkerView, me: Process) -> bool:
    if not worker.alive or worker.state == "stopped":
        return False
    if worker.host != me.host:
        return True
    return worker.pid != me.pid and _pid_exists(worker.pid)


def _describe(worker: fleet_service.WorkerView) -> str:
    age = max(0.0, (utcnow() - worker.heartbeat_at).total_seconds())
    return f"host {worker.host}, pid {worker.pid}, heartbeat {age:.0f} s ago"


def default_ids(host: str) -> list[str]:
    """The ids a worker without one tries, in order: the host name, then ``<host>-2``..."""
    base = host[: ID_MAX_CHARS - 4] or "worker"
    return [base, *(f"{base}-{slot}" for slot in range(2, MAX_DEFAULT_SLOTS + 1))]


async def choose(session: AsyncSession, requested: str | None, me: Process) -> str:
    """The id this worker registers under: ``requested`` unless a live other worker holds
    it (then :class:`WorkerIdInUse`), or the first default id no live other worker holds."""
    workers = {worker.id: worker for worker in await fleet_service.list_workers(session)}
    if requested is not None:
        holder = workers.get(requested)
        if holder is not None and _held_by_other(holder, me):
            msg = (
                f"worker id {requested!r} is held by a live worker ({_describe(holder)}); "
                "give this one another --id (or TGFLEET_WORKER_ID), or leave both unset "
                "so each worker on a host picks its own"
            )
            raise WorkerIdInUse(msg)
        return requested
    for candidate in default_ids(me.host):
        holder = workers.get(candidate)
        if holder is None or not _held_by_other(holder, me):
            return candidate
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


async def claim(
    sessionmaker: async_sessionmaker[AsyncSession], requested: str | None, me: Process
) -> str:
    """:func:`choose` in a read-only unit of work (call it under :func:`start_lock`)."""
    async with unit_of_work(sessionmaker, read_only=True) as session:
        return await choose(session, requested, me)
