"""The live feed's metrics (bench/console.py reads them from /metrics): every query the
broadcaster runs counts in ``tgfleet_console_live_queries_total``, and
``tgfleet_console_live_subscribers`` follows the pages subscribed, however they leave
(the block ends, dropped for reading too slowly, the broadcaster stops). Both databases."""

from __future__ import annotations

import contextlib

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_fleet, report_states
from tgfleet.account.live import Broadcaster, Reset
from tgfleet.models import AccountState

pytestmark = pytest.mark.timeout(60)

QUERIES = "tgfleet_console_live_queries_total"
SUBSCRIBERS = "tgfleet_console_live_subscribers"


def value(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_queries_are_counted_once_whatever_the_pages(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    """Start, one tail with a state change (tail + summary), one empty tail: four queries
    in the counter as in ``Broadcaster.queries``, with ten pages open. The task is not
    started: the test drives the tail, so nothing else queries meanwhile."""
    ids = await make_fleet(maker, 3)
    queries, subscribers = value(QUERIES), value(SUBSCRIBERS)
    broadcaster = Broadcaster(maker)
    await broadcaster.begin()
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(10):
            await stack.enter_async_context(broadcaster.subscribe(None))
        assert value(SUBSCRIBERS) == subscribers + 10
        await report_states(maker, ids, AccountState.STARTING, previous="stopped")
        assert await broadcaster.tail() == len(ids)
        assert await broadcaster.tail() == 0
    assert broadcaster.queries == 4
    assert value(QUERIES) == queries + 4
    assert value(SUBSCRIBERS) == subscribers
    await broadcaster.stop()


async def test_subscribers_gauge_follows_drops_and_stop(
    maker: async_sessionmaker[AsyncSession],
) -> None:
    """A page dropped for reading too slowly leaves the gauge at once; the pages still
    open when the broadcaster stops leave it then, and their blocks ending later do not
    take them off twice."""
    ids = await make_fleet(maker, 2)
    subscribers = value(SUBSCRIBERS)
    broadcaster = Broadcaster(maker, queue_size=1)
    await broadcaster.begin()
    async with broadcaster.subscribe(None) as slow, broadcaster.subscribe(None):
        assert value(SUBSCRIBERS) == subscribers + 2
        for account in ids:  # two batches: the queue of one holds one
            await report_states(maker, [account], AccountState.STARTING, previous="stopped")
            await broadcaster.tail()
        assert broadcaster.dropped == 2  # neither page read
        assert value(SUBSCRIBERS) == subscribers
        items = [item async for item in slow]
        assert items[-1] == Reset("too_slow")
    async with broadcaster.subscribe(None), broadcaster.subscribe(None):
        assert value(SUBSCRIBERS) == subscribers + 2
        await broadcaster.stop()
        assert value(SUBSCRIBERS) == subscribers
    assert value(SUBSCRIBERS) == subscribers
