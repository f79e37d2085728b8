"""The status writer: a worker's observations reach the database in batches.

Runners report state changes, timeline events, counters and discovered groups without
waiting for the database; the writer flushes everything gathered every ``interval`` seconds
in one unit of work (SQLite serialises writers, so 1,000 accounts coming online are a few
transactions, not 1,000). A failed flush keeps the batch for the next attempt; the buffer is
bounded, and what overflows is counted and logged, never silently lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import metrics
from tgfleet.account import runtime
from tgfleet.account.runtime import Counters, StateChange, TimelineEvent
from tgfleet.kit.db import unit_of_work
from tgfleet.logging import get_logger

log = get_logger(__name__)

MAX_PENDING = 100_000


@dataclass(frozen=True, slots=True)
class _GroupOff:
    account_id: uuid.UUID
    chat_id: int
    reason: str
    code: str
    message: str


class StatusWriter:
    """``lease_holder`` (PostgreSQL leases): the worker whose states these are; a state it
    reports for an account whose lease it no longer holds is not written (see
    :func:`tgfleet.account.runtime.apply`)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        interval: float = 0.2,
        lease_holder: str | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._interval = interval
        self._lease_holder = lease_holder
        self._changes: list[StateChange] = []
        self._events: list[TimelineEvent] = []
        self._counters: defaultdict[uuid.UUID, Counters] = defaultdict(Counters)
        self._groups_found: dict[uuid.UUID, dict[int, str | None]] = {}
        self._groups_off: list[_GroupOff] = []
        self._identities: dict[uuid.UUID, tuple[int, str | None]] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.dropped = 0
        self.flushes = 0
        self.failures = 0

    # ---- reporting (never blocks, never raises)

    def state(self, change: StateChange) -> None:
        if self._room():
            self._changes.append(change)
            self._wake.set()

    def event(self, event: TimelineEvent) -> None:
        if self._room():
            self._events.append(event)

    def count(
        self,
        account_id: uuid.UUID,
        *,
        messages_received: int = 0,
        replies_sent: int = 0,
        replies_suppressed: int = 0,
        reconnects: int = 0,
    ) -> None:
        counters = self._counters[account_id]
        counters.messages_received += messages_received
        counters.replies_sent += replies_sent
        counters.replies_suppressed += replies_suppressed
        counters.reconnects += reconnects

    def identity(self, account_id: uuid.UUID, tg_user_id: int, username: str | None) -> None:
        """Who the account turned out to be (from its own ``users.getUsers``)."""
        self._identities[account_id] = (tg_user_id, username)

    def groups_found(self, account_id: uuid.UUID, groups: Mapping[int, str | None]) -> None:
        self._groups_found.setdefault(account_id, {}).update(groups)

    def group_off(
        self, account_id: uuid.UUID, chat_id: int, *, reason: str, code: str, message: str
    ) -> None:
        self._groups_off.append(_GroupOff(account_id, chat_id, reason, code, message))
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._changes) + len(self._events) + len(self._groups_off)

    def _room(self) -> bool:
        if self.pending < MAX_PENDING:
            return True
        self.dropped += 1
        metrics.STATUS_DROPPED.inc()
        if self.dropped in {1, 10, 100} or self.dropped % 1000 == 0:
            log.error("worker.status_dropped", dropped=self.dropped, pending=self.pending)
        return False

    # ---- flushing

    async def run(self) -> None:
        """Flush every interval until cancelled (the caller then calls :meth:`flush`)."""
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> bool:
        """Write everything gathered so far; on failure keep it for the next call."""
        async with self._lock:
            changes, self._changes = self._changes, []
            events, self._events = self._events, []
            counters, self._counters = self._counters, defaultdict(Counters)
            found, self._groups_found = self._groups_found, {}
            off, self._groups_off = self._groups_off, []
            identities, self._identities = self._identities, {}
            self._wake.clear()
            if not (changes or events or found or off or identities or any(counters.values())):
                return True
            try:
                async with unit_of_work(self._sessionmaker) as session:
                    await runtime.apply(
                        session, changes, events, counters, lease_holder=self._lease_holder
                    )
                    if identities:
                        await runtime.record_identities(session, identities)
                    for account_id, groups in found.items():
                        await runtime.record_groups(session, account_id, groups)
                    for item in off:
                        await runtime.disable_group(
                            session,
                            item.account_id,
                            item.chat_id,
                            reason=item.reason,
                            code=item.code,
                            message=item.message,
                        )
            except Exception as exc:  # the database is down or busy: keep the batch
                self.failures += 1
                metrics.STATUS_FLUSHES.labels("failed").inc()
                log.warning(
                    "worker.status_flush_failed", error=type(exc).__name__, pending=len(changes)
                )
                self._changes[:0] = changes
                self._events[:0] = events
                for account_id, delta in counters.items():
                    kept = self._counters[account_id]
                    kept.messages_received += delta.messages_received
                    kept.replies_sent += delta.replies_sent
                    kept.replies_suppressed += delta.replies_suppressed
                    kept.reconnects += delta.reconnects
                for account_id, groups in found.items():
                    self._groups_found.setdefault(account_id, {}).update(groups)
                self._groups_off[:0] = off
                self._identities = identities | self._identities
                return False
            self.flushes += 1
            metrics.STATUS_FLUSHES.labels("ok").inc()
            return True
