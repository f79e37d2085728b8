"""Checks of the fleet: workers alive, accounts online, and a worker's own lease."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tgfleet.account import service as account_service
from tgfleet.config import Settings
from tgfleet.health.checks.result import COMPONENT, result
from tgfleet.health.schemas import CheckResult, Status
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.lease import service as lease_service

#: A worker that stopped renewing its lease without draining (killed, frozen, cut off)
#: makes ``workers:alive`` warn for this long after its lease expired; its row stays in the
#: worker table for a day, which would keep the warning long after anyone can act on it.
DEAD_WORKER_WINDOW_SECONDS: Final = 3600.0
#: Worker ids named in a ``workers:alive`` output, at most.
NAMED_WORKERS: Final = 5


async def workers_alive(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    supervisor_running: Callable[[], bool] | None,
) -> list[CheckResult]:
    """PostgreSQL: the worker table's live workers, against the accounts desired running.
    SQLite: whether this process runs the accounts (``supervisor_running``)."""
    if engine.dialect.name != "postgresql":
        return [_runtime_in_process(supervisor_running)]
    async with unit_of_work(sessionmaker, read_only=True) as session:
        workers = await lease_service.list_workers(session)
        summary = await account_service.fleet_summary(session)
    now = utcnow()
    alive = [w for w in workers if w.alive]
    dead = [
        w.id
        for w in workers
        if w.lost and (now - w.expires_at).total_seconds() < DEAD_WORKER_WINDOW_SECONDS
    ]
    running = summary.desired_running
    if not alive:
        status = Status.FAIL if running else Status.WARN
        output = (
            f"no worker is alive and {running} accounts are desired running"
            if running
            else "no worker is alive (no account is desired running)"
        )
    elif dead:
        status = Status.WARN
        named = ", ".join(dead[:NAMED_WORKERS]) + (", ..." if len(dead) > NAMED_WORKERS else "")
        output = (
            f"{len(dead)} registered workers stopped renewing their lease without "
            f"draining in the last hour: {named}"
        )
    else:
        status, output = Status.PASS, None
    return [result(COMPONENT, status, len(alive), "workers", output=output)]


def _runtime_in_process(supervisor_running: Callable[[], bool] | None) -> CheckResult:
    """SQLite: the one ``tgfleet run`` process is the only worker there is."""
    if supervisor_running is None:
        return result(
            COMPONENT,
            Status.WARN,
            0,
            "workers",
            output="no account runtime in this process (on SQLite `tgfleet run` runs the "
            "accounts; this process serves the API only)",
        )
    if supervisor_running():
        return result(COMPONENT, Status.PASS, 1, "workers")
    return result(
        COMPONENT,
        Status.FAIL,
        0,
        "workers",
        output="the account runtime of this process is not running",
    )


async def online_ratio(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> list[CheckResult]:
    """The share of accounts desired running that are online, against
    ``health_online_warn_ratio`` and ``health_online_fail_ratio``."""
    async with unit_of_work(sessionmaker, read_only=True) as session:
        summary = await account_service.fleet_summary(session)
    running = summary.desired_running
    if not running:
        return [
            result(
                COMPONENT,
                Status.PASS,
                1.0,
                "ratio",
                output="no account is desired running",
            )
        ]
    ratio = summary.running_online / running
    warn_below = settings.health_online_warn_ratio
    fail_below = settings.health_online_fail_ratio
    if ratio < fail_below:
        status = Status.FAIL
    elif ratio < warn_below:
        status = Status.WARN
    else:
        status = Status.PASS
    output = (
        f"{summary.running_online} of {running} accounts desired running are online "
        f"(warn below {warn_below:g}, fail below {fail_below:g})"
    )
    return [
        result(
            COMPONENT,
            status,
            round(ratio, 4),
            "ratio",
            output=None if status is Status.PASS else output,
        )
    ]


async def lease_fresh(lease_ready: Callable[[], bool] | None) -> list[CheckResult]:
    """Readiness of a worker: its lease loop says its lease is fresh."""
    fresh = lease_ready is not None and lease_ready()
    return [
        result(
            COMPONENT,
            Status.PASS if fresh else Status.FAIL,
            fresh,
            None,
            output=None
            if fresh
            else "the worker's lease is not fresh (not renewed for half its TTL, or fenced)",
        )
    ]
