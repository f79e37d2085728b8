"""The fleet's traffic per minute, the replies an account sent, and their bounded retention
(``tgfleet.account.activity``, ``account.housekeeping``), on both databases, written the way
workers write them: through ``StatusWriter`` and ``account.runtime.apply``."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import make_settings
from tests.factories import events_of, make_accounts, report_states
from tests.harness import poll
from tests.prometheus_watch import Watch
from tgfleet.account import activity, runtime
from tgfleet.account.activity import Pruned, TrafficPoint
from tgfleet.account.housekeeping import Housekeeping
from tgfleet.account.runtime import TimelineEvent, minute_of
from tgfleet.account.traffic_repository import TrafficRepository
from tgfleet.exceptions import InvalidInput
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.models import TrafficMinute
from tgfleet.worker.status import StatusWriter

Maker = async_sessionmaker[AsyncSession]
PLAYBOOK = uuid.UUID("00000000-0000-4000-8000-000000000001")


async def _online(maker: Maker, count: int) -> list[uuid.UUID]:
    """``count`` accounts a worker reported online (their status rows take counters)."""
    ids = await make_accounts(maker, [f"acc{i}" for i in range(count)], running=True)
    await report_states(maker, ids, "online", previous="starting", worker="w1")
    return ids


def _reply(account_id: uuid.UUID, text: str, *, keep_text: bool = True) -> TimelineEvent:
    return runtime.reply_event(
        account_id,
        text,
        source="template",
        chat_id=-1001500000001,
        chat_title="Support",
        reply_to=42,
        playbook_id=PLAYBOOK,
        playbook_version=3,
        rule="help",
        keep_text=keep_text,
    )


async def _traffic(maker: Maker, **kwargs: object) -> list[TrafficPoint]:
    async with unit_of_work(maker, read_only=True) as session:
        return await activity.traffic(session, **kwargs)  # type: ignore[arg-type]


async def _counted(maker: Maker) -> list[tuple[datetime, int, int]]:
    async with unit_of_work(maker, read_only=True) as session:
        rows = (await session.execute(select(TrafficMinute))).scalars().all()
    return sorted((row.minute, row.received, row.sent) for row in rows)


class TestTraffic:
    async def test_two_workers_deltas_of_one_minute_add_up_in_its_row(
        self, sessionmaker: Maker
    ) -> None:
        """Two workers' status writers flush at once: the minute's row holds the sum of
        both batches' messages received and replies sent (suppressed and reconnects are
        not traffic), and the accounts' totals are unchanged by it."""
        first, second = await _online(sessionmaker, 2)
        one, two = StatusWriter(sessionmaker), StatusWriter(sessionmaker)
        one.count(first, messages_received=3, replies_sent=1, replies_suppressed=2)
        two.count(second, messages_received=5, replies_sent=2, reconnects=1)
        two.count(second, messages_received=1)
        before = utcnow()
        assert all(await asyncio.gather(one.flush(), two.flush()))
        after = utcnow()

        counted = await _counted(sessionmaker)
        # Both flushes fall in one minute unless the test straddles a minute's end.
        assert {minute for minute, _, _ in counted} <= {minute_of(before), minute_of(after)}
        assert (sum(r for _, r, _ in counted), sum(s for _, _, s in counted)) == (9, 3)
        points = await _traffic(sessionmaker, now=after)
        assert len(points) == 60
        assert points[-1].minute == minute_of(after)
        assert [(p.minute, p.received, p.sent) for p in points if p.received or p.sent] == counted

    async def test_concurrent_writers_on_one_minute_lose_no_count(
        self, sessionmaker: Maker
    ) -> None:
        """Eight writers (one account each) flushing at the same moment all upsert the same
        minute's row (on PostgreSQL the first inserts race): every count arrives."""
        ids = await _online(sessionmaker, 8)
        writers = [StatusWriter(sessionmaker) for _ in ids]
        for number, (writer, account_id) in enumerate(zip(writers, ids, strict=True), start=1):
            writer.count(account_id, messages_received=number, replies_sent=1)
        assert all(await asyncio.gather(*(writer.flush() for writer in writers)))

        counted = await _counted(sessionmaker)
        assert (sum(r for _, r, _ in counted), sum(s for _, _, s in counted)) == (36, 8)

    async def test_the_window_is_zero_filled_oldest_first_ending_at_this_minute(
        self, sessionmaker: Maker
    ) -> None:
        """Exactly ``minutes`` points, one per minute, oldest first, the last the current
        minute; minutes without a row are zero; rows outside the window are not in it."""
        now = datetime.fromisoformat("2026-12-07T14:30:25.5+00:00")
        this = minute_of(now)
        async with unit_of_work(sessionmaker) as session:
            repository = TrafficRepository(session)
            for minutes_ago, received, sent in [(60, 100, 100), (59, 4, 1), (30, 7, 2), (0, 2, 0)]:
                minute = this - timedelta(minutes=minutes_ago)
                await repository.add_counts(minute, received=received, sent=sent)
            await repository.add_counts(this + timedelta(minutes=1), received=9, sent=9)

        points = await _traffic(sessionmaker, now=now)
        assert len(points) == 60
        assert [p.minute for p in points] == [
            this - timedelta(minutes=59 - step) for step in range(60)
        ]
        assert (points[0].received, points[0].sent) == (4, 1)
        assert (points[29].received, points[29].sent) == (7, 2)
        assert (points[59].received, points[59].sent) == (2, 0)
        assert sum(p.received for p in points) == 13  # the 60th minute ago is outside
        assert await _traffic(sessionmaker, minutes=1, now=now) == [TrafficPoint(this, 2, 0)]

    @pytest.mark.parametrize("minutes", [0, -1, 7 * 24 * 60 + 1])
    async def test_a_window_outside_the_retention_is_refused(
        self, sessionmaker: Maker, minutes: int
    ) -> None:
        """``minutes`` must be 1 to the seven days kept."""
        with pytest.raises(InvalidInput, match="minutes must be between 1 and 10080"):
            await _traffic(sessionmaker, minutes=minutes)


class TestReplies:
    async def test_a_reply_is_an_event_with_its_text_group_and_rule(
        self, sessionmaker: Maker
    ) -> None:
        """A reply event carries the text (500 characters exactly is not cut), how it was
        made, and the group, message, playbook and rule in its details."""
        (account,) = await _online(sessionmaker, 1)
        writer = StatusWriter(sessionmaker)
        writer.event(_reply(account, "y" * 500))
        assert await writer.flush()

        async with unit_of_work(sessionmaker, read_only=True) as session:
            replies = await activity.recent_replies(session, account)
        (reply,) = replies.items
        assert (reply.kind, reply.code, reply.message) == ("reply", "template", "y" * 500)
        assert reply.details == {
            "chat_id": -1001500000001,
            "chat_title": "Support",
            "reply_to": 42,
            "playbook_id": str(PLAYBOOK),
            "playbook_version": 3,
            "rule": "help",
            "length": 500,
            "truncated": False,
        }

    async def test_a_long_text_is_cut_at_500_and_says_so(self, sessionmaker: Maker) -> None:
        """A 501-character reply keeps its first 500 characters, ``truncated`` true and
        the full length in the details."""
        (account,) = await _online(sessionmaker, 1)
        text = "".join(chr(ord("a") + i % 26) for i in range(501))
        writer = StatusWriter(sessionmaker)
        writer.event(_reply(account, text))
        assert await writer.flush()

        (event,) = [e for e in await events_of(sessionmaker, account) if e.kind == "reply"]
        assert event.message == text[:500]
        assert (event.details["truncated"], event.details["length"]) == (True, 501)

    async def test_no_text_is_stored_when_the_retention_is_zero(self, sessionmaker: Maker) -> None:
        """``keep_text=False`` (retention 0): the event without its text, nothing cut."""
        (account,) = await _online(sessionmaker, 1)
        writer = StatusWriter(sessionmaker)
        writer.event(_reply(account, "z" * 600, keep_text=False))
        assert await writer.flush()

        (event,) = [e for e in await events_of(sessionmaker, account) if e.kind == "reply"]
        assert event.message is None
        assert (event.details["truncated"], event.details["length"]) == (False, 600)

    async def test_recent_replies_are_newest_first_and_only_replies(
        self, sessionmaker: Maker
    ) -> None:
        """Other kinds of events are left out; pages follow the cursor to the oldest."""
        (account,) = await _online(sessionmaker, 1)
        writer = StatusWriter(sessionmaker)
        for number in range(3):
            writer.event(_reply(account, f"reply {number}"))
            writer.event(TimelineEvent(account, utcnow(), "llm_fallback", code="llm_timeout"))
        assert await writer.flush()

        async with unit_of_work(sessionmaker, read_only=True) as session:
            first = await activity.recent_replies(session, account, limit=2)
            rest = await activity.recent_replies(session, account, cursor=first.next_cursor)
        assert [e.message for e in first.items] == ["reply 2", "reply 1"]
        assert [e.message for e in rest.items] == ["reply 0"]
        assert rest.next_cursor is None


class TestRetention:
    async def _history(self, maker: Maker, now: datetime) -> uuid.UUID:
        """Replies of 8 and 6 days ago, an old non-reply event with a message, and traffic
        minutes just over and just under seven days old."""
        (account,) = await _online(maker, 1)
        old, recent = _reply(account, "old text"), _reply(account, "recent text")
        kept = TimelineEvent(account, now - timedelta(days=30), "handler", "timeout", "took long")
        async with unit_of_work(maker) as session:
            await runtime.apply(
                session,
                [],
                [
                    dataclasses.replace(old, at=now - timedelta(days=8)),
                    dataclasses.replace(recent, at=now - timedelta(days=6)),
                    kept,
                ],
            )
            repository = TrafficRepository(session)
            seven_days = minute_of(now) - activity.TRAFFIC_RETENTION
            for minute in (seven_days - timedelta(minutes=1), seven_days):
                await repository.add_counts(minute, received=1, sent=1)
        return account

    async def _prune(self, maker: Maker, now: datetime, days: int) -> Pruned:
        async with unit_of_work(maker) as session:
            return await activity.prune(session, reply_text_retention=timedelta(days=days), now=now)

    async def test_old_texts_are_blanked_and_old_traffic_deleted_once(
        self, sessionmaker: Maker
    ) -> None:
        """At seven days' retention: the 8-day-old reply loses its text but stays (with its
        details), the 6-day-old one keeps it, other events are untouched; the minute older
        than seven days goes. A second prune finds nothing."""
        now = utcnow()
        account = await self._history(sessionmaker, now)

        assert await self._prune(sessionmaker, now, 7) == Pruned(traffic_minutes=1, reply_texts=1)
        assert await self._prune(sessionmaker, now, 7) == Pruned(traffic_minutes=0, reply_texts=0)

        events = await events_of(sessionmaker, account)
        replies = [(e.message, e.details["rule"]) for e in events if e.kind == "reply"]
        assert replies == [(None, "help"), ("recent text", "help")]
        assert [e.message for e in events if e.kind == "handler"] == ["took long"]
        seven_days = minute_of(now) - activity.TRAFFIC_RETENTION
        assert await _counted(sessionmaker) == [(seven_days, 1, 1)]

    async def test_zero_days_blanks_every_text(self, sessionmaker: Maker) -> None:
        """Retention 0: no reply keeps its text."""
        now = utcnow()
        account = await self._history(sessionmaker, now)

        assert (await self._prune(sessionmaker, now, 0)).reply_texts == 2
        events = await events_of(sessionmaker, account)
        assert [e.message for e in events if e.kind == "reply"] == [None, None]

    async def test_two_processes_pruning_at_once_blank_each_text_once(
        self, sessionmaker: Maker
    ) -> None:
        """Two API processes' housekeeping at the same moment: no error, and between them
        each row is pruned exactly once."""
        now = utcnow()
        await self._history(sessionmaker, now)

        both = await asyncio.gather(
            self._prune(sessionmaker, now, 7), self._prune(sessionmaker, now, 7)
        )
        assert sum(p.reply_texts for p in both) == 1
        assert sum(p.traffic_minutes for p in both) == 1


class TestHousekeeping:
    async def test_it_prunes_on_its_interval_and_ends_with_the_process(
        self, db_url: str, tmp_path: Path, sessionmaker: Maker
    ) -> None:
        """Started, it prunes every interval (here 50 ms, texts kept 0 days), counting what
        it pruned; on stop its task has ended."""
        account = await self._replied(sessionmaker)
        settings = make_settings(
            db_url,
            tmp_path / "data",
            housekeeping_interval_seconds=0.05,
            reply_text_retention_days=0,
        )
        housekeeping = Housekeeping(settings, sessionmaker)

        async def ran_twice() -> bool:
            return housekeeping.runs >= 2

        def tasks() -> set[asyncio.Task[object]]:
            return {t for t in asyncio.all_tasks() if t.get_name() == "account:housekeeping"}

        app_task = tasks()  # the app's own (its interval is ten minutes)
        pruned = Watch(texts=("tgfleet_housekeeping_pruned_total", {"what": "reply_texts"}))
        async with housekeeping:
            assert await poll(ran_twice, timeout=10, step=0.02)
            (task,) = tasks() - app_task
        assert task.done()
        assert tasks() == app_task
        events = await events_of(sessionmaker, account)
        assert [e.message for e in events if e.kind == "reply"] == [None]
        assert pruned.delta() == {"texts": 1.0}  # the first run blanked it, the later ones none

    async def _replied(self, maker: Maker) -> uuid.UUID:
        (account,) = await _online(maker, 1)
        writer = StatusWriter(maker)
        writer.event(_reply(account, "said"))
        assert await writer.flush()
        return account

    @pytest.mark.parametrize("days", [-1, 3651])
    def test_a_retention_out_of_range_is_refused(self, tmp_path: Path, days: int) -> None:
        """``TGFLEET_REPLY_TEXT_RETENTION_DAYS`` is 0 to 3650."""
        with pytest.raises(ValidationError, match="reply_text_retention_days"):
            make_settings("sqlite+aiosqlite:///unused.db", tmp_path, reply_text_retention_days=days)
