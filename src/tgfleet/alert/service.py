"""Alerting's services: stored alerts, silences (audited), and the persisted notification
log the dispatcher consults (:class:`DatabaseLog`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.alert.engine import LogEntry, Silence
from tgfleet.alert.matchers import Matcher, MatchType
from tgfleet.alert.repository import AlertRepository, NotificationRepository, SilenceRepository
from tgfleet.alert.schemas import Alert, DeliveryResult
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.exceptions import InvalidInput, NotFound
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.models import Alert as AlertRow
from tgfleet.models import Notification as NotificationRow
from tgfleet.models import Silence as SilenceRow

#: Resolved alerts are kept this long for the history, then pruned.
HISTORY_RETENTION = timedelta(days=30)
MAX_SILENCE = timedelta(days=365)


class SilenceNotFound(NotFound):
    code = "silence_not_found"


class InvalidSilence(InvalidInput):
    code = "invalid_silence"


# ----------------------------------------------------------------------------- alerts


def to_alert(row: AlertRow) -> Alert:
    return Alert(
        labels=dict(row.labels),
        annotations=dict(row.annotations),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
    )


async def store_alerts(session: AsyncSession, alerts: Sequence[Alert], now: datetime) -> int:
    """Insert or update these alerts (by fingerprint); returns how many rows changed."""
    if not alerts:
        return 0
    repository = AlertRepository(session)
    known = await repository.by_fingerprints([a.fingerprint for a in alerts])
    changed = 0
    for alert in alerts:
        row = known.get(alert.fingerprint)
        starts_at = alert.starts_at or now
        if row is None:
            session.add(
                AlertRow(
                    fingerprint=alert.fingerprint,
                    alertname=alert.name[:128],
                    severity=alert.labels.get("severity", "")[:32],
                    labels=dict(alert.labels),
                    annotations=dict(alert.annotations),
                    starts_at=starts_at,
                    ends_at=alert.ends_at,
                    updated_at=now,
                    details={},
                )
            )
            changed += 1
            continue
        if (
            row.ends_at != alert.ends_at
            or row.annotations != dict(alert.annotations)
            or row.starts_at != starts_at
        ):
            row.ends_at = alert.ends_at
            row.annotations = dict(alert.annotations)
            row.starts_at = starts_at
            row.updated_at = now
            changed += 1
    await session.flush()
    return changed


async def firing_alerts(session: AsyncSession, now: datetime) -> list[Alert]:
    return [to_alert(row) for row in await AlertRepository(session).firing(now)]


async def first_firing(session: AsyncSession, now: datetime, limit: int) -> tuple[list[Alert], int]:
    """The first ``limit`` firing alerts by severity then name, and how many are firing:
    a page listing a few reads a few, however many fire (a mass quarantine fires one per
    account)."""
    rows, total = await AlertRepository(session).firing_first(now, limit)
    return [to_alert(row) for row in rows], total


async def prune(session: AsyncSession, now: datetime) -> int:
    return await AlertRepository(session).prune_resolved(now - HISTORY_RETENTION)


@dataclass(frozen=True, slots=True)
class AlertPage:
    items: list[AlertRow]
    next_cursor: str | None


async def list_alerts(
    session: AsyncSession,
    *,
    active: bool,
    alertname: str | None = None,
    severity: str | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> AlertPage:
    """Firing (``active``) or resolved alerts, newest start first, keyset-paged."""
    before = _decode(cursor)
    rows = await AlertRepository(session).listing(
        now=utcnow(),
        active=active,
        alertname=alertname,
        severity=severity,
        before=before,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = f"{rows[-1].starts_at.isoformat()}|{rows[-1].fingerprint}" if more else None
    return AlertPage(rows, next_cursor)


def _decode(cursor: str | None) -> tuple[datetime, str] | None:
    if not cursor:
        return None
    stamp, _, fingerprint = cursor.partition("|")
    try:
        return datetime.fromisoformat(stamp), fingerprint
    except ValueError as exc:
        raise InvalidInput("the cursor is not one this API returned") from exc


async def notification_history(
    session: AsyncSession,
    *,
    before_id: int | None = None,
    limit: int = 100,
    receiver: str | None = None,
    alertname: str | None = None,
) -> list[NotificationRow]:
    """Deliveries, newest first (ids below ``before_id``); only ``receiver``'s, only the
    groups whose labels hold ``alertname`` (a route that groups by ``alertname``: its
    notifications carry it in their group key)."""
    return await NotificationRepository(session).page(
        before_id=before_id,
        limit=limit,
        receiver=receiver,
        group_label=None if alertname is None else f'alertname="{alertname}"',
    )


# ----------------------------------------------------------------------------- the log


class DatabaseLog:
    """The notification log in the database (one row per delivery attempt)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def last(self, group_key: str, receiver: str) -> LogEntry | None:
        async with unit_of_work(self._sessionmaker, read_only=True) as session:
            row = await NotificationRepository(session).last_ok(group_key, receiver)
        if row is None:
            return None
        return LogEntry(
            group_key=row.group_key,
            receiver=row.receiver,
            firing=frozenset(row.firing),
            resolved=frozenset(row.resolved),
            sent_at=row.sent_at,
        )

    async def record(self, entry: LogEntry, results: Sequence[DeliveryResult]) -> None:
        async with unit_of_work(self._sessionmaker) as session:
            session.add(
                NotificationRow(
                    group_key=entry.group_key[:1000],
                    receiver=entry.receiver,
                    status="firing" if entry.firing else "resolved",
                    firing=sorted(entry.firing),
                    resolved=sorted(entry.resolved),
                    sent_at=entry.sent_at,
                    ok=all(r.ok for r in results),
                    messages=sum(r.messages for r in results),
                    results=[_result(r) for r in results],
                )
            )


def _result(result: DeliveryResult) -> dict[str, Any]:
    return {
        "integration": result.integration,
        "ok": result.ok,
        "attempts": result.attempts,
        "messages": result.messages,
        "error": result.error,
    }


# ----------------------------------------------------------------------------- silences


def parse_matchers(raw: Iterable[Mapping[str, Any]]) -> tuple[Matcher, ...]:
    matchers: list[Matcher] = []
    for index, item in enumerate(raw):
        name = str(item.get("name", "")).strip()
        if not name:
            raise InvalidSilence(f"matchers[{index}]: a label name is required")
        regex, equal = bool(item.get("is_regex", False)), bool(item.get("is_equal", True))
        kind = {
            (False, True): MatchType.EQUAL,
            (False, False): MatchType.NOT_EQUAL,
            (True, True): MatchType.REGEX,
            (True, False): MatchType.NOT_REGEX,
        }[(regex, equal)]
        try:
            matchers.append(Matcher(name=name, type=kind, value=str(item.get("value", ""))))
        except ValueError as exc:  # a bad regular expression
            raise InvalidSilence(f"matchers[{index}]: not a valid regular expression") from exc
    if not matchers:
        raise InvalidSilence("a silence needs at least one matcher")
    if all(m.matches({}) for m in matchers):
        raise InvalidSilence("these matchers match every alert: name at least one label value")
    return tuple(matchers)


def to_silence(row: SilenceRow) -> Silence:
    return Silence(
        id=str(row.id),
        matchers=parse_matchers(row.matchers),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
    )


async def create_silence(
    session: AsyncSession,
    context: AuditContext,
    *,
    matchers: Sequence[Mapping[str, Any]],
    starts_at: datetime | None,
    ends_at: datetime,
    comment: str,
) -> SilenceRow:
    now = utcnow()
    parsed = parse_matchers(matchers)
    start = starts_at or now
    if ends_at <= start:
        raise InvalidSilence("ends_at must be after starts_at")
    if ends_at <= now:
        raise InvalidSilence("ends_at is in the past: the silence would never be active")
    if ends_at - start > MAX_SILENCE:
        raise InvalidSilence("a silence lasts at most 365 days")
    if not comment.strip():
        raise InvalidSilence("say why (comment): the next person on call will ask")
    row = SilenceRow(
        id=uuid.uuid4(),
        matchers=[
            {"name": m.name, "value": m.value, "is_regex": m.is_regex, "is_equal": m.is_equal}
            for m in parsed
        ],
        starts_at=start,
        ends_at=ends_at,
        created_by=context.actor[:128],
        comment=comment.strip()[:1000],
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    await audit_service.record(
        session,
        context,
        action="silence.create",
        target=f"silence:{row.id}",
        details={
            "matchers": [str(m) for m in parsed],
            "starts_at": start.isoformat(),
            "ends_at": ends_at.isoformat(),
        },
    )
    return row


async def list_silences(
    session: AsyncSession, *, include_expired: bool = False
) -> list[SilenceRow]:
    return await SilenceRepository(session).listing(
        include_expired=include_expired, now=utcnow(), limit=1000
    )


async def current_silences(session: AsyncSession) -> list[Silence]:
    return [to_silence(row) for row in await SilenceRepository(session).current(utcnow())]


async def expire_silence(
    session: AsyncSession, context: AuditContext, silence_id: uuid.UUID
) -> SilenceRow:
    row = await SilenceRepository(session).by_id(silence_id)
    if row is None:
        raise SilenceNotFound(f"no silence {silence_id}")
    now = utcnow()
    if row.ends_at > now:
        row.ends_at = max(now, row.starts_at)
        row.updated_at = now
        await session.flush()
    await audit_service.record(
        session, context, action="silence.expire", target=f"silence:{row.id}", details={}
    )
    return row
