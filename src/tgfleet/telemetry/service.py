"""What /metrics needs besides the counters the code increments as it works.

* :class:`FleetGauges`: fleet-wide values (accounts by state and by desired state, the online
  ratio, live workers and their capacity) read from the database at scrape time, at most once
  per ``TGFLEET_METRICS_FLEET_REFRESH_SECONDS`` and by one caller at a time; a failed read
  keeps the previous values (the scrape still answers; ``tgfleet_db_errors_total`` counts it).
* :class:`LoopLagMonitor`: how late the event loop runs a one-second timer, the first sign of
  a process that is overloaded or blocked by synchronous work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import metrics
from tgfleet.account import service as account_service
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.lifecycle import TaskLifecycle
from tgfleet.lease import service as lease_service
from tgfleet.logging import get_logger

log = get_logger(__name__)

#: Seconds a fleet read may take before the scrape goes on with the previous values.
REFRESH_TIMEOUT: Final = 2.0
LAG_INTERVAL: Final = 1.0


class FleetGauges:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        refresh_seconds: float,
        capacity: int,
        runtime_running: Callable[[], bool] = lambda: False,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._refresh_seconds = refresh_seconds
        self._capacity = capacity
        self._runtime_running = runtime_running
        self._lock = asyncio.Lock()
        self._refreshed_at: float | None = None
        self.failures = 0

    async def refresh(self) -> None:
        """Read the fleet from the database unless a read younger than the refresh interval
        exists; concurrent scrapes wait for one read."""
        if self._fresh():
            return
        async with self._lock:
            if self._fresh():
                return
            started = time.perf_counter()
            try:
                async with (
                    asyncio.timeout(REFRESH_TIMEOUT),
                    unit_of_work(self._sessionmaker, read_only=True) as session,
                ):
                    summary = await account_service.fleet_summary(session)
                    workers = await lease_service.list_workers(session)
                    leased = lease_service.supports_leases(session)
            except Exception as exc:  # noqa: BLE001 - the scrape answers with the last values
                self.failures += 1
                log.warning("metrics.fleet_refresh_failed", error=type(exc).__name__)
                self._refreshed_at = time.monotonic()  # retried after the interval, not at once
                return
            metrics.FLEET_REFRESH_DURATION.observe(time.perf_counter() - started)
            for state, count in summary.states.items():
                metrics.ACCOUNTS.labels(state).set(count)
            for desired, count in summary.desired.items():
                metrics.ACCOUNTS_DESIRED.labels(desired).set(count)
            metrics.FLEET_ONLINE_RATIO.set(summary.online_ratio)
            if leased:
                alive = [w for w in workers if w.alive]
                metrics.WORKERS_ALIVE.set(len(alive))
                metrics.WORKERS_CAPACITY.set(sum(w.capacity for w in alive))
            else:  # SQLite: the one process runs the accounts, or nobody does
                running = self._runtime_running()
                metrics.WORKERS_ALIVE.set(1 if running else 0)
                metrics.WORKERS_CAPACITY.set(self._capacity if running else 0)
            self._refreshed_at = time.monotonic()

    def _fresh(self) -> bool:
        return (
            self._refreshed_at is not None
            and time.monotonic() - self._refreshed_at < self._refresh_seconds
        )


class LoopLagMonitor(TaskLifecycle):
    """Samples the event loop's lag every second into ``tgfleet_event_loop_lag_seconds``."""

    task_name = "telemetry:loop-lag"

    def __init__(self, interval: float = LAG_INTERVAL) -> None:
        self._interval = interval

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self._interval)
            metrics.EVENT_LOOP_LAG.observe(max(0.0, time.perf_counter() - started - self._interval))
