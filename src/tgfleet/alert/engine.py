"""The dispatcher: Alertmanager's notification pipeline for one process.

Alerts come in (:meth:`Dispatcher.put`), each is routed down the route tree (first matching
child wins unless it says ``continue``), and lands in an aggregation group per (route,
values of the route's ``group_by`` labels). A group is flushed ``group_wait`` after it was
created, then every ``group_interval``. A flush takes the group's alerts, drops the silenced
and the inhibited, and asks the notification log whether the receiver needs to hear about
it (:func:`needs_update`, Alertmanager's dedup stage): something new firing, everything
resolved, a new resolved alert for a ``send_resolved`` receiver, or ``repeat_interval``
elapsed. Then the receiver is called and the log records what it was told.

The log is persisted by the caller (:class:`NotificationLog` is an interface): a restart
rebuilds the groups from the stored alerts, waits ``group_wait`` again and consults the log,
so it neither loses a notification (the alerts were stored before anything was sent) nor
sends one twice (the log says what was sent, and when).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from tgfleet import metrics
from tgfleet.alert.matchers import Matcher
from tgfleet.alert.routing import InhibitRule, Route
from tgfleet.alert.schemas import Alert, DeliveryResult, Notification, Status
from tgfleet.kit.lifecycle import Lifecycle
from tgfleet.logging import get_logger

log = get_logger(__name__)

#: Seconds a stopping dispatcher waits for the flush in progress (delivery and log).
STOP_GRACE: Final = 10.0
#: A resolved alert is kept this long after it resolved (so its notice can go out).
RESOLVED_RETENTION: Final = timedelta(minutes=15)


# ----------------------------------------------------------------------------- routing


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def match_routes(route: Route, labels: Mapping[str, str]) -> list[Route]:
    """The routes an alert with ``labels`` ends at (Alertmanager's ``Route.Match``): the
    first matching child wins unless it says ``continue``; no matching child: this node."""
    if not route.matches(labels):
        return []
    found: list[Route] = []
    for child in route.routes:
        hits = match_routes(child, labels)
        found.extend(hits)
        if hits and not child.continue_:
            break
    return found or [route]


def group_labels(route: Route, labels: Mapping[str, str]) -> dict[str, str]:
    if route.group_by_all:
        return dict(labels)
    return {name: labels[name] for name in route.group_by if name in labels}


def group_key(route: Route, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
    return f"{route.path}:{{{inner}}}"


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str = ""
    comment: str = ""

    def active_at(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        return self.active_at(now) and bool(self.matchers) and matches_all(self.matchers, labels)


# ----------------------------------------------------------------------------- the log


@dataclass(frozen=True, slots=True)
class LogEntry:
    """What one receiver was last told about one group."""

    group_key: str
    receiver: str
    firing: frozenset[str]  # fingerprints
    resolved: frozenset[str]
    sent_at: datetime


class NotificationLog(Protocol):
    async def last(self, group_key: str, receiver: str) -> LogEntry | None: ...

    async def record(self, entry: LogEntry, results: Sequence[DeliveryResult]) -> None: ...


class MemoryLog:
    """The log kept in memory (tests, and the fallback while the database is away)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], LogEntry] = {}

    async def last(self, group_key: str, receiver: str) -> LogEntry | None:
        return self.entries.get((group_key, receiver))

    async def record(self, entry: LogEntry, results: Sequence[DeliveryResult]) -> None:
        del results  # kept by the persisted log only
        self.entries[(entry.group_key, entry.receiver)] = entry


def needs_update(
    entry: LogEntry | None,
    firing: frozenset[str],
    resolved: frozenset[str],
    *,
    send_resolved: bool,
    repeat: timedelta,
    now: datetime,
) -> bool:
    """Alertmanager's dedup decision for one receiver and one group."""
    if entry is None:
        return bool(firing)  # never told: only news of something firing
    if not firing <= entry.firing:
        return True  # something new is firing
    if not firing:
        # Everything resolved: tell a receiver that was told of firing alerts (this also
        # clears the log); alerts that fired and resolved between two flushes stay unsaid.
        return bool(entry.firing)
    if send_resolved and not resolved <= entry.resolved:
        return True
    return entry.sent_at <= now - repeat


# ----------------------------------------------------------------------------- groups


Send = Callable[[str, Notification], Awaitable[Sequence[DeliveryResult]]]


@dataclass
class _Group:
    key: str
    route: Route
    labels: dict[str, str]
    alerts: dict[str, Alert] = field(default_factory=dict)
    next_flush: datetime | None = None
    flushed_once: bool = False


class Dispatcher(Lifecycle):
    """Routes, groups, mutes and flushes alerts. ``send(receiver, notification)`` delivers;
    ``send_resolved(receiver)`` says whether a receiver wants resolved notices."""

    def __init__(
        self,
        route: Route,
        send: Send,
        *,
        log: NotificationLog | None = None,
        inhibit_rules: Sequence[InhibitRule] = (),
        send_resolved: Callable[[str], bool] = lambda _receiver: True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        external_url: str = "",
    ) -> None:
        self.route = route
        self._send = send
        self.log: NotificationLog = log if log is not None else MemoryLog()
        self.inhibit_rules = tuple(inhibit_rules)
        self._send_resolved = send_resolved
        self._now = now
        self.external_url = external_url
        self.alerts: dict[str, Alert] = {}
        self.silences: dict[str, Silence] = {}
        self.groups: dict[str, _Group] = {}
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._index: (
            list[tuple[dict[tuple[str, ...], set[str]], dict[tuple[str, ...], set[str]]]] | None
        ) = None
        self._index_at: datetime | None = None

    # ---- input

    def put(self, alerts: Iterable[Alert]) -> None:
        """Add or update alerts (same labels: the same alert; a newer ``ends_at`` resolves
        it). A resolved alert that no group holds is ignored."""
        now = self._now()
        for incoming in alerts:
            fp = incoming.fingerprint
            known = self.alerts.get(fp)
            still = known is not None and known.status_at(now) == "firing"
            if known is None and incoming.status_at(now) == "resolved":
                continue  # resolved before anyone heard of it
            # An alert keeps the start of its firing spell, whatever the source says.
            starts_at = (known.starts_at if still and known else None) or incoming.starts_at
            alert = replace(incoming, starts_at=starts_at or now)
            self.alerts[fp] = alert
            for route in match_routes(self.route, alert.labels):
                labels = group_labels(route, alert.labels)
                key = group_key(route, labels)
                group = self.groups.get(key)
                if group is None:
                    group = _Group(key=key, route=route, labels=labels)
                    group.next_flush = now + route.group_wait
                    self.groups[key] = group
                group.alerts[fp] = alert
        self._index = None
        self._wake.set()

    def set_silences(self, silences: Iterable[Silence]) -> None:
        self.silences = {s.id: s for s in silences}

    # ---- muting

    def silenced_by(self, labels: Mapping[str, str], now: datetime) -> list[str]:
        return [s.id for s in self.silences.values() if s.mutes(labels, now)]

    def inhibited(self, alert: Alert, now: datetime) -> bool:
        index = self._inhibition_index(now)
        for number, rule in enumerate(self.inhibit_rules):
            if not rule.is_target(alert.labels):
                continue
            key = tuple(alert.labels.get(name, "") for name in rule.equal)
            # An alert that is a source itself is muted only by sources that are not
            # targets too (Alertmanager: no two-sided matches), never by itself.
            one_sided, any_source = index[number]
            pool = one_sided if rule.is_source(alert.labels) else any_source
            if pool.get(key, set()) - {alert.fingerprint}:
                return True
        return False

    def _inhibition_index(
        self, now: datetime
    ) -> list[tuple[dict[tuple[str, ...], set[str]], dict[tuple[str, ...], set[str]]]]:
        """Per rule, the firing sources by their ``equal`` values (built once per instant:
        10,000 alerts are muted in linear time, not quadratic)."""
        if self._index_at == now and self._index is not None:
            return self._index
        index = []
        for rule in self.inhibit_rules:
            one_sided: dict[tuple[str, ...], set[str]] = {}
            any_source: dict[tuple[str, ...], set[str]] = {}
            for source in self.alerts.values():
                if source.status_at(now) != "firing" or not rule.is_source(source.labels):
                    continue
                key = tuple(source.labels.get(name, "") for name in rule.equal)
                any_source.setdefault(key, set()).add(source.fingerprint)
                if not rule.is_target(source.labels):
                    one_sided.setdefault(key, set()).add(source.fingerprint)
            index.append((one_sided, any_source))
        self._index, self._index_at = index, now
        return index

    # ---- flushing

    async def run(self) -> None:
        """Flush groups when their time comes, until cancelled."""
        while True:
            self._wake.clear()
            await self.flush_due()
            delay = self._next_delay()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="alert:dispatcher")

    async def stop(self) -> None:
        """Stop flushing; a flush in progress finishes first (bounded), so a notification
        that went out is also in the log (else the next process would send it again)."""
        task, self._task = self._task, None
        if task is None:
            return
        try:
            async with asyncio.timeout(STOP_GRACE), self._lock:
                task.cancel()
        except TimeoutError:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _next_delay(self) -> float:
        now = self._now()
        due = [g.next_flush for g in self.groups.values() if g.next_flush is not None]
        if not due:
            return 60.0
        return max(0.01, min(0.0 + (d - now).total_seconds() for d in due))

    async def flush_due(self) -> int:
        """Flush every group whose time has come; returns how many notifications went out."""
        async with self._lock:
            now = self._now()
            sent = 0
            for group in list(self.groups.values()):
                if group.next_flush is not None and group.next_flush <= now:
                    sent += await self._flush(group, now)
            self._forget(now)
            return sent

    async def _flush(self, group: _Group, now: datetime) -> int:
        group.next_flush = now + group.route.group_interval
        group.flushed_once = True
        alerts = [
            self.alerts.get(fp, alert)
            for fp, alert in group.alerts.items()
            if not self.silenced_by(alert.labels, now) and not self.inhibited(alert, now)
        ]
        firing = frozenset(a.fingerprint for a in alerts if a.status_at(now) == "firing")
        resolved = frozenset(a.fingerprint for a in alerts if a.status_at(now) == "resolved")
        receiver = group.route.receiver
        entry = await self.log.last(group.key, receiver)
        send_resolved = self._send_resolved(receiver)
        if not needs_update(
            entry,
            firing,
            resolved,
            send_resolved=send_resolved,
            repeat=group.route.repeat_interval,
            now=now,
        ):
            self._drop_resolved(group, now)
            return 0
        shown = [a for a in alerts if send_resolved or a.status_at(now) == "firing"]
        if not shown:  # all resolved, receiver does not want to hear: just clear the log
            await self.log.record(LogEntry(group.key, receiver, firing, resolved, now), [])
            self._drop_resolved(group, now)
            return 0
        notification = _notification(receiver, group, shown, now, self.external_url)
        results = await self._deliver(receiver, notification)
        if results and all(r.ok for r in results):
            await self.log.record(LogEntry(group.key, receiver, firing, resolved, now), results)
            self._drop_resolved(group, now)
            return 1
        # Not delivered: the log is left as it was, so the next flush tries again.
        return 0

    async def _deliver(self, receiver: str, notification: Notification) -> Sequence[DeliveryResult]:
        try:
            return await self._send(receiver, notification)
        except Exception as exc:  # a receiver bug must not stop the dispatcher
            log.exception("alert.delivery_crashed", receiver=receiver, error=type(exc).__name__)
            metrics.ALERT_NOTIFICATIONS.labels(receiver, "failed").inc()
            return [DeliveryResult(ok=False, receiver=receiver, integration="?", error="crashed")]

    def _drop_resolved(self, group: _Group, now: datetime) -> None:
        """After a flush the receiver knows about the resolved alerts: they leave the group;
        an empty group is removed."""
        for fp in [
            fp
            for fp, a in group.alerts.items()
            if self.alerts.get(fp, a).status_at(now) == "resolved"
        ]:
            del group.alerts[fp]
        if not group.alerts:
            self.groups.pop(group.key, None)

    def _forget(self, now: datetime) -> None:
        """Resolved alerts no group holds any more leave memory after a while."""
        held = {fp for g in self.groups.values() for fp in g.alerts}
        for fp, alert in list(self.alerts.items()):
            if fp in held or alert.ends_at is None:
                continue
            if alert.ends_at <= now - RESOLVED_RETENTION:
                del self.alerts[fp]

    async def refresh(self, send: Send, receivers: Iterable[str]) -> int:
        """Send the firing, unmuted alerts of every already-notified group of ``receivers``
        again through ``send`` (an external Alertmanager forgets an alert it has not heard
        of for its ``resolve_timeout``; Prometheus re-sends the same way). Not logged: it
        tells nothing new. Returns how many groups were sent."""
        wanted = set(receivers)
        async with self._lock:
            now = self._now()
            sent = 0
            for group in list(self.groups.values()):
                if group.route.receiver not in wanted or not group.flushed_once:
                    continue
                alerts = [
                    self.alerts.get(fp, a)
                    for fp, a in group.alerts.items()
                    if self.alerts.get(fp, a).status_at(now) == "firing"
                    and not self.silenced_by(a.labels, now)
                    and not self.inhibited(a, now)
                ]
                if not alerts:
                    continue
                notification = _notification(
                    group.route.receiver, group, alerts, now, self.external_url
                )
                with contextlib.suppress(Exception):
                    await send(group.route.receiver, notification)
                    sent += 1
            return sent

    # ---- views

    def active(self) -> list[tuple[Alert, list[str], bool]]:
        """Every firing alert with the silences muting it and whether it is inhibited."""
        now = self._now()
        return [
            (a, self.silenced_by(a.labels, now), self.inhibited(a, now))
            for a in self.alerts.values()
            if a.status_at(now) == "firing"
        ]


def _notification(
    receiver: str, group: _Group, alerts: Sequence[Alert], now: datetime, external_url: str
) -> Notification:
    ordered = sorted(alerts, key=lambda a: (a.status_at(now) != "firing", a.starts_at or now))
    common_labels = _common([a.labels for a in ordered])
    common_annotations = _common([a.annotations for a in ordered])
    status: Status = "firing" if any(a.status_at(now) == "firing" for a in ordered) else "resolved"
    return Notification(
        receiver=receiver,
        group_key=group.key,
        group_labels=dict(group.labels),
        status=status,
        alerts=tuple(ordered),
        common_labels=common_labels,
        common_annotations=common_annotations,
        external_url=external_url,
        at=now,
    )


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = dict(maps[0])
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}
