"""The live feed of account events: one broadcaster per API process reads them once and
fans them out to every open console page (issue 16 item 6; ``console/stream.py`` serves it
as Server-Sent Events). It lives in the account domain, beside the events it reads, so
``Components`` (below the console in the layers) can hand it to the routes.

`Broadcaster` tails ``account_event`` by id through the account service (one query per
wake, whatever the number of pages). It wakes on PostgreSQL's ``NOTIFY`` on
``account.service.EVENT_CHANNEL`` (sent in the transaction that appends events) with a
slow safety poll, or polls while its listener is deaf; on SQLite it polls. A batch that
holds a state change also carries the fleet's summary, recomputed once for everybody.

PostgreSQL assigns ids at insert, not in commit order: a tail of "id > last" would skip an
id whose transaction commits after a higher one. The ids below the highest seen that have
not been read are kept as *missing* ranges and asked for again with each query for
``gap_seconds`` (then they are taken for rolled-back inserts or deleted accounts' events).

Each page subscribes (`Broadcaster.subscribe`) and iterates `LiveBatch` es. The resume point
a batch carries (``last_id``) is the *watermark*: every id up to it was delivered (or given
up). A page that reconnects with it gets the buffered events above it first, so an event
that filled a gap after the page left is not lost; one delivered above the watermark may
come twice (pages apply events by id, so a repeat changes nothing). An id older than the
ring buffer, or newer than anything this process saw (another process's, a forged one),
gets `RESET`: the page reloads. So does a page whose queue fills (it reads too slowly):
it is dropped without slowing the others.

When no page is subscribed the broadcaster keeps tailing at the slow interval (one cheap
indexed query every ``idle_seconds``): the buffer stays warm, so the one page of an
operator that reloads resumes instead of resetting, and the first subscriber wakes it at
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import metrics
from tgfleet.account import service as account_service
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.lifecycle import TaskLifecycle
from tgfleet.kit.pg_listener import ChannelListener
from tgfleet.logging import get_logger

log = get_logger(__name__)

STATE_KIND: Final = "state"


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One account event as the pages see it. ``worker_id`` is the account's holder when
    the event was read (events have no worker column)."""

    id: int
    account_id: uuid.UUID
    label: str
    kind: str
    state: str | None
    previous_state: str | None
    code: str | None
    worker_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """Events read together; ``summary`` is the fleet recomputed after them when they hold a
    state change (else ``None``); ``last_id`` is the point a page resumes from."""

    events: list[LiveEvent]
    summary: account_service.FleetSummary | None
    last_id: int


@dataclass(frozen=True, slots=True)
class Reset:
    """The page must reload: it cannot be caught up from the buffer (``reason``: why)."""

    reason: Literal["unknown", "too_old", "too_slow"]


LiveItem = LiveBatch | Reset


@dataclass(eq=False)
class Subscription:
    """One page's feed: iterate it for `LiveBatch` es; it ends after a `Reset` or when the
    broadcaster stops."""

    #: What the page has not read yet; ``None`` ends the feed.
    queue: asyncio.Queue[LiveItem | None]
    ended: bool = field(default=False)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> LiveItem:
        if self.ended:
            raise StopAsyncIteration
        item = await self.queue.get()
        if item is None:
            self.ended = True
            raise StopAsyncIteration
        if isinstance(item, Reset):
            self.ended = True
        return item

    def finish(self, last: Reset | None = None) -> None:
        """Drop what is unread, leave ``last`` (if any) and the end (never blocks: the
        queue has room for both beyond a subscriber's limit)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        if last is not None:
            self.queue.put_nowait(last)
        self.queue.put_nowait(None)


@dataclass(frozen=True, slots=True)
class _Missing:
    lo: int
    hi: int
    until: float


class Broadcaster(TaskLifecycle):
    """Tails the account events once per process and fans them out to subscribers."""

    task_name = "account:live"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        listen_url: str | None = None,
        poll_seconds: float = 0.3,
        idle_seconds: float = 2.0,
        gap_seconds: float = 5.0,
        buffer_size: int = 10_000,
        queue_size: int = 256,
        batch_limit: int = 1_000,
        max_missing: int = 1_000,
    ) -> None:
        """``listen_url``: the PostgreSQL URL to listen on (``None``: poll, as on SQLite).
        ``poll_seconds`` is the tail's interval when polling with pages open (and while
        ids are missing); ``idle_seconds`` the interval with no page open, and on PostgreSQL
        the safety poll between notifications. A subscriber whose queue holds
        ``queue_size`` undelivered batches is dropped."""
        self._sessionmaker = sessionmaker
        self._poll = poll_seconds
        self._idle = idle_seconds
        self._gap_seconds = gap_seconds
        self._batch_limit = batch_limit
        self._max_missing = max_missing
        self._queue_size = queue_size
        self._buffer: deque[LiveEvent] = deque(maxlen=buffer_size)
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._missing: list[_Missing] = []
        self._head = 0  # the highest id read
        self._floor = 0  # every id above it that was read is still in the buffer
        self._summary: account_service.FleetSummary | None = None
        self._stopped = False
        self.started = asyncio.Event()  # set once the starting point is known
        self.listener = (
            ChannelListener(
                listen_url,
                {account_service.EVENT_CHANNEL: self._notified},
                on_deaf=self._wake.set,
                name="console",
            )
            if listen_url is not None
            else None
        )
        #: Queries run against the database (tails and summaries), for the benchmark
        #: (also tgfleet_console_live_queries_total).
        self.queries = 0
        #: Tail queries alone.
        self.tails = 0
        #: Subscribers dropped for reading too slowly.
        self.dropped = 0

    # ------------------------------------------------------------------ resume point

    @property
    def watermark(self) -> int:
        """Every id up to this one was read (or given up): the point a page resumes from."""
        if self._missing:
            return min(self._missing[0].lo - 1, self._head)
        return self._head

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    # ------------------------------------------------------------------ fan-out

    @contextlib.asynccontextmanager
    async def subscribe(self, last_event_id: int | None) -> AsyncIterator[Subscription]:
        """A page's feed while the block runs. ``last_event_id`` (a reconnect's
        ``Last-Event-ID``) first replays the buffered events above it, or yields `Reset`
        when the buffer cannot tell (older than the buffer, newer than this process saw);
        ``None`` starts from now."""
        await self.started.wait()
        subscription = Subscription(asyncio.Queue(self._queue_size + 2))
        if self._stopped:
            subscription.finish()
            yield subscription
            return
        if last_event_id is not None:
            reset = self._catch_up(subscription, last_event_id)
            if reset is not None:
                subscription.finish(reset)
                yield subscription
                return
        self._subscribers.add(subscription)
        metrics.LIVE_SUBSCRIBERS.inc()
        self._wake.set()  # the first page wakes an idle tail at once
        try:
            yield subscription
        finally:
            self._unsubscribe(subscription)

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscribers:
            self._subscribers.discard(subscription)
            metrics.LIVE_SUBSCRIBERS.dec()

    def _catch_up(self, subscription: Subscription, last_event_id: int) -> Reset | None:
        if last_event_id < 0 or last_event_id > self.watermark:
            return Reset("unknown")  # a forged id, or another process's newer one
        if last_event_id < self._floor:
            return Reset("too_old")
        missed = sorted(
            (event for event in self._buffer if event.id > last_event_id), key=lambda e: e.id
        )
        for start in range(0, len(missed), self._batch_limit):
            part = missed[start : start + self._batch_limit]
            summary = self._summary if any(e.kind == STATE_KIND for e in part) else None
            subscription.queue.put_nowait(LiveBatch(part, summary, self.watermark))
            if subscription.queue.full():
                return Reset("too_slow")
        return None

    def _publish(self, batch: LiveBatch) -> None:
        for subscription in list(self._subscribers):
            if subscription.queue.qsize() >= self._queue_size:
                self._unsubscribe(subscription)
                subscription.finish(Reset("too_slow"))
                self.dropped += 1
                log.info("account.live_dropped", reason="too_slow")
                continue
            subscription.queue.put_nowait(batch)

    async def stop(self) -> None:
        """End every subscription (their iteration stops), then the tail."""
        self._stopped = True
        for subscription in list(self._subscribers):
            subscription.finish()
            self._unsubscribe(subscription)
        self.started.set()  # a subscribe waiting for a start that never came ends too
        await super().stop()

    # ------------------------------------------------------------------ the tail

    def _counted(self) -> None:
        """One more query of the feed's."""
        self.queries += 1
        metrics.LIVE_QUERIES.inc()

    def _notified(self, _payload: str) -> None:
        self._wake.set()

    def _interval(self) -> float:
        if self._missing:
            return self._poll
        if self.listener is not None and self.listener.connected:
            return self._idle  # notifications wake it; this is the safety poll
        return self._poll if self._subscribers else self._idle

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            if self.listener is not None:
                tasks.create_task(self.listener.run(), name="account:live-listener")
            await self.begin()
            while True:
                # asyncio.timeout, not wait_for: 3.11's wait_for can turn a cancellation
                # that meets its timeout into a TimeoutError, and the task would not stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval()):
                        await self._wake.wait()
                self._wake.clear()
                try:
                    await self.tail()
                except Exception as exc:  # noqa: BLE001 - the database is down: retry later
                    log.warning("account.live_tail_failed", error=type(exc).__name__)
                    await asyncio.sleep(self._idle)

    async def begin(self) -> None:
        """Take the newest event id as the starting point (retrying while the database is
        unreachable); subscriptions wait for it. The task does this first."""
        backoff = 0.5
        while True:
            try:
                async with unit_of_work(self._sessionmaker, deferred=True) as session:
                    self._counted()
                    self._head = self._floor = await account_service.last_event_id(session)
                break
            except Exception as exc:  # noqa: BLE001 - the database is down: retry
                log.warning("account.live_start_failed", error=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        self.started.set()

    async def tail(self) -> int:
        """Read what was committed since the last read and publish it; returns how many
        events. Reads again at once while a read comes back full."""
        total = 0
        while True:
            loop = asyncio.get_running_loop()
            self._missing = [m for m in self._missing if m.until > loop.time()]
            missing = [(m.lo, m.hi) for m in self._missing]
            async with unit_of_work(self._sessionmaker, deferred=True) as session:
                self._counted()
                self.tails += 1
                rows = await account_service.events_after(
                    session, self._head, self._batch_limit, missing=missing
                )
                events = [_live(row) for row in rows]
                summary = None
                if any(event.kind == STATE_KIND for event in events):
                    self._counted()
                    summary = await account_service.fleet_summary(session)
            if events:
                self._take(events, loop.time() + self._gap_seconds)
                if summary is not None:
                    self._summary = summary
                self._publish(LiveBatch(events, summary, self.watermark))
                total += len(events)
            if len(rows) < self._batch_limit:
                return total

    def _take(self, events: Sequence[LiveEvent], until: float) -> None:
        """Buffer ``events`` and update the missing ranges: the ones read leave them, the
        ids skipped between the old and the new head join them."""
        read = {event.id for event in events}
        ranges = [(m.lo, m.hi, m.until) for m in self._missing]
        top = max(read)
        if top > self._head + 1:
            ranges.append((self._head + 1, top - 1, until))
        self._head = max(self._head, top)
        self._missing = _without(ranges, sorted(read))[-self._max_missing :]
        for event in events:
            if len(self._buffer) == self._buffer.maxlen:
                self._floor = max(self._floor, self._buffer[0].id)
            self._buffer.append(event)


def _without(ranges: list[tuple[int, int, float]], read: list[int]) -> list[_Missing]:
    """``ranges`` (inclusive) minus the ``read`` ids (sorted), split where needed, in order."""
    kept: list[_Missing] = []
    for lo, hi, until in sorted(ranges):
        start = lo
        for event_id in read:
            if event_id < start or event_id > hi:
                continue
            if event_id > start:
                kept.append(_Missing(start, event_id - 1, until))
            start = event_id + 1
        if start <= hi:
            kept.append(_Missing(start, hi, until))
    return kept


def _live(row: account_service.TailedEvent) -> LiveEvent:
    event = row.event
    return LiveEvent(
        id=event.id,
        account_id=event.account_id,
        label=row.label,
        kind=event.kind,
        state=event.state.value if event.state is not None else None,
        previous_state=event.previous_state.value if event.previous_state is not None else None,
        code=event.code,
        worker_id=row.worker_id,
        at=event.at,
    )
