"""The dispatcher's Alertmanager semantics, on a controlled clock: routing with continue,
grouping, group_wait / group_interval / repeat_interval, resolved notices, silences,
inhibition, and the log that keeps a restart from resending."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from tgfleet.alert.engine import (
    Dispatcher,
    LogEntry,
    MemoryLog,
    Silence,
    match_routes,
    needs_update,
)
from tgfleet.alert.matchers import Matcher, MatchType
from tgfleet.alert.routing import InhibitRule, Route
from tgfleet.alert.schemas import Alert, DeliveryResult, Notification

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Outbox:
    """Records what each receiver was sent; ``fail`` makes deliveries fail."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Notification]] = []
        self.fail = False

    async def __call__(self, receiver: str, notification: Notification) -> Sequence[DeliveryResult]:
        if self.fail:
            return [DeliveryResult(ok=False, receiver=receiver, integration="test", error="down")]
        self.sent.append((receiver, notification))
        return [DeliveryResult(ok=True, receiver=receiver, integration="test", messages=1)]

    def names(self, index: int = -1) -> list[str]:
        return sorted(a.labels.get("account", "") for a in self.sent[index][1].alerts)


def quarantined(
    account: str, *, severity: str = "warning", ends_at: datetime | None = None
) -> Alert:
    return Alert(
        labels={"alertname": "AccountQuarantined", "severity": severity, "account": account},
        annotations={"summary": f"{account} quarantined"},
        ends_at=ends_at,
    )


def route(**overrides: object) -> Route:
    values: dict[str, object] = {
        "receiver": "ops",
        "group_by": ("alertname",),
        "group_by_all": False,
        "group_wait": timedelta(seconds=30),
        "group_interval": timedelta(minutes=5),
        "repeat_interval": timedelta(hours=4),
        "matchers": (),
        "continue_": False,
        "routes": (),
        "path": "route",
    }
    values.update(overrides)
    return Route(**values)  # type: ignore[arg-type]


def eq(name: str, value: str) -> Matcher:
    return Matcher(name, MatchType.EQUAL, value)


def make(clock: Clock, outbox: Outbox, **kwargs: object) -> Dispatcher:
    tree = kwargs.pop("tree", None) or route()
    return Dispatcher(tree, outbox, now=clock, **kwargs)  # type: ignore[arg-type]


class TestMatchers:
    @pytest.mark.parametrize(
        ("matcher", "labels", "expected"),
        [
            (eq("severity", "critical"), {"severity": "critical"}, True),
            (Matcher("severity", MatchType.NOT_EQUAL, "critical"), {"severity": "critical"}, False),
            (Matcher("account", MatchType.REGEX, "fleet_0.*"), {"account": "fleet_0001"}, True),
            # anchored: a regex must match the whole value
            (Matcher("account", MatchType.REGEX, "fleet"), {"account": "fleet_0001"}, False),
            (Matcher("account", MatchType.NOT_REGEX, "x.*"), {"account": "y"}, True),
            (eq("team", ""), {}, True),  # a missing label is the empty string
        ],
    )
    def test_match(self, matcher: Matcher, labels: dict[str, str], expected: bool) -> None:
        assert matcher.matches(labels) is expected


class TestRouting:
    def test_first_matching_child_wins_unless_it_continues(self) -> None:
        critical = (eq("severity", "critical"),)
        tree = route(
            routes=(
                route(receiver="pager", matchers=critical, continue_=True, path="r.0"),
                route(receiver="critical-chat", matchers=critical, path="r.1"),
                route(receiver="never", matchers=critical, path="r.2"),
            )
        )
        hits = match_routes(tree, {"alertname": "X", "severity": "critical"})
        assert [r.receiver for r in hits] == ["pager", "critical-chat"]
        assert [r.receiver for r in match_routes(tree, {"severity": "warning"})] == ["ops"]


class TestDedup:
    def test_needs_update_follows_alertmanager(self) -> None:
        entry = LogEntry("g", "r", frozenset({"a"}), frozenset(), T0)
        later = T0 + timedelta(minutes=10)
        kwargs = {"send_resolved": True, "repeat": timedelta(hours=4), "now": later}
        assert needs_update(None, frozenset({"a"}), frozenset(), **kwargs)  # type: ignore[arg-type]
        assert not needs_update(None, frozenset(), frozenset({"a"}), **kwargs)  # type: ignore[arg-type]
        assert needs_update(entry, frozenset({"a", "b"}), frozenset(), **kwargs)  # type: ignore[arg-type]
        assert not needs_update(entry, frozenset({"a"}), frozenset(), **kwargs)  # type: ignore[arg-type]
        assert needs_update(entry, frozenset(), frozenset({"a"}), **kwargs)  # type: ignore[arg-type]
        assert not needs_update(
            entry,
            frozenset({"a"}),
            frozenset(),
            send_resolved=True,
            repeat=timedelta(minutes=5),
            now=T0 + timedelta(minutes=4),
        )
        assert needs_update(
            entry,
            frozenset({"a"}),
            frozenset(),
            send_resolved=True,
            repeat=timedelta(minutes=5),
            now=T0 + timedelta(minutes=5),
        )


class TestGrouping:
    async def test_fifty_quarantines_within_group_wait_make_one_notification(self) -> None:
        clock, outbox = Clock(), Outbox()
        dispatcher = make(clock, outbox)
        for i in range(50):
            dispatcher.put([quarantined(f"acc{i:02d}")])
            clock.advance(0.5)  # 25 s: all inside the 30 s group wait
        assert await dispatcher.flush_due() == 0
        clock.advance(5)
        assert await dispatcher.flush_due() == 1
        assert len(outbox.sent) == 1
        assert len(outbox.sent[0][1].alerts) == 50
        assert outbox.sent[0][1].status == "firing"
        assert outbox.sent[0][1].group_labels == {"alertname": "AccountQuarantined"}

    async def test_nothing_repeats_before_repeat_interval_and_news_waits_for_group_interval(
        self,
    ) -> None:
        clock, outbox = Clock(), Outbox()
        dispatcher = make(clock, outbox)
        dispatcher.put([quarantined("a")])
        clock.advance(30)
        await dispatcher.flush_due()
        for _ in range(47):  # every group interval for almost 4 hours: unchanged, so quiet
            clock.advance(300)
            dispatcher.put([quarantined("a")])  # the source re-asserts it
            await dispatcher.flush_due()
        assert len(outbox.sent) == 1
        clock.advance(300)  # 4 h since the first notification
        await dispatcher.flush_due()
        assert len(outbox.sent) == 2
        dispatcher.put([quarantined("b")])  # news: waits for the next group interval
        clock.advance(60)
        await dispatcher.flush_due()
        assert len(outbox.sent) == 2
        clock.advance(240)
        await dispatcher.flush_due()
        assert len(outbox.sent) == 3
        assert outbox.names() == ["a", "b"]

    async def test_a_resolved_notice_follows_recovery(self) -> None:
        clock, outbox = Clock(), Outbox()
        dispatcher = make(clock, outbox)
        dispatcher.put([quarantined("a"), quarantined("b")])
        clock.advance(30)
        await dispatcher.flush_due()
        dispatcher.put([quarantined("a", ends_at=clock.now)])
        clock.advance(300)
        await dispatcher.flush_due()
        second = outbox.sent[-1][1]
        statuses = {a.labels["account"]: a.status_at(clock.now) for a in second.alerts}
        assert statuses == {"a": "resolved", "b": "firing"}
        assert second.status == "firing"
        dispatcher.put([quarantined("b", ends_at=clock.now)])
        clock.advance(300)
        await dispatcher.flush_due()
        assert outbox.sent[-1][1].status == "resolved"
        assert len(outbox.sent) == 3
        assert not dispatcher.groups  # everything told: the group is gone
        clock.advance(3600)
        await dispatcher.flush_due()
        assert len(outbox.sent) == 3

    async def test_an_alert_that_resolves_inside_group_wait_sends_nothing(self) -> None:
        clock, outbox = Clock(), Outbox()
        dispatcher = make(clock, outbox)
        dispatcher.put([quarantined("a")])
        clock.advance(10)
        dispatcher.put([quarantined("a", ends_at=clock.now)])
        clock.advance(30)
        await dispatcher.flush_due()
        assert outbox.sent == []

    async def test_without_send_resolved_the_recovery_is_silent(self) -> None:
        clock, outbox = Clock(), Outbox()
        dispatcher = make(clock, outbox, send_resolved=lambda _r: False)
        dispatcher.put([quarantined("a")])
        clock.advance(30)
        await dispatcher.flush_due()
        dispatcher.put([quarantined("a", ends_at=clock.now)])
        clock.advance(300)
        await dispatcher.flush_due()
        assert len(outbox.sent) == 1

    async def test_a_failed_delivery_is_retried_at_the_next_interval(self) -> None:
        clock, outbox = Clock(), Outbox()
        dispatcher = make(clock, outbox)
        outbox.fail = True
        dispatcher.put([quarantined("a")])
        clock.advance(30)
        await dispatcher.flush_due()
        outbox.fail = False
        clock.advance(300)
        await dispatcher.flush_due()
        assert len(outbox.sent) == 1


class TestMuting:
    async def test_a_silence_suppresses_until_it_ends(self) -> None:
        clock, outbox = Clock(), Outbox()
        dispatcher = make(clock, outbox)
        dispatcher.set_silences(
            [
                Silence(
                    id="s1",
                    matchers=(eq("account", "a"),),
                    starts_at=T0,
                    ends_at=T0 + timedelta(minutes=10),
                    created_by="alice",
                    comment="maintenance",
                )
            ]
        )
        dispatcher.put([quarantined("a"), quarantined("b")])
        clock.advance(30)
        await dispatcher.flush_due()
        assert outbox.names() == ["b"]
        clock.advance(600)  # the silence is over: "a" is news
        await dispatcher.flush_due()
        assert outbox.names() == ["a", "b"]

    async def test_a_critical_fleet_alert_inhibits_account_warnings_with_equal_labels(
        self,
    ) -> None:
        clock, outbox = Clock(), Outbox()
        rule = InhibitRule(
            source_matchers=(eq("severity", "critical"),),
            target_matchers=(eq("severity", "warning"),),
            equal=("namespace",),
            path="inhibit_rules[0]",
        )
        dispatcher = make(clock, outbox, inhibit_rules=[rule], tree=route(group_by_all=True))
        fleet_down = Alert(
            labels={"alertname": "FleetOnlineRatioLow", "severity": "critical", "namespace": "a"}
        )
        same = Alert(labels={**quarantined("x").labels, "namespace": "a"})
        other = Alert(labels={**quarantined("y").labels, "namespace": "b"})
        dispatcher.put([fleet_down, same, other])
        clock.advance(30)
        await dispatcher.flush_due()
        told = sorted(
            n.alerts[0].labels["alertname"] + n.alerts[0].labels.get("account", "")
            for _, n in outbox.sent
        )
        assert told == ["AccountQuarantinedy", "FleetOnlineRatioLow"]


class TestRestart:
    async def test_a_restart_with_the_same_log_neither_loses_nor_resends(self) -> None:
        clock, outbox, log = Clock(), Outbox(), MemoryLog()
        first = make(clock, outbox, log=log)
        first.put([quarantined("a")])
        clock.advance(30)
        await first.flush_due()
        assert len(outbox.sent) == 1
        # A new process: the same alerts (re-asserted by the sources), the same log.
        second = make(clock, outbox, log=log)
        second.put([quarantined("a")])
        clock.advance(30)
        await second.flush_due()
        assert len(outbox.sent) == 1  # told already, within repeat_interval
        second.put([quarantined("b")])  # news arrives after the restart: it goes out
        clock.advance(300)
        await second.flush_due()
        assert len(outbox.sent) == 2
        assert outbox.names() == ["a", "b"]


class TestRefresh:
    async def test_refresh_resends_firing_unmuted_alerts_of_notified_groups_only(self) -> None:
        """What an external Alertmanager needs to keep alerts alive: the firing, unmuted
        alerts of groups already notified, again; the log is not touched."""
        clock, outbox = Clock(), Outbox()
        dispatcher = make(clock, outbox)
        dispatcher.put([quarantined("a"), quarantined("b")])
        assert await dispatcher.refresh(outbox, ["ops"]) == 0  # not notified yet
        clock.advance(30)
        await dispatcher.flush_due()
        entry = await dispatcher.log.last(next(iter(dispatcher.groups)), "ops")
        dispatcher.put([quarantined("b", ends_at=clock.now)])
        dispatcher.set_silences([Silence("s", (eq("account", "a"),), T0, T0 + timedelta(days=1))])
        dispatcher.put([quarantined("c")])
        clock.advance(1)
        assert await dispatcher.refresh(outbox, ["ops"]) == 1
        assert outbox.names() == ["c"]  # a silenced, b resolved
        assert await dispatcher.refresh(outbox, ["other"]) == 0
        assert await dispatcher.log.last(next(iter(dispatcher.groups)), "ops") == entry
