"""The composition root (`tgfleet.process`): a role's parts stop in the reverse of the order
they started, and a part that fails to start stops the ones already started.

Observed, not mocked: the event loop records every task the parts create and the order the
tasks end in, and SQLAlchemy reports the engine's disposal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.conftest import make_settings
from tgfleet.audit.exceptions import AuditKeyError
from tgfleet.process import Role, running

#: The part each named background task belongs to (its name's prefix).
PART_OF_TASK = {
    "telemetry:loop-lag": "loop-lag monitor",
    "health:network-monitor": "network monitor",
    "alert:": "alerting",
    "audit-checkpoints": "audit checkpoints",
    "account:housekeeping": "housekeeping",
    "account:live": "console live feed",
    "worker:": "account runtime",
}
#: A loopback port nothing listens on: the network monitor probes it and fails at once.
CLOSED_DC = "2=127.0.0.1:9"


class PartLog:
    """The loop's task factory while installed: which part started each task, in order,
    and the order the parts' tasks ended in (with ``engine`` when the engine is disposed)."""

    def __init__(self) -> None:
        self.created: list[asyncio.Task[Any]] = []
        self.ended: list[str] = []

    def factory(
        self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        self.created.append(task)
        task.add_done_callback(lambda done: self.ended.append(done.get_name()))
        return task

    def disposed(self, _engine: Engine) -> None:
        self.ended.append("engine")

    @staticmethod
    def parts(names: list[str]) -> list[str]:
        """The parts ``names`` belong to, each run of one part collapsed to one entry (a
        part whose tasks interleave with another's shows up twice)."""
        order: list[str] = []
        for name in names:
            part = "engine" if name == "engine" else _part(name)
            if part is not None and (not order or order[-1] != part):
                order.append(part)
        return order

    def started(self) -> list[str]:
        """The parts in the order their first task started (a part may start more later)."""
        order: list[str] = []
        for task in self.created:
            part = _part(task.get_name())
            if part is not None and part not in order:
                order.append(part)
        return order

    def stopped(self) -> list[str]:
        return self.parts(self.ended)


def _part(task_name: str) -> str | None:
    for prefix, part in PART_OF_TASK.items():
        if task_name.startswith(prefix):
            return part
    return None


@pytest.fixture
async def part_log() -> AsyncIterator[PartLog]:
    loop = asyncio.get_running_loop()
    log = PartLog()
    previous = loop.get_task_factory()
    loop.set_task_factory(log.factory)  # type: ignore[arg-type] # typeshed: no context kwarg
    event.listen(Engine, "engine_disposed", log.disposed)
    try:
        yield log
    finally:
        event.remove(Engine, "engine_disposed", log.disposed)
        loop.set_task_factory(previous)


class TestShutdownOrder:
    async def test_run_stops_its_parts_in_the_reverse_order_they_started(
        self, db_url: str, tmp_path: Path, part_log: PartLog
    ) -> None:
        """``run`` (API and account runtime in one process): the account runtime stops
        first (its clients disconnect while everything else is up), then the console's live
        feed, the housekeeping, audit checkpoints, alerting, the network and loop-lag
        monitors, and the engine
        last."""
        settings = make_settings(
            db_url,
            tmp_path / "data",
            alerting_enabled=True,
            audit_checkpoints_enabled=True,
            telegram_dcs=CLOSED_DC,
        )
        async with running(settings, Role.RUN) as process:
            assert process.supervisor is not None
            assert process.components.alerting is not None
            started = part_log.started()
        assert started == [
            "loop-lag monitor",
            "network monitor",
            "alerting",
            "audit checkpoints",
            "housekeeping",
            "console live feed",
            "account runtime",
        ]
        assert part_log.stopped() == [*reversed(started), "engine"]
        assert all(task.done() for task in part_log.created if _part(task.get_name()))

    async def test_a_part_that_fails_to_start_stops_those_already_started(
        self, db_url: str, tmp_path: Path, part_log: PartLog
    ) -> None:
        """An unusable audit key file (open to others) fails the audit checkpoints' start:
        alerting, the network and loop-lag monitors, which had started, are stopped in
        reverse order and the engine disposed; the account runtime never starts."""
        key_file = tmp_path / "audit.key"
        key_file.write_text("{}", encoding="utf-8")
        key_file.chmod(0o644)
        settings = make_settings(
            db_url,
            tmp_path / "data",
            alerting_enabled=True,
            telegram_dcs=CLOSED_DC,
            audit_key=None,
            audit_key_file=key_file,
        )
        with pytest.raises(AuditKeyError, match="chmod 600"):
            async with running(settings, Role.RUN):
                pytest.fail("the process started with an unusable audit key")
        assert part_log.started() == ["loop-lag monitor", "network monitor", "alerting"]
        assert part_log.stopped() == ["alerting", "network monitor", "loop-lag monitor", "engine"]
        assert all(task.done() for task in part_log.created if _part(task.get_name()))
