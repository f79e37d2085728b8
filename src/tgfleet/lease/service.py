"""Worker registration and account leases (DESIGN §8), on PostgreSQL.

A worker registers (a new fencing ``epoch`` each time), renews its one worker-level lease
every TTL/3 (``heartbeat``: one statement however many accounts it holds), and claims
accounts with ``SELECT … FOR UPDATE SKIP LOCKED`` up to its fair share and capacity. An
account lease is valid while its worker's lease is, for that epoch; a lease whose worker
expired is taken by another only ``grace`` seconds later, by when the old holder has fenced
itself (it stops its clients when it could not renew for TTL/2). All times are the
database's (``now()``), so clocks of worker hosts do not matter.

SQLite has no leases: there the one ``tgfleet run`` process is the only worker.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.lease.reply_repository import ReplyCalls, ReplyConnection, ReplyRepository
from tgfleet.lease.repository import LeaseRepository
from tgfleet.lease.worker_repository import WorkerRepository
from tgfleet.models import WorkerState


@dataclass(frozen=True, slots=True)
class Registration:
    worker_id: str
    epoch: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class WorkerClock:
    id: str
    epoch: int
    running: bool  # not drained
    expires_in: float  # seconds until its lease expires (negative: expired that long ago)
    age: float  # seconds since it registered


@dataclass(frozen=True, slots=True)
class FleetShape:
    #: Every registered worker (a small table), in id order.
    clocks: tuple[WorkerClock, ...]
    running_accounts: int

    @property
    def workers(self) -> tuple[str, ...]:
        """Live workers' ids in order; the first is the leader."""
        return tuple(c.id for c in self.clocks if c.running and c.expires_in > 0)

    @property
    def live_workers(self) -> int:
        return len(self.workers)

    @property
    def leader(self) -> str | None:
        live = self.workers
        return live[0] if live else None

    def share_of(self, worker_id: str, capacity: int) -> int:
        """How many accounts this worker should hold: the accounts desired running split
        evenly over the live workers, the remainder going one each to the first in id order
        (so the shares add up to exactly the fleet), at most its capacity."""
        live = self.workers
        count = max(1, len(live))
        rank = live.index(worker_id) if worker_id in live else count - 1
        base, extra = divmod(self.running_accounts, count)
        return min(capacity, base + (1 if rank < extra else 0))

    def reapable(self, grace: float) -> tuple[list[str], list[tuple[str, int]]]:
        """Workers whose leases may be freed now: those expired over ``grace`` seconds ago,
        and (id, epoch) of workers that registered again over ``grace`` seconds ago (their
        earlier runs' leases)."""
        dead = [c.id for c in self.clocks if -REREGISTER_WINDOW < c.expires_in < -grace]
        superseded = [
            (c.id, c.epoch)
            for c in self.clocks
            if c.epoch > 1 and c.expires_in > -grace and grace < c.age < REREGISTER_WINDOW
        ]
        return dead, superseded

    def next_reap_in(self, worker_id: str, grace: float) -> float | None:
        """Seconds until another worker's leases become reapable (its expiry + grace), for
        the leader to wake just then; None when nobody is due."""
        due = [
            c.expires_in + grace
            for c in self.clocks
            if c.id != worker_id and c.running and c.expires_in + grace > 0
        ]
        return min(due) if due else None


#: Superseded epochs are looked for in workers that registered again within this window.
REREGISTER_WINDOW = 3600.0


@dataclass(frozen=True, slots=True)
class WorkerView:
    id: str
    epoch: int
    host: str
    pid: int
    version: str
    capacity: int
    state: WorkerState
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    alive: bool
    held: int

    @property
    def lost(self) -> bool:
        """Its lease expired without a drain (killed, frozen or cut off)."""
        return not self.alive and self.state is WorkerState.RUNNING


def supports_leases(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def register(
    session: AsyncSession,
    *,
    worker_id: str,
    host: str,
    pid: int,
    version: str,
    capacity: int,
    ttl: float,
) -> Registration:
    epoch, expires_at = await WorkerRepository(session).register(
        worker_id=worker_id, host=host, pid=pid, version=version, capacity=capacity, ttl=ttl
    )
    return Registration(worker_id, epoch, expires_at)


async def current_epoch(session: AsyncSession, worker_id: str) -> int | None:
    return await WorkerRepository(session).current_epoch(worker_id)


async def heartbeat(session: AsyncSession, registration: Registration, ttl: float) -> bool:
    """Renew the worker-level lease (all held accounts at once). False: fenced off (the
    lease already expired — it is never brought back —, a newer run of this worker
    registered, or the row was stopped)."""
    expires = await WorkerRepository(session).heartbeat(
        registration.worker_id, registration.epoch, ttl
    )
    return expires is not None


async def claim(
    session: AsyncSession, registration: Registration, *, limit: int
) -> list[uuid.UUID]:
    """Take up to ``limit`` free leases of accounts desired running; returns their ids."""
    return await LeaseRepository(session).claim(
        registration.worker_id, registration.epoch, limit=limit
    )


async def ensure_leases(session: AsyncSession, account_ids: Collection[uuid.UUID]) -> None:
    """Free lease rows for accounts just started (PostgreSQL; nothing on SQLite)."""
    if supports_leases(session):
        await LeaseRepository(session).ensure(account_ids)


async def sweep(session: AsyncSession) -> None:
    """The leader's slow chore: lease rows for every account desired running (whatever
    set it), none left free for stopped ones, and workers gone for a day forgotten; reply
    claims past their expiry and limit windows an hour quiet dropped."""
    await LeaseRepository(session).ensure(None)
    await WorkerRepository(session).prune()
    await ReplyRepository(session).prune()


async def reap(
    session: AsyncSession,
    fleet: FleetShape,
    grace: float,
    *,
    skip: set[tuple[str, int]] | None = None,
) -> int:
    """Free the leases of workers that expired (or re-registered) over ``grace`` seconds
    ago; returns how many. The leader does this every tick; with nobody due it costs
    nothing (the worker table said so). Superseded runs in ``skip`` were freed before
    and are left out; the ones freed now are added to it."""
    dead, superseded = fleet.reapable(grace)
    if skip is not None:
        superseded = [run for run in superseded if run not in skip]
        skip.update(superseded)
    if not dead and not superseded:
        return 0
    return await LeaseRepository(session).reap(dead, superseded)


async def held(session: AsyncSession, registration: Registration) -> set[uuid.UUID]:
    """The accounts this run of the worker validly holds right now (empty when its own lease
    has expired: the check every client start makes)."""
    return await LeaseRepository(session).held(registration.worker_id, registration.epoch)


async def leased_by(
    session: AsyncSession, worker_id: str, account_ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of these accounts have a lease row naming ``worker_id``, valid or not: an
    account's status may be written by the worker its lease names."""
    return await LeaseRepository(session).leased_by(worker_id, account_ids)


async def release(
    session: AsyncSession,
    registration: Registration,
    account_ids: Collection[uuid.UUID] | None = None,
) -> int:
    """Give leases back (all of them with ``None``), after their clients have stopped."""
    return await LeaseRepository(session).release(
        registration.worker_id, registration.epoch, account_ids
    )


async def release_stopped(session: AsyncSession, registration: Registration) -> int:
    """Give back the leases of held accounts an operator stopped (nobody claims those)."""
    return await LeaseRepository(session).release_stopped(
        registration.worker_id, registration.epoch
    )


async def deregister(session: AsyncSession, registration: Registration) -> None:
    await WorkerRepository(session).deregister(registration.worker_id, registration.epoch)


async def shape(session: AsyncSession, running_accounts: int | None = None) -> FleetShape:
    """The live workers (cheap: the worker table) and the accounts desired running (a count
    over the fleet: pass a recent value to skip it)."""
    clocks = tuple(WorkerClock(*row) for row in await WorkerRepository(session).worker_clock())
    running = (
        running_accounts
        if running_accounts is not None
        else await LeaseRepository(session).running_accounts()
    )
    return FleetShape(clocks=clocks, running_accounts=running)


async def mark_unassigned(session: AsyncSession, grace: float) -> int:
    """Set ``unassigned`` on the status of accounts desired running whose lease is free
    (capacity exhausted, or reaped from a dead worker and not yet claimed), unless their
    status changed in the last ``grace`` seconds; returns how many rows changed."""
    return await LeaseRepository(session).mark_unassigned(grace)


async def list_workers(session: AsyncSession) -> list[WorkerView]:
    if not supports_leases(session):
        return []
    return [
        WorkerView(
            id=row.id,
            epoch=int(row.epoch),
            host=row.host,
            pid=int(row.pid),
            version=row.version,
            capacity=int(row.capacity),
            state=WorkerState(row.state),
            started_at=row.started_at,
            heartbeat_at=row.heartbeat_at,
            expires_at=row.expires_at,
            alive=bool(row.alive),
            held=int(row.held),
        )
        for row in await WorkerRepository(session).workers()
    ]


async def holders(
    session: AsyncSession, account_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Which live worker holds each of these accounts (PostgreSQL; empty on SQLite)."""
    if not supports_leases(session):
        return {}
    return await LeaseRepository(session).holders(account_ids)


async def unassigned(session: AsyncSession) -> int:
    """Accounts desired running that no live worker holds."""
    if not supports_leases(session):
        return 0
    return await LeaseRepository(session).unassigned()


# --------------------------------------------------------------------------- replies


#: Where an admitted ``responders: one`` claim is announced (the payload is the caller's).
REPLY_CHANNEL = "tgfleet_replies"


@dataclass(frozen=True, slots=True)
class ReplyVerdict:
    """PostgreSQL's answer to one account asking to answer one message (issue 13).

    ``verdict``: ``admitted`` (claimed and budget reserved at ``reserved_at``, unix time),
    ``from_fleet``, ``claimed_by_other``, ``duplicate``, ``limit:min_interval``,
    ``limit:account_hourly`` or ``limit:group_hourly`` (then ``retry_in``: the seconds during
    which the same limit refuses again, whoever asks, unless a reservation is released)."""

    verdict: str
    reserved_at: float | None
    retry_in: float | None


async def admit_reply(
    connection: ReplyConnection,
    *,
    key: str,
    account_id: uuid.UUID,
    chat_id: int,
    sender_id: int | None,
    min_interval: float,
    account_hourly: int,
    group_hourly: int,
    claim_seconds: float,
    announce: str | None = None,
) -> ReplyVerdict:
    """Decide and reserve in one statement, atomically for every worker (see migration
    0007: the sender is not a fleet account, the message is not claimed, the account's and
    the group's last hour leave room; then the claim and the budget are taken).
    ``announce``: notify this payload on :data:`REPLY_CHANNEL` when admitted."""
    verdict, reserved_at, retry_in = await ReplyCalls(connection).admit(
        key,
        account_id,
        chat_id,
        sender_id,
        float(min_interval),
        account_hourly,
        group_hourly,
        float(claim_seconds),
        announce,
    )
    return ReplyVerdict(verdict, reserved_at, retry_in)


async def release_reply(
    connection: ReplyConnection,
    *,
    key: str,
    account_id: uuid.UUID,
    chat_id: int,
    reserved_at: float,
    keep_claim: bool,
) -> None:
    """Give an admitted reply's budget back (it was not sent), and its claim unless
    ``keep_claim``."""
    await ReplyCalls(connection).release(key, account_id, chat_id, reserved_at, keep_claim)


#: A saved claim: key, account id, chat id, claimed at and expires at (unix times).
SavedClaimRow = tuple[str, uuid.UUID, int, float, float]


async def load_saved_replies(
    session: AsyncSession,
) -> tuple[dict[str, list[float]], list[SavedClaimRow]]:
    """What the one process's reply gate saved (SQLite): limit windows by key (unix
    times) and the claims not yet expired."""
    windows, claims = await ReplyRepository(session).saved()
    return (
        {w.key: [float(t) for t in w.sent_at] for w in windows},
        [
            (
                c.key,
                c.account_id,
                c.chat_id,
                c.claimed_at.timestamp(),
                c.expires_at.timestamp(),
            )
            for c in claims
        ],
    )


async def save_replies(
    session: AsyncSession,
    windows: Mapping[str, list[float]],
    claims: Sequence[SavedClaimRow],
    gone: Collection[str],
) -> None:
    """Write a reply gate's changes (one process, SQLite) so that a restart keeps them:
    windows replaced by key (an empty one removed), claims written or removed; claims of
    accounts deleted meanwhile are dropped, expired ones pruned."""
    await ReplyRepository(session).save(windows, claims, gone)
