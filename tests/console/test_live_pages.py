"""What a live batch becomes for each kind of page, worked out once per process."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import make_accounts, report_states
from tgfleet.account import service as account_service
from tgfleet.account.live import LiveBatch, LiveEvent
from tgfleet.console import i18n
from tgfleet.console.live_pages import SharedRender, account_messages
from tgfleet.kit.db import unit_of_work

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
XSS = "<img src=x onerror=alert(1)>"


def event(
    event_id: int,
    account: uuid.UUID,
    state: str | None,
    kind: str = "state",
    code: str | None = None,
) -> LiveEvent:
    return LiveEvent(
        id=event_id,
        account_id=account,
        label=f"acct-{event_id}",
        kind=kind,
        state=state,
        previous_state="starting",
        code=code,
        worker_id="w-1",
        at=AT,
    )


def test_each_account_gets_its_newest_state_once() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    messages = account_messages(
        [
            event(1, a, "starting"),
            event(2, b, "online"),
            event(3, a, None, kind="reply"),
            event(4, a, "quarantined", code=XSS),
        ]
    )
    assert [name for name, _ in messages] == [f"acct-{a}", f"acct-{b}"]
    first = dict(messages)[f"acct-{a}"]
    assert 'data-state="quarantined"' in first
    assert XSS not in first
    assert "&lt;img src=x onerror=alert(1)&gt;" in first
    assert 'data-state="online"' in dict(messages)[f"acct-{b}"]


async def test_many_pages_share_one_rendering_of_a_batch(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await make_accounts(sessionmaker, ["o1", "o2"], running=True)
    await report_states(sessionmaker, ids, "online", previous="starting", worker="w-1")
    async with unit_of_work(sessionmaker) as session:
        summary = await account_service.fleet_summary(session)
    shared = SharedRender(sessionmaker)
    batch = LiveBatch(events=[event(10, ids[0], "online")], summary=summary, last_id=10)

    pages = await asyncio.gather(*(shared.overview(batch) for _ in range(50)))
    assert shared.rendered == 1
    assert all(page == pages[0] for page in pages)
    blocks = dict(pages[0])
    assert list(blocks) == ["counts", "workers", "events", "alerts", "traffic"]
    assert 'data-testid="online-count">2<' in blocks["counts"]
    assert 'href="/accounts?worker=w-1">w-1</a>' in blocks["workers"]
    assert "o1" in blocks["events"]  # the events seeded from the database

    assert "Nothing is firing." in blocks["alerts"]

    # A reply is no state change: only the latest events move (the slow blocks were just
    # drawn), and the accounts table has nothing to change.
    quiet = LiveBatch(events=[event(11, ids[0], None, kind="reply")], summary=None, last_id=11)
    (only,) = await shared.overview(quiet)
    assert only[0] == "events"
    assert "acct-11" in only[1]
    assert await shared.accounts(quiet) == []
    assert await shared.overview(LiveBatch(events=[], summary=None, last_id=12)) == []


async def test_pages_in_two_languages_share_the_work_but_not_the_words(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await make_accounts(sessionmaker, ["z1"], running=True)
    await report_states(sessionmaker, ids, "online", previous="starting", worker="w-1")
    async with unit_of_work(sessionmaker) as session:
        summary = await account_service.fleet_summary(session)
    shared = SharedRender(sessionmaker)
    batch = LiveBatch(events=[event(20, ids[0], "online")], summary=summary, last_id=20)

    async def page_in(code: str) -> dict[str, str]:
        with i18n.using(i18n.BY_CODE[code]):
            return dict(await shared.overview(batch))

    english, chinese, english_again = await asyncio.gather(
        page_in("en"), page_in("zh-Hans"), page_in("en")
    )
    assert shared.rendered == 1  # the queries ran once for both languages
    assert english == english_again
    assert english.keys() == chinese.keys()
    assert "Nothing is firing." in english["alerts"]
    assert "当前没有触发的告警。" in chinese["alerts"]
    with i18n.using(i18n.BY_CODE["zh-Hans"]):
        (cell,) = await shared.accounts(batch)
    assert ">在线<" in cell[1]
    (cell,) = await shared.accounts(batch)
    assert ">online<" in cell[1]
