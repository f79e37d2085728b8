"""What each console page shows, built from the domains' services (never their
repositories): plain data the templates lay out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account import activity
from tgfleet.account import service as account_service
from tgfleet.account.schemas import AccountFilter
from tgfleet.alert import service as alert_service
from tgfleet.alert.schemas import Alert
from tgfleet.console.i18n import N_
from tgfleet.kit.clock import utcnow
from tgfleet.lease import service as lease_service

#: The order states are listed in: running and healthy first, then trouble, then idle.
STATE_ORDER: tuple[str, ...] = (
    "online",
    "starting",
    "reconnecting",
    "flood_wait",
    "unassigned",
    "quarantined",
    "error",
    "stopping",
    "stopped",
)
LATEST_EVENTS = 15


@dataclass(frozen=True, slots=True)
class StateCount:
    state: str
    count: int


@dataclass(frozen=True, slots=True)
class WorkerRow:
    id: str
    holds: int
    by_state: dict[str, int]
    alive: bool | None = None  # None: no lease record (SQLite: the one process)
    capacity: int | None = None
    host: str | None = None
    heartbeat_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    at: datetime
    account_id: uuid.UUID
    label: str
    kind: str
    state: str | None
    previous_state: str | None
    code: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class Overview:
    total: int
    states: list[StateCount]
    desired_running: int
    online_running: int
    online_ratio: float
    workers: list[WorkerRow]
    unassigned: int
    alerts: list[Alert]
    traffic: list[activity.TrafficPoint]
    events: list[EventRow] = field(default_factory=list)
    #: Every firing alert, of which ``alerts`` lists the first `OVERVIEW_ALERTS`.
    alerts_total: int = 0


def ordered_states(counts: dict[str, int]) -> list[StateCount]:
    known = [StateCount(state, counts.get(state, 0)) for state in STATE_ORDER]
    extra = [
        StateCount(state, n) for state, n in sorted(counts.items()) if state not in STATE_ORDER
    ]
    return known + extra


@dataclass(frozen=True, slots=True)
class Workers:
    rows: list[WorkerRow]
    unassigned: int


async def workers(session: AsyncSession) -> Workers:
    """Every worker reporting accounts or holding a lease, with what it runs."""
    per_worker = await account_service.accounts_per_worker(session)
    leases = {worker.id: worker for worker in await lease_service.list_workers(session)}
    rows = []
    for worker_id in sorted(set(per_worker) | set(leases)):
        by_state = per_worker.get(worker_id, {})
        lease = leases.get(worker_id)
        rows.append(
            WorkerRow(
                id=worker_id,
                holds=lease.held if lease is not None else sum(by_state.values()),
                by_state=by_state,
                alive=lease.alive if lease is not None else None,
                capacity=lease.capacity if lease is not None else None,
                host=lease.host if lease is not None else None,
                heartbeat_at=lease.heartbeat_at if lease is not None else None,
            )
        )
    return Workers(rows=rows, unassigned=await lease_service.unassigned(session))


#: The overview lists this many firing alerts (by severity, then name) and counts the rest: a
#: mass quarantine fires one per account (1,000 of them took 250 KB and half the page's time).
OVERVIEW_ALERTS = 20


async def overview(session: AsyncSession) -> Overview:
    summary = await account_service.fleet_summary(session)
    fleet_workers = await workers(session)
    alerts, alerts_total = await firing_alerts(session)
    return fleet_overview(
        summary,
        fleet_workers,
        alerts=alerts,
        alerts_total=alerts_total,
        traffic=await activity.traffic(session),
        events=await latest_events(session),
    )


async def firing_alerts(session: AsyncSession) -> tuple[list[Alert], int]:
    """The first `OVERVIEW_ALERTS` alerts firing now, critical ones first, then by name;
    and how many fire."""
    return await alert_service.first_firing(session, utcnow(), OVERVIEW_ALERTS)


def fleet_overview(
    summary: account_service.FleetSummary,
    fleet_workers: Workers,
    *,
    alerts: list[Alert],
    traffic: list[activity.TrafficPoint],
    events: list[EventRow],
    alerts_total: int = 0,
) -> Overview:
    return Overview(
        total=sum(summary.states.values()),
        states=ordered_states(summary.states),
        desired_running=summary.desired_running,
        online_running=summary.running_online,
        online_ratio=summary.online_ratio,
        workers=fleet_workers.rows,
        unassigned=fleet_workers.unassigned,
        alerts=alerts,
        traffic=traffic,
        events=events,
        alerts_total=alerts_total,
    )


async def latest_events(session: AsyncSession, limit: int = LATEST_EVENTS) -> list[EventRow]:
    return [
        EventRow(
            id=event.id,
            at=event.at,
            account_id=event.account_id,
            label=label,
            kind=event.kind,
            state=event.state,
            previous_state=event.previous_state,
            code=event.code,
            message=event.message,
        )
        for event, label in await account_service.latest_events(session, limit)
    ]


# --- accounts -----------------------------------------------------------------------------

#: The sort orders the accounts table offers (``AccountSort``'s values).
SORTS: dict[str, str] = {
    "label": N_("Label (A to Z)"),
    "-label": N_("Label (Z to A)"),
    "state": N_("State"),
    "-since": N_("Changed most recently"),
    "since": N_("Changed longest ago"),
    "worker": N_("Worker"),
    "-created": N_("Newest first"),
}
PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class AccountFilters:
    """The accounts table's filters, as the URL carries them (a view can be bookmarked)."""

    states: tuple[str, ...] = ()
    label: str = ""
    q: str = ""
    workers: tuple[str, ...] = ()
    groups: tuple[int, ...] = ()
    sort: str = "label"

    @property
    def active(self) -> bool:
        return bool(self.states or self.label or self.q or self.workers or self.groups)

    def query(self, **changes: object) -> str:
        """The URL query of these filters (with ``changes``), for links and paging."""
        values = {
            "state": list(self.states),
            "label": self.label,
            "q": self.q,
            "worker": list(self.workers),
            "group": [str(group) for group in self.groups],
            "sort": self.sort if self.sort != "label" else "",
        } | changes
        pairs = [
            (name, item)
            for name, value in values.items()
            for item in (value if isinstance(value, list) else [value])
            if item not in ("", None)
        ]
        return urlencode(pairs)

    def bulk_filter(self) -> AccountFilter:
        """What "all matching" covers: this filter, or the whole fleet when it is empty."""
        return self.to_filter() if self.active else AccountFilter(everything=True)

    def to_filter(self) -> AccountFilter:
        return AccountFilter(
            states=self.states,
            label=self.label or None,
            q=self.q or None,
            workers=self.workers,
            groups=self.groups,
        )


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: uuid.UUID
    label: str
    username: str | None
    desired: str
    state: str
    reason: str | None
    since: datetime | None
    worker: str | None
    last_error_code: str | None


@dataclass(frozen=True, slots=True)
class AccountsPage:
    filters: AccountFilters
    rows: list[AccountRow]
    counts: list[StateCount]
    next_cursor: str | None
    cursor: str | None
    workers: list[str]
    sorts: dict[str, str] = field(default_factory=lambda: SORTS)


def account_row(account: Any, status: Any | None, holder: str | None = None) -> AccountRow:
    return AccountRow(
        id=account.id,
        label=account.label,
        username=account.username,
        desired=str(account.desired_state),
        state=str(status.state) if status is not None else "stopped",
        reason=status.reason if status is not None else None,
        since=status.since if status is not None else None,
        worker=holder or (status.worker_id if status is not None else None),
        last_error_code=status.last_error_code if status is not None else None,
    )


async def accounts(
    session: AsyncSession, filters: AccountFilters, cursor: str | None
) -> AccountsPage:
    listing = await account_service.list_accounts(
        session,
        cursor=cursor,
        limit=PAGE_SIZE,
        q=filters.q or None,
        label=filters.label or None,
        states=filters.states,
        workers=filters.workers,
        groups=filters.groups,
        sort=filters.sort,
        with_counts=True,
    )
    ids = [account.id for account in listing.items]
    holders = await lease_service.holders(session, ids)
    workers = sorted(await account_service.accounts_per_worker(session))
    return AccountsPage(
        filters=filters,
        rows=[
            account_row(account, listing.statuses.get(account.id), holders.get(account.id))
            for account in listing.items
        ],
        counts=ordered_states(listing.counts or {}),
        next_cursor=listing.next_cursor,
        cursor=cursor,
        workers=workers,
    )


PREVIEW_SAMPLE = 20


@dataclass(frozen=True, slots=True)
class BulkPreview:
    count: int
    sample: list[AccountRow]


async def bulk_preview(
    session: AsyncSession, *, ids: list[uuid.UUID] | None, filters: AccountFilters
) -> BulkPreview:
    """What a bulk action would touch: the selected ``ids``, or every account ``filters``
    match (the whole fleet for an empty filter), checked as the action itself checks."""
    found = await account_service.preview_selection(
        session,
        ids=ids,
        wanted=None if ids is not None else filters.bulk_filter(),
        sample=PREVIEW_SAMPLE,
    )
    return BulkPreview(
        count=found.count,
        sample=[
            AccountRow(
                id=account_id,
                label=label,
                username=None,
                desired="",
                state=str(state),
                reason=None,
                since=None,
                worker=None,
                last_error_code=None,
            )
            for account_id, label, state in found.sample
        ],
    )
