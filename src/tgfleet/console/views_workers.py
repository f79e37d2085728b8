"""What the workers and health pages show: every registered worker with its epoch,
capacity, accounts held, heartbeat age and whether it is alive or fenced, the accounts no
worker holds (the lease service, as ``GET /api/v1/workers`` reads it); and the process's
health document check by check (``GET /health``), with how long each check took."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account import service as account_service
from tgfleet.console.domain_texts import health_text, health_unit
from tgfleet.health.service import HealthService
from tgfleet.kit.clock import utcnow
from tgfleet.lease import service as lease_service


@dataclass(frozen=True, slots=True)
class WorkerLine:
    """A worker as the lease service reads it, and what the page adds."""

    worker: lease_service.WorkerView
    #: "alive", "fenced" (its lease expired while running: its accounts went to others and
    #: its epoch no longer writes) or "stopped" (drained: it gave its leases back).
    status: str
    heartbeat_age: float
    by_state: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkersPage:
    #: Leases are PostgreSQL's: on SQLite ``tgfleet run`` is the one process.
    leases: bool
    workers: list[WorkerLine]
    unassigned: int
    at: datetime


def _status(worker: lease_service.WorkerView) -> str:
    if worker.lost:
        return "fenced"
    return "alive" if worker.alive and worker.state == "running" else "stopped"


async def workers_page(session: AsyncSession) -> WorkersPage:
    now = utcnow()
    per_worker = await account_service.accounts_per_worker(session)
    workers = [
        WorkerLine(
            worker=worker,
            status=_status(worker),
            heartbeat_age=max(0.0, (now - worker.heartbeat_at).total_seconds()),
            by_state=per_worker.get(worker.id, {}),
        )
        for worker in await lease_service.list_workers(session)
    ]
    return WorkersPage(
        leases=lease_service.supports_leases(session),
        workers=workers,
        unassigned=await lease_service.unassigned(session),
        at=now,
    )


@dataclass(frozen=True, slots=True)
class CheckLine:
    """One measurement of one check (a check may measure several components: DCs)."""

    name: str
    component_id: str | None
    component_type: str | None
    status: str
    observed_value: Any
    observed_unit: str | None
    output: str | None
    time: str | None
    #: How long the whole check took (seconds), None when unknown.
    seconds: float | None


@dataclass(frozen=True, slots=True)
class HealthPage:
    status: str
    version: str
    description: str
    checks: list[CheckLine]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


async def health_page(health: HealthService) -> HealthPage:
    """The document ``GET /health`` answers (the same cache), laid out check by check."""
    document, seconds = await health.health_timed()
    checks = [
        CheckLine(
            name=name,
            component_id=_text(entry.get("componentId")),
            component_type=_text(entry.get("componentType")),
            status=str(entry.get("status")),
            observed_value=entry.get("observedValue"),
            observed_unit=health_unit(_text(entry.get("observedUnit"))),
            output=health_text(_text(entry.get("output"))),
            time=_text(entry.get("time")),
            seconds=seconds.get(name),
        )
        for name, entries in document["checks"].items()
        for entry in entries
    ]
    return HealthPage(
        status=str(document["status"]),
        version=str(document.get("version", "")),
        description=health_text(str(document.get("description", ""))) or "",
        checks=checks,
    )
