"""Queries of the alerting domain: stored alerts, silences, the notification log, and the
reads the evaluator makes of the fleet's state."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, tuple_

from tgfleet.kit.repository import RepositoryBase
from tgfleet.models import Alert, Notification, Silence


class AlertRepository(RepositoryBase[Alert]):
    model = Alert

    async def by_fingerprints(self, fingerprints: Collection[str]) -> dict[str, Alert]:
        found: dict[str, Alert] = {}
        items = list(fingerprints)
        for start in range(0, len(items), 1000):
            rows = await self.all(
                select(Alert).where(Alert.fingerprint.in_(items[start : start + 1000]))
            )
            found.update({row.fingerprint: row for row in rows})
        return found

    async def firing(self, now: datetime) -> list[Alert]:
        return await self.all(select(Alert).where(_firing(now)))

    async def firing_first(self, now: datetime, limit: int) -> tuple[list[Alert], int]:
        """The first ``limit`` firing alerts by severity then name (the fingerprint
        breaking ties), and how many are firing."""
        rows = await self.all(
            select(Alert)
            .where(_firing(now))
            .order_by(Alert.severity, Alert.alertname, Alert.fingerprint)
            .limit(limit)
        )
        total = await self.session.scalar(
            select(func.count()).select_from(Alert).where(_firing(now))
        )
        return rows, int(total or 0)

    async def listing(
        self,
        *,
        now: datetime,
        active: bool,
        alertname: str | None,
        severity: str | None,
        before: tuple[datetime, str] | None,
        limit: int,
    ) -> list[Alert]:
        statement = select(Alert)
        if active:
            statement = statement.where(or_(Alert.ends_at.is_(None), Alert.ends_at > now))
        else:
            statement = statement.where(Alert.ends_at.is_not(None), Alert.ends_at <= now)
        if alertname is not None:
            statement = statement.where(Alert.alertname == alertname)
        if severity is not None:
            statement = statement.where(Alert.severity == severity)
        if before is not None:
            statement = statement.where(
                tuple_(Alert.starts_at, Alert.fingerprint) < tuple_(before[0], before[1])
            )
        statement = statement.order_by(Alert.starts_at.desc(), Alert.fingerprint.desc())
        return await self.all(statement.limit(limit))

    async def prune_resolved(self, before: datetime) -> int:
        result: Any = await self.session.execute(
            delete(Alert).where(Alert.ends_at.is_not(None), Alert.ends_at < before)
        )
        return int(result.rowcount or 0)


class SilenceRepository(RepositoryBase[Silence]):
    model = Silence

    async def current(self, now: datetime) -> list[Silence]:
        """Active and pending silences (not yet ended)."""
        return await self.all(
            select(Silence).where(Silence.ends_at > now).order_by(Silence.starts_at)
        )

    async def listing(self, *, include_expired: bool, now: datetime, limit: int) -> list[Silence]:
        statement = select(Silence)
        if not include_expired:
            statement = statement.where(Silence.ends_at > now)
        return await self.all(statement.order_by(Silence.created_at.desc()).limit(limit))

    async def by_id(self, silence_id: uuid.UUID) -> Silence | None:
        return await self.session.get(Silence, silence_id)


class NotificationRepository(RepositoryBase[Notification]):
    model = Notification

    async def last_ok(self, group_key: str, receiver: str) -> Notification | None:
        statement = (
            select(Notification)
            .where(
                Notification.group_key == group_key,
                Notification.receiver == receiver,
                Notification.ok.is_(True),
            )
            .order_by(Notification.id.desc())
            .limit(1)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def page(
        self,
        *,
        before_id: int | None,
        limit: int,
        receiver: str | None = None,
        group_label: str | None = None,
    ) -> list[Notification]:
        statement = select(Notification)
        if before_id is not None:
            statement = statement.where(Notification.id < before_id)
        if receiver is not None:
            statement = statement.where(Notification.receiver == receiver)
        if group_label is not None:
            statement = statement.where(
                Notification.group_key.contains(group_label, autoescape=True)
            )
        return await self.all(statement.order_by(Notification.id.desc()).limit(limit))


def _firing(now: datetime) -> Any:
    return or_(Alert.ends_at.is_(None), Alert.ends_at > now)
