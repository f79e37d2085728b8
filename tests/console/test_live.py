"""The console's live feed (`tgfleet.account.live`, `tgfleet.console.stream`): one broadcaster
per process tails the account events written by the real status writer
(``account.runtime.apply``) and fans them out; pages resume by id, slow pages are dropped,
shutdown ends every feed. Both databases; the out-of-order commit on PostgreSQL only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx
import pytest
from fastapi import FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette.sse import AppStatus

from tests.factories import events_of, make_fleet, report_states
from tests.harness import poll
from tgfleet.account import runtime as account_runtime
from tgfleet.account.live import Broadcaster, LiveBatch, LiveItem, Reset, Subscription
from tgfleet.account.runtime import StateChange
from tgfleet.console.stream import (
    INVALID_EVENT_ID,
    RESET_EVENT,
    event_stream,
    parse_event_id,
    requested_event_id,
)
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AccountState
from tgfleet.sandbox.control_server import ControlServer

pytestmark = pytest.mark.timeout(60)

WAIT = 10.0  # seconds any single condition may take


def broadcaster_for(
    db_url: str, maker: async_sessionmaker[AsyncSession], **options: float
) -> Broadcaster:
    """The broadcaster a process of this backend builds: listening on PostgreSQL."""
    listen = db_url if db_url.startswith("postgresql") else None
    return Broadcaster(maker, listen_url=listen, **options)  # type: ignore[arg-type]


@dataclass
class Reader:
    """Reads one subscription in a task, keeping what arrived."""

    subscription: Subscription
    items: list[LiveItem] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> Reader:
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for item in self.subscription:
            self.items.append(item)

    @property
    def events(self) -> list[tuple[int, str | None]]:
        return [
            (event.id, event.state)
            for item in self.items
            if isinstance(item, LiveBatch)
            for event in item.events
        ]

    async def until(self, count: int) -> None:
        """Until ``count`` events arrived (fails after ``WAIT``)."""
        await _until(lambda: len(self.events) >= count)


async def state_events(
    maker: async_sessionmaker[AsyncSession], ids: Sequence[uuid.UUID]
) -> list[tuple[int, str | None]]:
    found = [event for account in ids for event in await events_of(maker, account)]
    return sorted((e.id, e.state.value if e.state else None) for e in found if e.kind == "state")


class TestFanOut:
    async def test_two_subscribers_receive_the_same_changes(
        self, db_url: str, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Changes written through the status writer reach both pages: the exact event ids
        and states the database holds, with the fleet summary recomputed for them."""
        ids = await make_fleet(maker, 3)
        async with (
            broadcaster_for(db_url, maker) as broadcaster,
            broadcaster.subscribe(None) as one,
            broadcaster.subscribe(None) as two,
        ):
            first, second = Reader(one).start(), Reader(two).start()
            await report_states(maker, ids[:2], AccountState.STARTING, previous="stopped")
            await report_states(maker, ids[2:], AccountState.ONLINE, previous="starting")
            expected = await state_events(maker, ids)
            assert [state for _, state in expected] == ["starting", "starting", "online"]
            await first.until(3)
            await second.until(3)
            assert first.events == expected
            assert second.events == expected
            summaries = [
                item.summary
                for item in first.items
                if isinstance(item, LiveBatch) and item.summary is not None
            ]
            assert summaries[-1].states["starting"] == 2
            assert summaries[-1].states["online"] == 1
            batch = first.items[-1]
            assert isinstance(batch, LiveBatch)
            assert batch.last_id == expected[-1][0]
            assert {event.label for event in batch.events} <= {"acc000", "acc001", "acc002"}

    async def test_resume_gets_only_newer_events(
        self, db_url: str, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A page reconnecting with the id it last saw gets the events after it, from the
        buffer, and nothing before."""
        ids = await make_fleet(maker, 2)
        async with broadcaster_for(db_url, maker) as broadcaster:
            async with broadcaster.subscribe(None) as live:
                reader = Reader(live).start()
                await report_states(maker, ids[:1], AccountState.STARTING, previous="stopped")
                await reader.until(1)
                seen = reader.items[-1]
                assert isinstance(seen, LiveBatch)
                await report_states(maker, ids[1:], AccountState.STARTING, previous="stopped")
                await reader.until(2)
            newer = await state_events(maker, ids[1:])
            async with broadcaster.subscribe(seen.last_id) as resumed:
                batch = await anext(resumed)
                assert isinstance(batch, LiveBatch)
                assert [(e.id, e.state) for e in batch.events] == newer
                assert batch.last_id == newer[-1][0]

    async def test_an_id_the_buffer_cannot_answer_resets(
        self, db_url: str, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Older than the ring buffer, newer than anything seen, or negative: the page gets
        `Reset` (reload) and its feed ends; an id inside the buffer does not."""
        ids = await make_fleet(maker, 4)
        async with broadcaster_for(db_url, maker, buffer_size=2) as broadcaster:
            async with broadcaster.subscribe(None) as live:
                reader = Reader(live).start()
                for account in ids:
                    await report_states(maker, [account], AccountState.STARTING, previous="stopped")
                await reader.until(4)
            written = [event_id for event_id, _ in await state_events(maker, ids)]
            cases: list[tuple[int, Literal["too_old", "unknown"]]] = [
                (written[0], "too_old"),
                (written[-1] + 1, "unknown"),
                (INVALID_EVENT_ID, "unknown"),
            ]
            for requested, reason in cases:
                async with broadcaster.subscribe(requested) as feed:
                    assert [item async for item in feed] == [Reset(reason)]
            async with broadcaster.subscribe(written[-2]) as feed:
                batch = await anext(feed)
                assert isinstance(batch, LiveBatch)
                assert [event.id for event in batch.events] == written[-1:]

    async def test_a_slow_subscriber_is_dropped_without_delaying_the_other(
        self, db_url: str, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A page that does not read while its queue fills gets `Reset` and is dropped; the
        page that reads gets every change as it happens."""
        ids = await make_fleet(maker, 4)
        async with (
            broadcaster_for(db_url, maker, queue_size=2) as broadcaster,
            broadcaster.subscribe(None) as slow,
            broadcaster.subscribe(None) as fast,
        ):
            reader = Reader(fast).start()
            for count, account in enumerate(ids, start=1):
                await report_states(maker, [account], AccountState.STARTING, previous="stopped")
                await reader.until(count)  # one batch per change
            assert reader.events == await state_events(maker, ids)
            assert broadcaster.dropped == 1
            assert broadcaster.subscribers == 1
            assert [item async for item in slow] == [Reset("too_slow")]


class TestQueries:
    @pytest.mark.parametrize("pages", [1, 10])
    async def test_one_tail_serves_every_subscriber(
        self, db_url: str, maker: async_sessionmaker[AsyncSession], pages: int
    ) -> None:
        """The same changes cost the same queries (one tail, one summary) with 1 or 10
        pages open, and every page gets the one batch. The task is not started: the test
        drives the tail itself, so nothing else queries meanwhile."""
        ids = await make_fleet(maker, 5)
        broadcaster = Broadcaster(maker)
        await broadcaster.begin()
        assert broadcaster.queries == 1
        async with contextlib.AsyncExitStack() as stack:
            feeds = [
                await stack.enter_async_context(broadcaster.subscribe(None)) for _ in range(pages)
            ]
            await report_states(maker, ids, AccountState.STARTING, previous="stopped")
            assert await broadcaster.tail() == len(ids)
            assert (broadcaster.tails, broadcaster.queries) == (1, 3)  # start, tail, summary
            expected = await state_events(maker, ids)
            for feed in feeds:
                batch = await anext(feed)
                assert isinstance(batch, LiveBatch)
                assert [(e.id, e.state) for e in batch.events] == expected
            assert await broadcaster.tail() == 0
            assert (broadcaster.tails, broadcaster.queries) == (2, 4)  # no change: no summary
        await broadcaster.stop()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
class TestCommitOrder:
    async def test_an_id_committed_after_a_higher_one_is_not_lost(
        self, db_url: str, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Two open transactions: the first takes the lower event id but commits last. The
        tail reads the higher id first, keeps the lower as missing (the resume point stays
        below it), and delivers it when it commits."""
        ids = await make_fleet(maker, 2)
        flushed, release = asyncio.Event(), asyncio.Event()

        async def late() -> None:
            async with unit_of_work(maker) as session:
                await account_runtime.apply(session, [change(ids[0])])
                flushed.set()
                await release.wait()

        async with (
            broadcaster_for(db_url, maker) as broadcaster,
            broadcaster.subscribe(None) as live,
        ):
            reader = Reader(live).start()
            writer = asyncio.create_task(late())
            async with asyncio.timeout(WAIT):
                await flushed.wait()
            await report_states(maker, ids[1:], AccountState.STARTING, previous="stopped")
            await reader.until(1)
            [(higher, _)] = reader.events
            assert broadcaster.watermark == higher - 2  # below the uncommitted id
            release.set()
            await writer
            await reader.until(2)
            [(lower, _)] = await state_events(maker, ids[:1])
            assert lower == higher - 1
            assert reader.events == [(higher, "starting"), (lower, "starting")]
            assert broadcaster.watermark == higher
            last = reader.items[-1]
            assert isinstance(last, LiveBatch)
            assert last.last_id == higher


def change(account: uuid.UUID) -> StateChange:
    return StateChange(
        account_id=account,
        state=AccountState.STARTING,
        previous=AccountState.STOPPED,
        at=utcnow(),
        worker_id=None,
    )


class TestShutdown:
    async def test_stop_ends_every_subscription_within_a_second(
        self, db_url: str, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A page waiting for changes stops iterating promptly when the broadcaster stops,
        and a subscription opened after the stop ends at once."""
        broadcaster = broadcaster_for(db_url, maker)
        async with broadcaster, broadcaster.subscribe(None) as live:
            reader = Reader(live).start()
            assert reader.task is not None
            await broadcaster.stop()
            async with asyncio.timeout(1.0):
                await reader.task
            assert reader.items == []
        async with broadcaster.subscribe(None) as late:
            assert [item async for item in late] == []


class TestEventIds:
    @pytest.mark.parametrize(
        ("raw", "parsed"),
        [
            (None, None),
            ("", None),
            ("0", 0),
            ("42", 42),
            ("9223372036854775807", 2**63 - 1),
            ("9223372036854775808", INVALID_EVENT_ID),
            ("1" * 400, INVALID_EVENT_ID),
            ("-5", INVALID_EVENT_ID),
            ("+5", INVALID_EVENT_ID),
            (" 5", INVALID_EVENT_ID),
            ("5.0", INVALID_EVENT_ID),
            ("abc", INVALID_EVENT_ID),
            ("٣", INVALID_EVENT_ID),  # a digit, but not an ASCII one
        ],
    )
    def test_hostile_values_are_invalid_never_an_error(
        self, raw: str | None, parsed: int | None
    ) -> None:
        """Only plain decimal digits within BIGINT are an id; anything else is invalid."""
        assert parse_event_id(raw) == parsed


# ----------------------------------------------------------------------------- over HTTP


async def render(batch: LiveBatch) -> list[tuple[str, str]]:
    """A page's render: one ``state`` message per event."""
    return [("state", json.dumps({"id": e.id, "state": e.state})) for e in batch.events]


def live_app(broadcaster: Broadcaster) -> FastAPI:
    app = FastAPI()

    @app.get("/live")
    async def live(request: Request) -> object:
        return event_stream(broadcaster.subscribe(requested_event_id(request)), render)

    return app


@dataclass
class Message:
    event: str | None = None
    data: str = ""
    id: str | None = None


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """The SSE messages of a streaming response (comments skipped)."""
    current = Message()
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            current.data = "\n".join(data)  # a message's data lines, as EventSource joins them
            if current.event is not None or data or current.id is not None:
                yield current
            current, data = Message(), []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                current.event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                current.id = value


class TestOverHttp:
    async def test_ids_resume_and_a_clean_end_on_server_shutdown(
        self, db_url: str, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Through a real uvicorn: each batch's last message carries the resume id; a
        reconnect with ``Last-Event-ID`` gets only the newer event; a forged id gets a
        ``reset`` event (never a 500); the server's exit ends an open stream cleanly."""
        ids = await make_fleet(maker, 2)
        async with (
            broadcaster_for(db_url, maker) as broadcaster,
            ControlServer(live_app(broadcaster)) as server,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=WAIT) as client,
        ):
            async with client.stream("GET", "/live") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                stream = messages(response)
                await _until(lambda: broadcaster.subscribers == 1)
                await report_states(maker, ids[:1], AccountState.STARTING, previous="stopped")
                first = await anext(stream)
            [(first_id, _)] = await state_events(maker, ids[:1])
            assert (first.event, json.loads(first.data)) == (
                "state",
                {"id": first_id, "state": "starting"},
            )
            assert first.id == str(first_id)
            await _until(lambda: broadcaster.subscribers == 0)  # the client went
            await report_states(maker, ids[1:], AccountState.STARTING, previous="stopped")
            [(second_id, _)] = await state_events(maker, ids[1:])
            for forged in ["-1", "abc", "9" * 40]:
                async with client.stream(
                    "GET", "/live", headers={"Last-Event-ID": forged}
                ) as response:
                    assert response.status_code == 200
                    assert [(m.event, m.data) async for m in messages(response)] == [
                        (RESET_EVENT, "unknown")
                    ]
            try:
                async with client.stream(
                    "GET", "/live", headers={"Last-Event-ID": first.id}
                ) as response:
                    stream = messages(response)
                    resumed = await anext(stream)
                    assert json.loads(resumed.data)["id"] == second_id
                    assert resumed.id == str(second_id)
                    # What uvicorn's signal handler does in `tgfleet run` (sse-starlette
                    # patches it): the open stream ends, the response completes.
                    AppStatus.should_exit = True
                    async with asyncio.timeout(3.0):
                        rest = [message async for message in stream]
                    assert rest == []
            finally:
                AppStatus.should_exit = False
        assert broadcaster.subscribers == 0


async def _until(predicate: Callable[[], bool]) -> None:
    """Until ``predicate()`` holds (fails after ``WAIT``)."""

    async def holds() -> bool:
        return predicate()

    assert await poll(holds, WAIT, 0.01)
