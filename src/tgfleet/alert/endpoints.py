"""HTTP API for alerting: active alerts, their history, silences, and test notifications.
Every call is audited (reads included: who looked at what is part of an incident's record)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import Field

from tgfleet.alert import service as alert_service
from tgfleet.alert.runtime import send_test_notification
from tgfleet.audit import service as audit_service
from tgfleet.auth.dependencies import Requires, audit_context
from tgfleet.auth.permissions import Permission
from tgfleet.auth.schemas import Principal
from tgfleet.components import AppComponents
from tgfleet.kit.clock import utcnow
from tgfleet.kit.http import DbSession, Meta
from tgfleet.kit.schema import RequestSchema, Schema
from tgfleet.models import Alert as AlertRow
from tgfleet.models import Silence as SilenceRow

router = APIRouter(prefix="/api/v1", tags=["alerts"])

Reader = Annotated[Principal, Requires(Permission.ALERT_READ)]
Writer = Annotated[Principal, Requires(Permission.ALERT_WRITE)]


class AlertRead(Schema):
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    status: str = Field(description="firing, or resolved")
    silenced_by: list[str] = Field(default_factory=list, description="ids of muting silences")
    inhibited: bool = False


class AlertPage(Schema):
    items: list[AlertRead]
    next_cursor: str | None


class NotificationRead(Schema):
    id: int
    group_key: str
    receiver: str
    status: str
    firing: int = Field(description="alerts firing in this notification")
    resolved: int
    sent_at: datetime
    ok: bool
    messages: int
    results: list[dict[str, Any]]


class HistoryRead(Schema):
    alerts: list[AlertRead] = Field(description="resolved alerts, newest first")
    notifications: list[NotificationRead] = Field(description="deliveries, newest first")
    next_cursor: str | None


class MatcherBody(RequestSchema):
    name: str = Field(min_length=1, max_length=100)
    value: str = Field(max_length=1000)
    is_regex: bool = False
    is_equal: bool = True


class SilenceCreate(RequestSchema):
    matchers: list[MatcherBody] = Field(min_length=1, max_length=20)
    starts_at: datetime | None = None
    ends_at: datetime
    comment: str = Field(min_length=1, max_length=1000)


class SilenceRead(Schema):
    id: uuid.UUID
    matchers: list[dict[str, Any]]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    state: str = Field(description="pending, active or expired")


class TestBody(RequestSchema):
    receiver: str = Field(min_length=1, max_length=128)


class DeliveryRead(Schema):
    receiver: str
    integration: str
    ok: bool
    attempts: int
    messages: int
    error: str | None


class TestRead(Schema):
    ok: bool
    results: list[DeliveryRead]


def _alert(row: AlertRow, silenced: list[str] | None = None, inhibited: bool = False) -> AlertRead:
    resolved = row.ends_at is not None and row.ends_at <= utcnow()
    return AlertRead(
        fingerprint=row.fingerprint,
        labels=dict(row.labels),
        annotations=dict(row.annotations),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        status="resolved" if resolved else "firing",
        silenced_by=silenced or [],
        inhibited=inhibited,
    )


def _silence(row: SilenceRow) -> SilenceRead:
    now = utcnow()
    state = "pending" if row.starts_at > now else "active" if row.ends_at > now else "expired"
    return SilenceRead(
        id=row.id,
        matchers=list(row.matchers),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
        created_at=row.created_at,
        state=state,
    )


async def _audit_read(session: DbSession, principal: Principal, meta: Meta, what: str) -> None:
    await audit_service.record(
        session, audit_context(principal, meta), action=f"{what}.read", target="alerting"
    )


@router.get("/alerts", response_model=AlertPage)
async def list_alerts(
    principal: Reader,
    meta: Meta,
    components: AppComponents,
    session: DbSession,
    alertname: str | None = None,
    severity: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertPage:
    """Firing alerts, newest first, with the silences muting each and whether an inhibition
    rule mutes it (as the evaluating process sees it)."""
    page = await alert_service.list_alerts(
        session, active=True, alertname=alertname, severity=severity, cursor=cursor, limit=limit
    )
    runtime = components.alerting
    muting = runtime.muting() if runtime is not None else {}
    await _audit_read(session, principal, meta, "alert")
    return AlertPage(
        items=[_alert(row, *muting.get(row.fingerprint, ([], False))) for row in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/alerts/history", response_model=HistoryRead)
async def alert_history(
    principal: Reader,
    meta: Meta,
    session: DbSession,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> HistoryRead:
    """Resolved alerts (newest first, kept 30 days) and the latest deliveries."""
    page = await alert_service.list_alerts(session, active=False, cursor=cursor, limit=limit)
    sent = await alert_service.notification_history(session, limit=limit)
    await _audit_read(session, principal, meta, "alert.history")
    return HistoryRead(
        alerts=[_alert(row) for row in page.items],
        notifications=[
            NotificationRead(
                id=n.id,
                group_key=n.group_key,
                receiver=n.receiver,
                status=n.status,
                firing=len(n.firing),
                resolved=len(n.resolved),
                sent_at=n.sent_at,
                ok=n.ok,
                messages=n.messages,
                results=list(n.results),
            )
            for n in sent
        ],
        next_cursor=page.next_cursor,
    )


@router.post("/alerts/test", response_model=TestRead)
async def test_notification(
    body: TestBody, principal: Writer, meta: Meta, components: AppComponents, session: DbSession
) -> TestRead:
    """Send a test notification through the named receiver now (bypassing grouping and
    silences) and return what each of its integrations answered."""
    results = await send_test_notification(
        components.alerting, session, audit_context(principal, meta), body.receiver
    )
    ok = bool(results) and all(r.ok for r in results)
    return TestRead(
        ok=ok,
        results=[
            DeliveryRead(
                receiver=r.receiver,
                integration=r.integration,
                ok=r.ok,
                attempts=r.attempts,
                messages=r.messages,
                error=r.error,
            )
            for r in results
        ],
    )


@router.get("/silences", response_model=list[SilenceRead])
async def list_silences(
    principal: Reader, meta: Meta, session: DbSession, include_expired: bool = False
) -> list[SilenceRead]:
    """Pending and active silences (and expired ones with ``include_expired``)."""
    rows = await alert_service.list_silences(session, include_expired=include_expired)
    await _audit_read(session, principal, meta, "silence")
    return [_silence(row) for row in rows]


@router.post("/silences", response_model=SilenceRead, status_code=status.HTTP_201_CREATED)
async def create_silence(
    body: SilenceCreate, principal: Writer, meta: Meta, session: DbSession
) -> SilenceRead:
    """Mute the alerts the matchers match, from ``starts_at`` (default now) to ``ends_at``.
    Matchers that match every alert are refused."""
    row = await alert_service.create_silence(
        session,
        audit_context(principal, meta),
        matchers=[m.model_dump() for m in body.matchers],
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        comment=body.comment,
    )
    return _silence(row)


@router.delete("/silences/{silence_id}", response_model=SilenceRead)
async def expire_silence(
    silence_id: uuid.UUID, principal: Writer, meta: Meta, session: DbSession
) -> SilenceRead:
    """Expire a silence now (it is kept, as expired)."""
    row = await alert_service.expire_silence(session, audit_context(principal, meta), silence_id)
    return _silence(row)
