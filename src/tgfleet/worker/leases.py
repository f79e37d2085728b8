"""A worker's lease loop on PostgreSQL (DESIGN §8, docs/scaling.md).

Every TTL/3 the loop renews the worker-level lease (one statement: all held accounts at
once), then moves towards its fair share: it claims what it lacks with SKIP LOCKED, or, when
it holds more than its share plus a slack, hands over at most ``release_step`` accounts
(their clients are stopped first, then the leases are released) so a joining worker is fed
gradually rather than in a thundering herd.

Self-fencing: when the lease could not be renewed for TTL/2 (database unreachable, or the
process was frozen) or the renewal says another run took this worker id, every client is
stopped at once. The lease expires TTL after its last renewal, and the leader (the live
worker with the smallest id) frees it ``grace`` (default 2 s) after that, waking just in time
and notifying the others, who claim at once: so the two holders never overlap, and a dead
worker's accounts move about TTL + grace after its last renewal. When the database comes
back, the loop renews and carries on with whatever it still validly holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import __version__, metrics
from tgfleet.kit.db import unit_of_work
from tgfleet.lease import notify
from tgfleet.lease import service as lease_service
from tgfleet.lease.service import FleetShape, Registration
from tgfleet.logging import get_logger

log = get_logger(__name__)

#: Seconds between the leader's slow chores (lease-row sweep, unassigned marks), and
#: between the fleet counts every worker refreshes (commands refresh them at once).
CHORES_EVERY = 30.0
#: Default wait after a lease expired before it is reaped. The holder stopped its clients
#: TTL/2 before its lease expired (self-fencing), so this only covers latency.
DEFAULT_GRACE = 2.0

#: Called with the accounts to stop before their leases are released; returns when stopped.
StopAccounts = Callable[[set[uuid.UUID]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    ttl: float = 15.0
    grace: float | None = None
    capacity: int = 1000
    release_step: int = 50

    @property
    def renew_every(self) -> float:
        return self.ttl / 3

    @property
    def fence_after(self) -> float:
        return self.ttl / 2

    @property
    def grace_seconds(self) -> float:
        return DEFAULT_GRACE if self.grace is None else self.grace


class LeaseLoop:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        worker_id: str,
        config: LeaseConfig,
        *,
        on_change: Callable[[], None],
        stop_accounts: StopAccounts,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.worker_id = worker_id
        self.config = config
        self._on_change = on_change
        self._stop_accounts = stop_accounts
        self.registration: Registration | None = None
        self.held: frozenset[uuid.UUID] = frozenset()
        self.fenced = False
        self._renewed_at = 0.0
        self.renewals = 0
        self.claimed_total = 0
        self.released_total = 0
        self.fences = 0
        self.unassigned = 0
        self.reaped_total = 0
        self.leader = False
        self._running: int | None = None
        self._counted_at = 0.0
        self._released_stopped_at = 0.0
        self._commanded = False
        self._chores_at = 0.0
        self._next_reap: float | None = None
        #: (worker id, epoch) whose earlier runs' leases this leader already freed: a
        #: superseded run can never take a lease again, so once is enough.
        self._reaped_runs: set[tuple[str, int]] = set()
        self._poked = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def register(self) -> Registration:
        async with unit_of_work(self._sessionmaker) as session:
            self.registration = await lease_service.register(
                session,
                worker_id=self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                version=__version__,
                capacity=self.config.capacity,
                ttl=self.config.ttl,
            )
        self._renewed_at = time.monotonic()
        log.info("worker.registered", worker_id=self.worker_id, epoch=self.registration.epoch)
        return self.registration

    def fresh(self) -> bool:
        """Whether the lease was renewed less than TTL/2 ago (monotonic clock: a frozen
        process wakes up stale, and sends nothing until a renewal succeeds)."""
        return not self.fenced and time.monotonic() - self._renewed_at < self.config.fence_after

    def poke(self, *, command: bool = True) -> None:
        """Renew and rebalance now: after a command (it may have made an account claimable
        or changed how many run: recount and release stopped ones), or, with
        ``command=False``, after another worker freed leases (just claim)."""
        if command:
            self._commanded = True
        self._poked.set()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            self._poked.clear()
            await self.tick()
            elapsed = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), self._delay(elapsed))

    async def tick(self) -> None:
        """One renewal and rebalance; never raises (an outage is handled by fencing)."""
        if self.registration is None:
            return
        if time.monotonic() - self._renewed_at >= self.config.fence_after:
            # Not renewed for TTL/2 (an outage, or this process was frozen): the accounts may
            # be someone else's by now. Stop every client before renewing, then start again
            # from what the database says is still ours.
            await self._fence("lease not renewed for TTL/2")
        started = time.perf_counter()
        try:
            async with unit_of_work(self._sessionmaker) as session:
                renewed = await lease_service.heartbeat(session, self.registration, self.config.ttl)
        except Exception as exc:
            metrics.LEASE_RENEWALS.labels("failed").inc()
            log.warning("worker.lease_renew_failed", error=type(exc).__name__)
            if time.monotonic() - self._renewed_at > self.config.fence_after:
                await self._fence("lease not renewed for TTL/2")
            return
        metrics.LEASE_RENEWAL_DURATION.observe(time.perf_counter() - started)
        metrics.LEASE_RENEWALS.labels("ok" if renewed else "lost").inc()
        if not renewed:
            metrics.LEASE_LOSSES.labels("superseded").inc()
            await self._fence("the lease expired or another run took this worker id")
            await self._reregister()
            return
        self._renewed_at = time.monotonic()
        self.renewals += 1
        self.fenced = False
        try:
            await self._rebalance()
        except Exception as exc:
            log.warning("worker.rebalance_failed", error=type(exc).__name__)

    async def _reregister(self) -> None:
        """After an expired lease (an outage longer than the TTL, or a freeze): register
        again with a new epoch; the old epoch's leases are reaped after the grace and
        claimed afresh. If another process holds this worker id (a newer epoch than ours),
        stay fenced: two workers must not share an id."""
        registration = self.registration
        if registration is None:
            return
        try:
            async with unit_of_work(self._sessionmaker) as session:
                current = await lease_service.current_epoch(session, registration.worker_id)
            if current is not None and current > registration.epoch:
                log.error(
                    "worker.fenced_off",
                    worker_id=self.worker_id,
                    hint="another process registered with this worker id; give each its own",
                )
                return
            await self.register()
            self.fenced = False
        except Exception as exc:
            log.warning("worker.reregister_failed", error=type(exc).__name__)

    async def drain(self) -> None:
        """After every client has stopped: give every lease back and deregister, so other
        workers take the accounts at once (SIGTERM)."""
        if self.registration is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3.0), unit_of_work(self._sessionmaker) as session:
                released = await lease_service.release(session, self.registration)
                metrics.LEASE_RELEASES.labels("drain").inc(released)
                await lease_service.deregister(session, self.registration)
                await notify.workers(session, notify.LEASES_FREED)
            log.info("worker.drained", worker_id=self.worker_id, released=released)
        self.held = frozenset()

    # ------------------------------------------------------------------ internals

    async def _fence(self, why: str) -> None:
        if self.held:
            self.fences += 1
            metrics.LEASE_LOSSES.labels("fenced").inc()
            log.error("worker.self_fenced", why=why, accounts=len(self.held))
            stopping = set(self.held)
            self.held = frozenset()
            self._on_change()
            await self._stop_accounts(stopping)
        self.fenced = True

    async def _rebalance(self) -> None:
        registration = self.registration
        if registration is None:
            return
        now = time.monotonic()
        commanded, self._commanded = self._commanded, False
        recount = self._running is None or now - self._counted_at > CHORES_EVERY
        recount = recount or (commanded and now - self._counted_at > 1.0)
        async with unit_of_work(self._sessionmaker) as session:
            if commanded or now - self._released_stopped_at > CHORES_EVERY:
                self._released_stopped_at = now  # stop commands notify: no need to poll
                stopped = await lease_service.release_stopped(session, registration)
                metrics.LEASE_RELEASES.labels("stopped").inc(stopped)
            shape = await lease_service.shape(session, None if recount else self._running)
            if recount:
                self._running, self._counted_at = shape.running_accounts, now
            self.leader = shape.leader == registration.worker_id
            if self.leader:
                await self._lead(session, shape, now)
            held = await lease_service.held(session, registration)
            share = shape.share_of(registration.worker_id, self.config.capacity)
            claimed: list[uuid.UUID] = []
            if len(held) < share:
                claimed = await lease_service.claim(session, registration, limit=share - len(held))
        # Every worker wakes when another's leases become reapable: if that one was the
        # leader, the next in line is the leader by then and reaps at once.
        self._next_reap = shape.next_reap_in(registration.worker_id, self.config.grace_seconds)
        held |= set(claimed)
        self.claimed_total += len(claimed)
        metrics.LEASE_CLAIMS.inc(len(claimed))
        slack = max(1, math.ceil(share * 0.05))
        surplus = len(held) - share
        if surplus > slack:
            count = min(surplus, self.config.release_step)
            giving = set(sorted(held)[-count:])
            held -= giving
            self._set_held(held)
            await self._stop_accounts(giving)
            async with unit_of_work(self._sessionmaker) as session:
                released = await lease_service.release(session, registration, giving)
                await notify.workers(session, notify.LEASES_FREED)
            self.released_total += released
            metrics.LEASE_RELEASES.labels("handover").inc(released)
            log.info("worker.handed_over", accounts=released, share=share)
            return
        self._set_held(held)
        if claimed:
            log.info("worker.claimed", accounts=len(claimed), held=len(held), share=share)

    def observe_metrics(self) -> None:
        """This worker's lease gauges, at scrape time."""
        metrics.LEASES_HELD.set(len(self.held))
        metrics.WORKER_FENCED.set(1 if self.fenced else 0)
        metrics.WORKER_LEADER.set(1 if self.leader else 0)
        metrics.LEASE_UNASSIGNED.set(self.unassigned if self.leader else 0)

    def _chores_due(self, now: float) -> bool:
        return now - self._chores_at > CHORES_EVERY

    async def _lead(self, session: AsyncSession, shape: FleetShape, now: float) -> None:
        """The leader's work: every tick, free dead workers' leases (and wake the others to
        claim them) and mark free accounts unassigned; every CHORES_EVERY seconds, sweep
        lease rows (accounts started by other means, free rows of stopped ones)."""
        reaped = await lease_service.reap(
            session, shape, self.config.grace_seconds, skip=self._reaped_runs
        )
        if reaped:
            self.reaped_total += reaped
            metrics.LEASE_FAILOVERS.inc(reaped)
            log.warning("worker.reaped", accounts=reaped)
            await notify.workers(session, notify.LEASES_FREED)
        self.unassigned = await lease_service.mark_unassigned(
            session, self.config.grace_seconds + self.config.renew_every
        )
        if self._chores_due(now):
            self._chores_at = now
            await lease_service.sweep(session)

    def _delay(self, elapsed: float) -> float:
        """Until the next tick: a renewal interval, or, on the leader, just after the first
        other worker's lease could be reaped (so a dead worker's accounts move at once)."""
        delay = self.config.renew_every - elapsed
        if self._next_reap is not None:
            delay = min(delay, self._next_reap + 0.05 - elapsed)
        return max(0.05, delay)

    def _set_held(self, held: set[uuid.UUID]) -> None:
        if held != self.held:
            self.held = frozenset(held)
            self._on_change()
