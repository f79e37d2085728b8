"""The alerts pages' data: the firing alerts grouped as the routing tree groups them, what
mutes each (a silence, an inhibiting alert), the silences, the notification log, and the
silence form's matcher rows. Built from the alert domain's services and its own engine: the
grouping and the muting are the dispatcher's, not a copy of them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.alert import service as alert_service
from tgfleet.alert.config import AlertingConfig, config_from_settings
from tgfleet.alert.config import default_config as default_alerting_config
from tgfleet.alert.engine import Dispatcher
from tgfleet.alert.exceptions import AlertingConfigError
from tgfleet.alert.matchers import MatchType
from tgfleet.alert.routing import InhibitRule
from tgfleet.alert.runtime import AlertingRuntime
from tgfleet.alert.schemas import Alert, DeliveryResult, Notification
from tgfleet.config import Settings
from tgfleet.console.i18n import gettext as _
from tgfleet.exceptions import InvalidInput
from tgfleet.kit.clock import utcnow
from tgfleet.models import Silence as SilenceRow

#: Aggregation groups per page of the firing list.
GROUPS_PER_PAGE: Final = 50
#: Alerts listed per group (the rest are counted).
ALERTS_PER_GROUP: Final = 100
#: Deliveries per page of the notification history.
HISTORY_PAGE: Final = 50
#: Expired silences listed (newest first) under the current ones.
EXPIRED_SHOWN: Final = 50
#: A silence holds at most this many matchers (the API's limit).
MAX_MATCHERS: Final = 20
NAME_MAX: Final = 100
VALUE_MAX: Final = 1000
COMMENT_MAX: Final = 1000
#: The silence form's durations.
DURATIONS: Final[Mapping[str, timedelta]] = {
    "1h": timedelta(hours=1),
    "4h": timedelta(hours=4),
    "1d": timedelta(days=1),
    "1w": timedelta(weeks=1),
}
OPERATORS: Final = tuple(kind.value for kind in MatchType)


# ----------------------------------------------------------------------------- firing


@dataclass(frozen=True, slots=True)
class SilenceRef:
    id: str
    comment: str
    created_by: str
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class FiringAlert:
    alert: Alert
    silenced_by: list[SilenceRef]
    inhibited_by: list[Alert]

    @property
    def muted(self) -> bool:
        return bool(self.silenced_by or self.inhibited_by)


@dataclass(frozen=True, slots=True)
class AlertGroup:
    key: str
    receiver: str
    route: str
    labels: dict[str, str]
    alerts: list[FiringAlert]
    total: int


@dataclass(frozen=True, slots=True)
class FiringPage:
    groups: list[AlertGroup]
    firing: int
    group_count: int
    next_cursor: str | None
    #: Alerting runs in this process (test notifications can be sent from it).
    running: bool
    receivers: list[str] = field(default_factory=list)


async def alerting_config(settings: Settings, runtime: AlertingRuntime | None) -> AlertingConfig:
    """The routing configuration: the running one, else the file the settings name (read off
    the event loop), else the default (one receiver, no grouping)."""
    if runtime is not None:
        return runtime.config
    try:
        return await asyncio.to_thread(config_from_settings, settings)
    except AlertingConfigError:
        return default_alerting_config()


async def _never(receiver: str, notification: Notification) -> Sequence[DeliveryResult]:
    del receiver, notification
    return []


async def firing(
    session: AsyncSession,
    config: AlertingConfig,
    *,
    running: bool,
    cursor: str | None,
) -> FiringPage:
    """Every firing alert in the groups the dispatcher would make of them (a dispatcher that
    never sends, fed the stored alerts and the current silences), groups ordered by key and
    paged after ``cursor`` (a group key)."""
    now = utcnow()
    alerts = await alert_service.firing_alerts(session, now)
    silences = await alert_service.current_silences(session)
    dispatcher = Dispatcher(
        config.root_route, _never, inhibit_rules=config.inhibitions, now=lambda: now
    )
    dispatcher.set_silences(silences)
    dispatcher.put(alerts)
    refs = {
        s.id: SilenceRef(id=s.id, comment=s.comment, created_by=s.created_by, ends_at=s.ends_at)
        for s in silences
    }
    inhibition = Inhibitors(config.inhibitions, alerts)
    keys = sorted(dispatcher.groups)
    start = 0 if not cursor else next((i for i, k in enumerate(keys) if k > cursor), len(keys))
    shown = keys[start : start + GROUPS_PER_PAGE]
    groups = []
    for key in shown:
        group = dispatcher.groups[key]
        members = sorted(group.alerts.values(), key=lambda a: (a.starts_at or now, a.fingerprint))
        rows = [
            FiringAlert(
                alert=alert,
                silenced_by=[refs[i] for i in dispatcher.silenced_by(alert.labels, now)],
                inhibited_by=(inhibition.of(alert) if dispatcher.inhibited(alert, now) else []),
            )
            for alert in members[:ALERTS_PER_GROUP]
        ]
        groups.append(
            AlertGroup(
                key=key,
                receiver=group.route.receiver,
                route=group.route.path,
                labels=dict(group.labels),
                alerts=rows,
                total=len(members),
            )
        )
    more = start + GROUPS_PER_PAGE < len(keys)
    return FiringPage(
        groups=groups,
        firing=len(alerts),
        group_count=len(keys),
        next_cursor=shown[-1] if more and shown else None,
        running=running,
        receivers=[receiver.name for receiver in config.receivers],
    )


#: Inhibiting alerts named per muted alert (the rest are as good an answer).
INHIBITORS_SHOWN: Final = 5


class Inhibitors:
    """Which firing alerts inhibit a target: sources of a rule it is a target of, with the
    rule's ``equal`` labels the same; an alert that is a source itself is inhibited only by
    sources that are not targets (the dispatcher's rule), never by itself. The sources are
    indexed once per rule by their ``equal`` values (as the dispatcher does), so naming them
    for a page of muted alerts is linear, not alerts times alerts."""

    def __init__(self, rules: Sequence[InhibitRule], firing_alerts: Sequence[Alert]) -> None:
        self._rules = rules
        self._firing = firing_alerts
        self._index: list[dict[tuple[str, ...], list[Alert]]] | None = None

    def _sources(self) -> list[dict[tuple[str, ...], list[Alert]]]:
        if self._index is None:
            self._index = []
            for rule in self._rules:
                by_key: dict[tuple[str, ...], list[Alert]] = {}
                for source in self._firing:
                    if rule.is_source(source.labels):
                        key = tuple(source.labels.get(name, "") for name in rule.equal)
                        by_key.setdefault(key, []).append(source)
                self._index.append(by_key)
        return self._index

    def of(self, target: Alert) -> list[Alert]:
        found: dict[str, Alert] = {}
        for rule, by_key in zip(self._rules, self._sources(), strict=True):
            if not rule.is_target(target.labels):
                continue
            two_sided = rule.is_source(target.labels)
            key = tuple(target.labels.get(name, "") for name in rule.equal)
            for source in by_key.get(key, []):
                if source.fingerprint == target.fingerprint or (
                    two_sided and rule.is_target(source.labels)
                ):
                    continue
                found.setdefault(source.fingerprint, source)
                if len(found) >= INHIBITORS_SHOWN:
                    return list(found.values())
        return list(found.values())


# ----------------------------------------------------------------------------- silences


@dataclass(frozen=True, slots=True)
class SilenceItem:
    id: uuid.UUID
    matchers: list[str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    state: str


@dataclass(frozen=True, slots=True)
class SilenceList:
    current: list[SilenceItem]
    expired: list[SilenceItem]
    expired_more: bool


def silence_state(row: SilenceRow, now: datetime) -> str:
    return "pending" if row.starts_at > now else "active" if row.ends_at > now else "expired"


def _item(row: SilenceRow, now: datetime) -> SilenceItem:
    matchers = [str(m) for m in alert_service.parse_matchers(row.matchers)]
    return SilenceItem(
        id=row.id,
        matchers=matchers,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
        state=silence_state(row, now),
    )


async def silences(session: AsyncSession) -> SilenceList:
    """Pending and active silences (soonest start first), then the latest expired ones."""
    now = utcnow()
    rows = await alert_service.list_silences(session, include_expired=True)
    items = [_item(row, now) for row in rows]
    current = sorted((i for i in items if i.state != "expired"), key=lambda i: i.starts_at)
    expired = [i for i in items if i.state == "expired"]
    return SilenceList(
        current=current,
        expired=expired[:EXPIRED_SHOWN],
        expired_more=len(expired) > EXPIRED_SHOWN,
    )


# ----------------------------------------------------------------------------- the form


@dataclass(frozen=True, slots=True)
class MatcherRow:
    name: str = ""
    operator: str = "="
    value: str = ""

    def as_body(self) -> dict[str, object]:
        kind = MatchType(self.operator)
        return {
            "name": self.name.strip(),
            "value": self.value,
            "is_regex": kind in (MatchType.REGEX, MatchType.NOT_REGEX),
            "is_equal": kind in (MatchType.EQUAL, MatchType.REGEX),
        }


@dataclass
class SilenceForm:
    """The silence form as filled in so far, and what is wrong with it (field -> message)."""

    rows: list[MatcherRow]
    duration: str = "1h"
    ends_at: str = ""
    comment: str = ""
    alert: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    durations: tuple[str, ...] = tuple(DURATIONS)
    operators: tuple[str, ...] = OPERATORS


def rows_from_labels(labels: Mapping[str, str]) -> list[MatcherRow]:
    """One ``=`` matcher per label of an alert, ``alertname`` first."""
    names = sorted(labels, key=lambda name: (name != "alertname", name))
    return [MatcherRow(name=name, value=labels[name]) for name in names][:MAX_MATCHERS]


def rows_from_fields(
    names: Sequence[str], operators: Sequence[str], values: Sequence[str]
) -> list[MatcherRow]:
    """The form's matcher rows (parallel lists); an unknown operator reads as ``=``."""
    rows = []
    for index, name in enumerate(names[:MAX_MATCHERS]):
        operator = operators[index] if index < len(operators) else "="
        value = values[index] if index < len(values) else ""
        rows.append(
            MatcherRow(
                name=name[:NAME_MAX],
                operator=operator if operator in OPERATORS else "=",
                value=value[:VALUE_MAX],
            )
        )
    return rows


async def alert_labels(session: AsyncSession, fingerprint: str) -> dict[str, str] | None:
    """The labels of the firing alert with this fingerprint, if one fires."""
    for alert in await alert_service.firing_alerts(session, utcnow()):
        if alert.fingerprint == fingerprint:
            return dict(alert.labels)
    return None


def check(form: SilenceForm, now: datetime) -> tuple[list[dict[str, object]], datetime] | None:
    """The service's matchers and end of a filled-in form, or None with ``form.errors``
    saying what to fix (next to each field)."""
    rows = [row for row in form.rows if row.name.strip() or row.value]
    for index, row in enumerate(rows):
        if not row.name.strip():
            form.errors[f"matcher-{index}"] = _("Name the label this matcher compares.")
    if not rows:
        form.errors["matchers"] = _("A silence needs at least one matcher.")
    if len(rows) > MAX_MATCHERS:
        form.errors["matchers"] = _("A silence holds at most %(n)s matchers.") % {"n": MAX_MATCHERS}
    if not form.comment.strip():
        form.errors["comment"] = _(
            "Say why you silence these alerts: the next person on call will ask."
        )
    ends_at = _end(form, now)
    if form.errors:
        return None
    assert ends_at is not None  # noqa: S101 - _end records an error when it has no end
    form.rows = rows
    return [row.as_body() for row in rows], ends_at


def _end(form: SilenceForm, now: datetime) -> datetime | None:
    if form.duration in DURATIONS:
        return now + DURATIONS[form.duration]
    if form.duration != "custom":
        form.errors["duration"] = _("Choose how long the silence lasts.")
        return None
    try:
        end = datetime.fromisoformat(form.ends_at.strip())
    except ValueError:
        form.errors["ends_at"] = _("Give the end as a date and time (UTC).")
        return None
    if end.tzinfo is None:
        end = end.replace(tzinfo=now.tzinfo)
    if end <= now:
        form.errors["ends_at"] = _("The end is in the past: the silence would never be active.")
        return None
    return end


def refusal_field(error: InvalidInput) -> str:
    """Where the service's refusal belongs on the form."""
    text = error.message
    if text.startswith("matchers") or "matcher" in text:
        return "matchers"
    if "ends_at" in text or "365" in text:
        return "ends_at"
    if "comment" in text:
        return "comment"
    return "matchers"


# ----------------------------------------------------------------------------- history


@dataclass(frozen=True, slots=True)
class Delivery:
    integration: str
    ok: bool
    attempts: int
    messages: int
    error: str | None


@dataclass(frozen=True, slots=True)
class HistoryRow:
    id: int
    sent_at: datetime
    receiver: str
    group_key: str
    status: str
    firing: int
    resolved: int
    ok: bool
    deliveries: list[Delivery]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    rows: list[HistoryRow]
    next_cursor: str | None
    receiver: str
    alertname: str
    receivers: list[str]


async def history(
    session: AsyncSession,
    *,
    receiver: str,
    alertname: str,
    cursor: str | None,
    receivers: list[str],
) -> HistoryPage:
    """The notification log, newest first, ``HISTORY_PAGE`` at a time (the cursor is the
    last id shown); filtered by receiver and by an alert name among the group's labels."""
    before = _before(cursor)
    rows = await alert_service.notification_history(
        session,
        before_id=before,
        limit=HISTORY_PAGE + 1,
        receiver=receiver or None,
        alertname=alertname or None,
    )
    more = len(rows) > HISTORY_PAGE
    rows = rows[:HISTORY_PAGE]
    return HistoryPage(
        rows=[
            HistoryRow(
                id=row.id,
                sent_at=row.sent_at,
                receiver=row.receiver,
                group_key=row.group_key,
                status=row.status,
                firing=len(row.firing),
                resolved=len(row.resolved),
                ok=row.ok,
                deliveries=[
                    Delivery(
                        integration=str(item.get("integration", "?")),
                        ok=bool(item.get("ok")),
                        attempts=int(item.get("attempts") or 1),
                        messages=int(item.get("messages") or 0),
                        error=item.get("error"),
                    )
                    for item in row.results
                ],
            )
            for row in rows
        ],
        next_cursor=str(rows[-1].id) if more and rows else None,
        receiver=receiver,
        alertname=alertname,
        receivers=receivers,
    )


def _before(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        return int(cursor)
    except ValueError as exc:
        raise InvalidInput("the cursor is not one this page made") from exc


def delivery_answer(receiver: str, results: Sequence[DeliveryResult]) -> tuple[str, str]:
    """The test notification's outcome as one sentence, and its tone (ok, bad)."""
    if not results:
        return (
            _(
                "The receiver %(receiver)s has no integrations: nothing was sent. Add "
                "telegram_configs, webhook_configs or alertmanager_configs to it in the "
                "alerting configuration."
            )
            % {"receiver": receiver},
            "bad",
        )
    parts = []
    for result in results:
        if result.ok:
            parts.append(
                _("%(integration)s delivered") % {"integration": result.integration}
                if result.attempts <= 1
                else _("%(integration)s delivered after %(n)s attempts")
                % {"integration": result.integration, "n": result.attempts}
            )
        else:
            parts.append(
                _("%(integration)s failed after %(n)s attempts: %(error)s")
                % {
                    "integration": result.integration,
                    "n": result.attempts,
                    "error": result.error or _("no reason given"),
                }
            )
    ok = all(result.ok for result in results)
    return (
        _("Test notification to %(receiver)s: %(parts)s.")
        % {"receiver": receiver, "parts": "; ".join(parts)},
        "ok" if ok else "bad",
    )
