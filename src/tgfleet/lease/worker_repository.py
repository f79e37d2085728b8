"""Registered workers (PostgreSQL): registration with a new fencing epoch, the
worker-level lease's heartbeat, the drain, and the table read back."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tgfleet.kit.repository import RepositoryBase
from tgfleet.lease.statements import (
    CURRENT_EPOCH,
    DEREGISTER,
    HEARTBEAT,
    PRUNE_WORKERS,
    REGISTER,
    WORKER_CLOCK,
    WORKERS,
)
from tgfleet.models import Worker


class WorkerRepository(RepositoryBase[Worker]):
    """The ``worker`` table."""

    model = Worker

    async def _one(self, statement: Any, **params: Any) -> Any:
        return (await self.session.execute(statement, params)).one_or_none()

    async def register(
        self, *, worker_id: str, host: str, pid: int, version: str, capacity: int, ttl: float
    ) -> tuple[int, datetime]:
        parameters = {"host": host, "pid": pid, "version": version, "capacity": capacity}
        row = await self._one(REGISTER, id=worker_id, ttl=ttl, **parameters)
        return int(row[0]), row[1]

    async def current_epoch(self, worker_id: str) -> int | None:
        row = await self._one(CURRENT_EPOCH, id=worker_id)
        return None if row is None else int(row[0])

    async def heartbeat(self, worker_id: str, epoch: int, ttl: float) -> datetime | None:
        row = await self._one(HEARTBEAT, id=worker_id, epoch=epoch, ttl=ttl)
        return None if row is None else row[0]

    async def deregister(self, worker_id: str, epoch: int) -> None:
        await self.session.execute(DEREGISTER, {"id": worker_id, "epoch": epoch})

    async def worker_clock(self) -> list[tuple[str, int, bool, float, float]]:
        result = await self.session.execute(WORKER_CLOCK)
        return [
            (row[0], int(row[1]), bool(row[2]), float(row[3]), float(row[4]))
            for row in result.all()
        ]

    async def workers(self) -> list[Any]:
        return list((await self.session.execute(WORKERS)).all())

    async def prune(self) -> None:
        """Forget workers gone for a day that hold no lease row."""
        await self.session.execute(PRUNE_WORKERS)
