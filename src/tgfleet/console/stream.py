"""One page's Server-Sent Events stream over a `Broadcaster` subscription
(``account/live.py``).

A route subscribes with the id the browser resumes from (`requested_event_id`: the
``Last-Event-ID`` header an ``EventSource`` sends on reconnect, or ``?last_event_id=`` for a
first connection that must catch up) and hands the subscription, not yet entered, to
`event_stream` with the page's ``render``. Each batch becomes the messages ``render`` makes;
its last message carries the batch's resume point as the SSE ``id``, so a connection lost
halfway through a batch resumes before it. A `Reset` becomes one ``reset`` event (the page
reloads) and the end of the stream.

The stream ends when the client goes, when the broadcaster stops, and when uvicorn is told
to exit (sse-starlette watches the server's exit signal: uvicorn waits for open responses
before the app's shutdown runs, so the broadcaster's own stop would come too late).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from tgfleet.account.live import LiveBatch, Reset, Subscription
from tgfleet.kit.lifecycle import cancel_and_wait

#: Milliseconds a browser waits before it reconnects (the ``retry:`` hint).
RETRY_MS: Final = 2_000
#: A comment every so often keeps proxies from closing an idle stream.
PING_SECONDS: Final = 15
#: Seconds an open stream has to end by itself once the server exits (then it is cut).
SHUTDOWN_GRACE_SECONDS: Final = 1.0
#: The event telling the page to reload (its data: why).
RESET_EVENT: Final = "reset"
#: What `requested_event_id` answers for a value that is no event id: no buffer holds it,
#: so the subscription starts with `Reset`.
INVALID_EVENT_ID: Final = -1

_MAX_EVENT_ID: Final = 2**63 - 1  # PostgreSQL's BIGINT

#: The page's part: the (event name, data) messages a batch becomes.
Render = Callable[[LiveBatch], Awaitable[Sequence[tuple[str, str]]]]


def parse_event_id(raw: str | None) -> int | None:
    """``None`` when absent; the id when ``raw`` is plain decimal digits within BIGINT;
    else `INVALID_EVENT_ID` (negative, huge, signed, spaced, non-ASCII digits: never an
    error, the page just reloads)."""
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):  # BIGINT's digits
        return INVALID_EVENT_ID
    value = int(raw)
    return value if value <= _MAX_EVENT_ID else INVALID_EVENT_ID


def requested_event_id(request: Request) -> int | None:
    """The id a page resumes from: the ``Last-Event-ID`` header, else ``?last_event_id=``."""
    raw = request.headers.get("last-event-id")
    if raw is None:
        raw = request.query_params.get("last_event_id")
    return parse_event_id(raw)


def event_stream(
    subscription: AbstractAsyncContextManager[Subscription],
    render: Render,
    *,
    ping_seconds: float = PING_SECONDS,
    retry_ms: int = RETRY_MS,
) -> EventSourceResponse:
    """The response streaming ``subscription`` (entered when the response starts, left when
    it ends for any reason) as ``render`` turns each batch into messages."""
    shutdown = anyio.Event()
    return EventSourceResponse(
        _messages(subscription, render, retry_ms, shutdown),
        ping=ping_seconds,
        headers={"Cache-Control": "no-store"},
        # On the server's exit the feed ends by itself, so the response completes (its
        # last chunk sent) instead of being cut off by cancellation.
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
    )


async def _messages(
    subscription: AbstractAsyncContextManager[Subscription],
    render: Render,
    retry_ms: int,
    shutdown: anyio.Event,
) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(comment="live", retry=retry_ms)
    async with subscription as feed:
        watcher = asyncio.create_task(_finish_on(shutdown, feed), name="console:stream-exit")
        try:
            async for item in feed:
                if isinstance(item, Reset):
                    yield ServerSentEvent(data=item.reason, event=RESET_EVENT)
                    return
                for message in _batch_messages(item, await render(item)):
                    yield message
        finally:
            await cancel_and_wait(watcher)


async def _finish_on(shutdown: anyio.Event, feed: Subscription) -> None:
    await shutdown.wait()
    feed.finish()


def _batch_messages(batch: LiveBatch, rendered: Sequence[tuple[str, str]]) -> list[ServerSentEvent]:
    resume = str(batch.last_id)
    messages = list(rendered)
    if not messages:  # an id alone still moves the browser's resume point
        return [ServerSentEvent(id=resume)]
    return [
        ServerSentEvent(data=data, event=name, id=resume if index == len(messages) else None)
        for index, (name, data) in enumerate(messages, start=1)
    ]
