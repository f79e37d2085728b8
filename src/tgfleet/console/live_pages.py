"""What each page's live stream sends for a batch of account events (``console/live.py``).

Every open page of a process receives the same `LiveBatch`; what a batch becomes for a kind
of page is worked out once (`SharedRender`) and handed to all of them: a thousand open
overviews cost one set of queries per batch, not one per page, and one rendering per
language the pages speak. Messages are named after the
element that shows them (``sse-swap``): ``acct-<id>`` for an account's state cell, the
overview's block names for its sections.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.account import activity
from tgfleet.account.live import LiveBatch, LiveEvent
from tgfleet.console import i18n, views
from tgfleet.console.templating import render
from tgfleet.kit.db import unit_of_work

Messages = list[tuple[str, str]]
#: A message still to render: its name, the template, the context and the block.
Job = tuple[str, str, dict[str, Any], str]

#: Batches whose rendering is kept (pages read a batch within moments of each other).
KEPT_BATCHES: Final = 64
#: The overview's traffic chart and firing alerts are redrawn at most this often.
SLOW_BLOCKS_SECONDS: Final = 15.0


def render_jobs(jobs: Sequence[Job]) -> Messages:
    """The jobs rendered in the current request's language."""
    return [
        (name, render(template, context, block=block)) for name, template, context, block in jobs
    ]


def account_jobs(events: Sequence[LiveEvent]) -> list[Job]:
    """``acct-<id>`` with the state cell, the newest state of each account once."""
    newest: dict[uuid.UUID, LiveEvent] = {}
    for event in events:
        if event.kind == "state" and event.state is not None:
            newest[event.account_id] = event
    return [
        (
            f"acct-{account_id}",
            "_live.html",
            {"state": event.state or "stopped", "reason": event.code},
            "state",
        )
        for account_id, event in newest.items()
    ]


def account_messages(events: Sequence[LiveEvent]) -> Messages:
    """``acct-<id>`` with the state cell's HTML, the newest state of each account once."""
    return render_jobs(account_jobs(events))


class SharedRender:
    """One working-out per (page kind, batch), shared by every page of that kind: the first
    page to ask works it out, the others await the same result; then one rendering of it per
    language (the first page speaking it renders, in its request's language)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._done: OrderedDict[tuple[str, int], asyncio.Future[list[Job]]] = OrderedDict()
        self._rendered: OrderedDict[tuple[str, int, str], Messages] = OrderedDict()
        #: The overview's latest events: read once, then kept from the batches.
        self._recent: deque[views.EventRow] | None = None
        self._seen_batch = -1
        self._slow_at = float("-inf")
        #: Renderings worked out (not served from the cache), for the benchmark.
        self.rendered = 0

    async def messages(
        self, kind: str, batch: LiveBatch, make: Callable[[LiveBatch], Awaitable[list[Job]]]
    ) -> Messages:
        jobs = await self._jobs(kind, batch, make)
        key = (kind, batch.last_id, i18n.current().code)
        rendered = self._rendered.get(key)
        if rendered is None:
            rendered = self._rendered[key] = render_jobs(jobs)
            while len(self._rendered) > KEPT_BATCHES * len(i18n.LANGUAGES):
                self._rendered.popitem(last=False)
        return rendered

    async def _jobs(
        self, kind: str, batch: LiveBatch, make: Callable[[LiveBatch], Awaitable[list[Job]]]
    ) -> list[Job]:
        key = (kind, batch.last_id)
        future = self._done.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._done[key] = future
            while len(self._done) > KEPT_BATCHES:
                self._done.popitem(last=False)
            try:
                future.set_result(await make(batch))
                self.rendered += 1
            except BaseException as exc:
                future.set_exception(exc)
                del self._done[key]
                raise
        return await asyncio.shield(future)

    # ------------------------------------------------------------------ page kinds

    async def accounts(self, batch: LiveBatch) -> Messages:
        return await self.messages("accounts", batch, _accounts)

    async def overview(self, batch: LiveBatch) -> Messages:
        return await self.messages("overview", batch, self._overview)

    async def _overview(self, batch: LiveBatch) -> list[Job]:
        """A state change redraws the counts and the workers; any event the latest events;
        the traffic chart and the firing alerts are redrawn with a batch at most every
        ``SLOW_BLOCKS_SECONDS`` (a reply is an event: a busy fleet's chart moves)."""
        if not batch.events:
            return []
        now = time.monotonic()
        slow = now - self._slow_at >= SLOW_BLOCKS_SECONDS
        data: dict[str, Any] = {}
        async with unit_of_work(self._sessionmaker, read_only=True) as session:
            if batch.summary is not None:
                workers = await views.workers(session)
                data |= {
                    "total": sum(batch.summary.states.values()),
                    "states": views.ordered_states(batch.summary.states),
                    "desired_running": batch.summary.desired_running,
                    "online_running": batch.summary.running_online,
                    "online_ratio": batch.summary.online_ratio,
                    "workers": workers.rows,
                    "unassigned": workers.unassigned,
                }
            if self._recent is None:
                self._recent = deque(
                    reversed(await views.latest_events(session)), maxlen=views.LATEST_EVENTS
                )
                self._seen_batch = batch.last_id
            if slow:
                self._slow_at = now
                data["alerts"], data["alerts_total"] = await views.firing_alerts(session)
                data["traffic"] = await activity.traffic(session)
        self._remember(batch)
        data["events"] = list(reversed(self._recent))
        context = {"data": data}
        blocks = ["events"]
        if batch.summary is not None:
            blocks[:0] = ["counts", "workers"]
        if slow:
            blocks += ["alerts", "traffic"]
        return [(block, "overview.html", context, block) for block in blocks]

    def _remember(self, batch: LiveBatch) -> None:
        if self._recent is None or batch.last_id <= self._seen_batch:
            return
        self._seen_batch = batch.last_id
        self._recent.extend(_event_row(event) for event in batch.events)


async def _accounts(batch: LiveBatch) -> list[Job]:
    return account_jobs(batch.events)


def _event_row(event: LiveEvent) -> views.EventRow:
    return views.EventRow(
        id=event.id,
        at=event.at,
        account_id=event.account_id,
        label=event.label,
        kind=event.kind,
        state=event.state,
        previous_state=event.previous_state,
        code=event.code,
        message=None,
    )
