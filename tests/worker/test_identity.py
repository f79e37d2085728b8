"""Which id a worker takes (PostgreSQL, where workers register): an id a live other worker
holds is refused, an earlier run's is taken over, and without one each worker on a host
gets its own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.fleet import service as fleet_service
from tgfleet.kit.db import unit_of_work
from tgfleet.worker import identity
from tgfleet.worker.identity import Process, WorkerIdInUse

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

ME = Process(host="host-a", pid=os.getpid())


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


async def _register(
    sessionmaker: async_sessionmaker[AsyncSession], worker_id: str, host: str, pid: int
) -> fleet_service.Registration:
    async with unit_of_work(sessionmaker) as session:
        return await fleet_service.register(
            session, worker_id=worker_id, host=host, pid=pid, version="t", capacity=10, ttl=60
        )


async def _choose(sessionmaker: async_sessionmaker[AsyncSession], requested: str | None) -> str:
    return await identity.claim(sessionmaker, requested, ME)


class TestChoose:
    async def test_an_id_a_live_worker_elsewhere_holds_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A fresh heartbeat from another host: the id is refused with who holds it."""
        await _register(sessionmaker, "w1", "host-b", 1234)
        with pytest.raises(WorkerIdInUse, match=r"'w1' is held by a live worker \(host host-b"):
            await _choose(sessionmaker, "w1")

    async def test_an_id_a_live_process_on_this_host_holds_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Same host, another pid that exists (our parent): refused."""
        await _register(sessionmaker, "w1", ME.host, os.getppid())
        with pytest.raises(WorkerIdInUse):
            await _choose(sessionmaker, "w1")

    async def test_an_earlier_run_of_this_worker_is_taken_over(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Same host and a pid that no longer exists (a crash), or our own pid (a container
        restarted in place), or a stopped row: the id is this worker's to take."""
        await _register(sessionmaker, "crashed", ME.host, _dead_pid())
        await _register(sessionmaker, "restarted", ME.host, ME.pid)
        stopped = await _register(sessionmaker, "stopped", "host-b", 1234)
        async with unit_of_work(sessionmaker) as session:
            await fleet_service.deregister(session, stopped)
        for worker_id in ("crashed", "restarted", "stopped"):
            assert await _choose(sessionmaker, worker_id) == worker_id

    async def test_default_ids_skip_the_ones_live_workers_hold(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """No id asked for: the host name, else ``<host>-2``, ``<host>-3``; a slot whose
        worker died is reused (each worker keeps its id across restarts)."""
        assert await _choose(sessionmaker, None) == "host-a"
        await _register(sessionmaker, "host-a", ME.host, os.getppid())
        assert await _choose(sessionmaker, None) == "host-a-2"
        await _register(sessionmaker, "host-a-2", ME.host, os.getppid())
        await _register(sessionmaker, "host-a-3", ME.host, _dead_pid())
        assert await _choose(sessionmaker, None) == "host-a-3"
