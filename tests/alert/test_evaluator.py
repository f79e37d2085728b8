"""The evaluator on a real database: account and fleet conditions become alerts, stored
before they are sent; silences from the service mute them; a restart with the database log
neither loses nor resends; on PostgreSQL exactly one evaluator leads."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.factories import make_fleet, report_states
from tgfleet.alert import service as alert_service
from tgfleet.alert.engine import Dispatcher
from tgfleet.alert.evaluator import Evaluator, Thresholds
from tgfleet.alert.routing import Route
from tgfleet.alert.schemas import DeliveryResult, Notification
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AccountState
from tgfleet.models import Alert as AlertRow

pytestmark = pytest.mark.timeout(60)

CONTEXT = AuditContext(actor="test")
FAST = Route(
    receiver="ops",
    group_by=("alertname",),
    group_by_all=False,
    group_wait=timedelta(seconds=0.3),
    group_interval=timedelta(seconds=1),
    repeat_interval=timedelta(hours=4),
    matchers=(),
    continue_=False,
    routes=(),
    path="route",
)


class Outbox:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def __call__(self, receiver: str, notification: Notification) -> Sequence[DeliveryResult]:
        self.sent.append(notification)
        return [DeliveryResult(ok=True, receiver=receiver, integration="test", messages=1)]


def _evaluator(
    maker: async_sessionmaker[AsyncSession], outbox: Outbox, engine: AsyncEngine | None = None
) -> Evaluator:
    dispatcher = Dispatcher(FAST, outbox, log=alert_service.DatabaseLog(maker))
    return Evaluator(
        maker,
        dispatcher,
        interval=0.1,
        thresholds=Thresholds(online_ratio=0.0),
        engine=engine,
    )


async def _until(predicate: object, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - polls state
            await asyncio.sleep(0.05)


async def test_fifty_quarantines_make_one_notification_then_a_resolved_one(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await make_fleet(sessionmaker, 50)
    outbox = Outbox()
    async with _evaluator(sessionmaker, outbox):
        await report_states(sessionmaker, ids, AccountState.QUARANTINED, reason="session_revoked")
        await _until(lambda: len(outbox.sent) >= 1)
        await asyncio.sleep(1.5)  # more evaluations and group intervals: nothing new to say
        assert len(outbox.sent) == 1
        first = outbox.sent[0]
        assert len(first.alerts) == 50
        assert {a.labels["alertname"] for a in first.alerts} == {"AccountQuarantined"}
        assert {a.labels["reason"] for a in first.alerts} == {"session_revoked"}
        async with unit_of_work(sessionmaker, read_only=True) as session:
            stored = await session.scalar(select(func.count()).select_from(AlertRow))
        assert stored == 50
        await report_states(sessionmaker, ids, AccountState.STOPPED, reason="operator")
        await _until(lambda: len(outbox.sent) >= 2)
        assert outbox.sent[1].status == "resolved"
        assert len(outbox.sent[1].alerts) == 50


async def test_a_restart_neither_loses_nor_resends(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await make_fleet(sessionmaker, 3)
    await report_states(sessionmaker, ids[:2], AccountState.QUARANTINED, reason="banned")
    outbox = Outbox()
    async with _evaluator(sessionmaker, outbox):
        await _until(lambda: len(outbox.sent) >= 1)
    assert {a.labels["alertname"] for a in outbox.sent[0].alerts} == {"AccountBanned"}
    # A new process: the same database (alerts and the notification log).
    async with _evaluator(sessionmaker, outbox):
        await asyncio.sleep(1.5)
        assert len(outbox.sent) == 1  # told already
        await report_states(sessionmaker, ids[2:], AccountState.QUARANTINED, reason="banned")
        await _until(lambda: len(outbox.sent) >= 2)
        assert len(outbox.sent[1].alerts) == 3  # the new one, with the two still firing


async def test_a_silence_mutes_matching_alerts(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await make_fleet(sessionmaker, 2)
    async with unit_of_work(sessionmaker) as session:
        await alert_service.create_silence(
            session,
            CONTEXT,
            matchers=[{"name": "account", "value": "acc000"}],
            starts_at=None,
            ends_at=utcnow() + timedelta(hours=1),
            comment="known: replacing this session",
        )
    outbox = Outbox()
    async with _evaluator(sessionmaker, outbox):
        await report_states(sessionmaker, ids, AccountState.QUARANTINED, reason="session_revoked")
        await _until(lambda: len(outbox.sent) >= 1)
        await asyncio.sleep(0.5)
        assert [a.labels["account"] for n in outbox.sent for a in n.alerts] == ["acc001"]


@pytest.mark.parametrize(
    ("matchers", "message"),
    [
        ([], "at least one matcher"),
        ([{"name": "account", "value": ".*", "is_regex": True}], "match every alert"),
        ([{"name": "account", "value": "(", "is_regex": True}], "regular expression"),
    ],
)
async def test_a_bad_silence_is_refused_with_a_reason(
    sessionmaker: async_sessionmaker[AsyncSession], matchers: list[dict[str, object]], message: str
) -> None:
    async with unit_of_work(sessionmaker) as session:
        with pytest.raises(alert_service.InvalidSilence, match=message):
            await alert_service.create_silence(
                session,
                CONTEXT,
                matchers=matchers,
                starts_at=None,
                ends_at=utcnow() + timedelta(hours=1),
                comment="x",
            )


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_exactly_one_evaluator_leads_and_another_takes_over(
    sessionmaker: async_sessionmaker[AsyncSession], db_url: str
) -> None:
    from tgfleet.kit.db import create_engine, create_sessionmaker

    engines = [create_engine(db_url, pool_size=2, max_overflow=1) for _ in range(2)]
    outboxes = [Outbox(), Outbox()]
    evaluators = [
        _evaluator(create_sessionmaker(engine), outbox, engine)
        for engine, outbox in zip(engines, outboxes, strict=True)
    ]
    try:
        for evaluator in evaluators:
            evaluator.start()
        await _until(lambda: any(e.leader for e in evaluators))
        await asyncio.sleep(0.5)
        assert sum(e.leader for e in evaluators) == 1
        leader = next(e for e in evaluators if e.leader)
        other = next(e for e in evaluators if not e.leader)
        await leader.stop()  # its lock connection closes, as when the process dies
        await _until(lambda: other.leader, within=15)
        assert not leader.leader or leader._task is None
    finally:
        for evaluator in evaluators:
            await evaluator.stop()
        for engine in engines:
            await engine.dispose()


class TestFleetOnlineRatioGrace:
    """``FleetOnlineRatioLow`` waits ``online_ratio_for`` before it fires (a rule's ``for``),
    driven by the evaluation's ``now`` on a real database."""

    HOLD = 60.0

    def _evaluator(self, maker: async_sessionmaker[AsyncSession], outbox: Outbox) -> Evaluator:
        dispatcher = Dispatcher(FAST, outbox, log=alert_service.DatabaseLog(maker))
        thresholds = Thresholds(online_ratio=0.9, online_ratio_for=self.HOLD)
        return Evaluator(maker, dispatcher, interval=0.1, thresholds=thresholds)

    @staticmethod
    def _low(firing: Sequence[object]) -> bool:
        return any(getattr(a, "name", "") == "FleetOnlineRatioLow" for a in firing)

    async def test_accounts_connecting_at_start_fire_nothing(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """At start every account is still connecting (ratio 0): nothing fires within the
        grace, and once they are online before it ends nothing ever did (it fired at every
        start)."""
        ids = await make_fleet(sessionmaker, 10)
        await report_states(sessionmaker, ids, AccountState.STARTING, reason="start")
        evaluator = self._evaluator(sessionmaker, Outbox())
        start = utcnow()
        try:
            for seconds in (0.0, 2.0, self.HOLD / 2, self.HOLD - 1):
                firing = await evaluator.evaluate(start + timedelta(seconds=seconds))
                assert not self._low(firing), seconds
            await report_states(sessionmaker, ids, AccountState.ONLINE, reason="connected")
            for seconds in (self.HOLD, self.HOLD * 3):
                assert not self._low(await evaluator.evaluate(start + timedelta(seconds=seconds)))
            async with unit_of_work(sessionmaker, read_only=True) as session:
                stored = await session.scalar(select(func.count()).select_from(AlertRow))
            assert stored == 0
        finally:
            await evaluator.stop()

    async def test_a_low_ratio_that_lasts_fires_after_the_grace(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Accounts that stay down past the grace fire the alert (and it is stored); a
        ratio that recovers resolves it, and a new dip waits the whole grace again."""
        ids = await make_fleet(sessionmaker, 10)
        await report_states(sessionmaker, ids[:8], AccountState.ONLINE, reason="connected")
        await report_states(
            sessionmaker, ids[8:], AccountState.ERROR, reason="auth_key_unregistered"
        )
        evaluator = self._evaluator(sessionmaker, Outbox())
        start = utcnow()
        try:
            assert not self._low(await evaluator.evaluate(start))
            firing = await evaluator.evaluate(start + timedelta(seconds=self.HOLD))
            assert self._low(firing)
            async with unit_of_work(sessionmaker, read_only=True) as session:
                stored = await alert_service.firing_alerts(session, utcnow())
            assert [a.name for a in stored] == ["FleetOnlineRatioLow"]
            await report_states(sessionmaker, ids[8:], AccountState.ONLINE, reason="connected")
            assert not self._low(await evaluator.evaluate(start + timedelta(seconds=self.HOLD + 1)))
            await report_states(
                sessionmaker, ids[8:], AccountState.ERROR, reason="auth_key_unregistered"
            )
            again = start + timedelta(seconds=self.HOLD + 2)
            assert not self._low(await evaluator.evaluate(again))
            assert self._low(await evaluator.evaluate(again + timedelta(seconds=self.HOLD)))
        finally:
            await evaluator.stop()
