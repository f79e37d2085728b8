"""A notification as one integration sends it: each alert's status judged once, resolved
alerts left out unless the integration sends them, the common labels of those that remain."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from tgfleet.alert.schemas import Alert, Notification, Status


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def alert_status(alert: Alert, now: datetime) -> Status:
    if alert.ends_at is not None and as_utc(alert.ends_at) <= now:
        return "resolved"
    return "firing"


@dataclass(frozen=True, slots=True)
class Prepared:
    """The part of a notification one integration sends, each alert's status judged once."""

    notification: Notification
    now: datetime
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]

    @property
    def status(self) -> Status:
        return "firing" if self.firing else "resolved"

    @property
    def alerts(self) -> tuple[Alert, ...]:
        return self.firing + self.resolved

    def status_of(self, alert: Alert) -> Status:
        return alert_status(alert, self.now)


def prepare(notification: Notification, *, send_resolved: bool) -> Prepared | None:
    """Firing alerts first, resolved ones only with ``send_resolved``; None: nothing to send.

    Alerts are judged at ``notification.at`` (else now). Without ``send_resolved`` the
    resolved alerts are left out, as Alertmanager does, and the common labels and
    annotations are those of the alerts that remain.
    """
    now = as_utc(notification.at) if notification.at is not None else datetime.now(UTC)
    firing = tuple(a for a in notification.alerts if alert_status(a, now) == "firing")
    resolved = tuple(a for a in notification.alerts if alert_status(a, now) == "resolved")
    if not send_resolved:
        resolved = ()
    if not firing and not resolved:
        return None
    if len(firing) + len(resolved) == len(notification.alerts):
        labels, annotations = notification.common_labels, notification.common_annotations
    else:
        kept = firing + resolved
        labels = _common(a.labels for a in kept)
        annotations = _common(a.annotations for a in kept)
    return Prepared(notification, now, firing, resolved, labels, annotations)


def _common(mappings: Iterable[Mapping[str, str]]) -> dict[str, str]:
    common: dict[str, str] | None = None
    for mapping in mappings:
        if common is None:
            common = dict(mapping)
        else:
            common = {k: v for k, v in common.items() if mapping.get(k) == v}
    return common or {}
