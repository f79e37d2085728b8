from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.clock import utcnow
from tgfleet.kit.model import Model, StrEnumColumn, TZDateTime


class WorkerState(StrEnum):
    """A registered worker runs until it drains (``stopped``: it gave its leases back)."""

    RUNNING = "running"
    STOPPED = "stopped"


class Worker(Model):
    """A registered worker process and its worker-level lease (DESIGN §8).

    Every account a worker holds hangs off this row: an ``account_lease`` is valid while its
    ``epoch`` equals the worker's and the worker's ``expires_at`` lies ahead, so one
    heartbeat per TTL/3 renews all of a worker's accounts at once. ``epoch`` is new at every
    registration (a restarted worker fences off what its previous run held).
    """

    __tablename__ = "worker"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(32))
    capacity: Mapped[int] = mapped_column(Integer)
    state: Mapped[WorkerState] = mapped_column(
        StrEnumColumn(WorkerState, 16), default=WorkerState.RUNNING
    )
    started_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(TZDateTime, index=True)
