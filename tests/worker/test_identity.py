"""Which id a worker takes (PostgreSQL, where workers register): an id a live other worker
holds is refused, an earlier run's is taken over, and without one each worker on a host
gets its own. Liveness is what the row shows, and else whether its heartbeat moves."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.kit.db import unit_of_work
from tgfleet.lease import service as lease_service
from tgfleet.worker import identity
from tgfleet.worker.identity import Process, WorkerIdInUse

pytestmark = [
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
    pytest.mark.timeout(60),
]

ME = Process(host="host-a", pid=os.getpid())
#: The lease TTL the tests claim with: an unsure heartbeat is watched TTL/2 + 1 = 2 s.
TTL = 2.0


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


async def _register(
    sessionmaker: async_sessionmaker[AsyncSession], worker_id: str, host: str, pid: int
) -> lease_service.Registration:
    async with unit_of_work(sessionmaker) as session:
        return await lease_service.register(
            session, worker_id=worker_id, host=host, pid=pid, version="t", capacity=10, ttl=60
        )


@contextlib.asynccontextmanager
async def _live(
    sessionmaker: async_sessionmaker[AsyncSession], worker_id: str, host: str, pid: int
) -> AsyncIterator[None]:
    """A worker that registers and renews its heartbeat (every 0.3 s) meanwhile."""
    registration = await _register(sessionmaker, worker_id, host, pid)

    async def renew() -> None:
        while True:
            await asyncio.sleep(0.3)
            async with unit_of_work(sessionmaker) as session:
                await lease_service.heartbeat(session, registration, 60)

    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _claim(sessionmaker: async_sessionmaker[AsyncSession], requested: str | None) -> str:
    return await identity.claim(sessionmaker, requested, ME, ttl=TTL)


class TestClaim:
    async def test_an_id_a_live_worker_elsewhere_holds_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Another host's worker whose heartbeat moves: the id is refused, naming it."""
        async with _live(sessionmaker, "w1", "host-b", 1234):
            with pytest.raises(WorkerIdInUse, match=r"'w1' is held by a live worker \(host host-b"):
                await _claim(sessionmaker, "w1")

    async def test_a_sibling_with_our_pid_and_host_name_is_live_if_it_renews(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Same host name and our own pid (containers sharing the host name, each its own
        pid 1): not taken for an earlier run of ours while its heartbeat moves."""
        async with _live(sessionmaker, "w1", ME.host, ME.pid):
            with pytest.raises(WorkerIdInUse):
                await _claim(sessionmaker, "w1")
            assert await _claim(sessionmaker, None) == "host-a"

    async def test_a_live_process_on_this_host_is_refused_at_once(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Same host, another pid that exists (our parent): refused without watching."""
        await _register(sessionmaker, "w1", ME.host, os.getppid())
        started = time.monotonic()
        with pytest.raises(WorkerIdInUse):
            await _claim(sessionmaker, "w1")
        assert time.monotonic() - started < TTL / 2

    async def test_a_worker_that_stopped_renewing_is_taken_over(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A fresh row whose heartbeat does not move (a crash on this host, a container
        restarted in place, a dead worker elsewhere) is free after TTL/2 + 1 s; a stopped
        row is free at once."""
        await _register(sessionmaker, "crashed", ME.host, _dead_pid())
        await _register(sessionmaker, "restarted", ME.host, ME.pid)
        await _register(sessionmaker, "elsewhere", "host-b", 1234)
        stopped = await _register(sessionmaker, "stopped", "host-b", 1234)
        async with unit_of_work(sessionmaker) as session:
            await lease_service.deregister(session, stopped)
        for worker_id in ("crashed", "restarted", "elsewhere", "stopped"):
            assert await _claim(sessionmaker, worker_id) == worker_id

    async def test_default_ids_skip_the_ones_live_workers_hold(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """No id asked for: the host name, else ``<host>-2``, ``<host>-3``; a slot whose
        worker died is reused (each worker gets its id back after a restart)."""
        assert await _claim(sessionmaker, None) == "host-a"
        await _register(sessionmaker, "host-a", ME.host, os.getppid())
        assert await _claim(sessionmaker, None) == "host-a-2"
        await _register(sessionmaker, "host-a-2", ME.host, os.getppid())
        await _register(sessionmaker, "host-a-3", ME.host, _dead_pid())
        assert await _claim(sessionmaker, None) == "host-a-3"
