"""The alerting vocabulary shared by the engine and the receivers.

Mirrors Alertmanager's: an :class:`Alert` is identified by its labels (its fingerprint); a
:class:`Notification` is what one receiver gets for one aggregation group (the alerts of one
group key, firing first); a receiver answers with a :class:`DeliveryResult`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

Status = Literal["firing", "resolved"]


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable id of a label set (16 hex characters), like Alertmanager's."""
    digest = hashlib.sha256()
    for name in sorted(labels):
        digest.update(name.encode())
        digest.update(b"\xff")
        digest.update(labels[name].encode())
        digest.update(b"\xff")
    return digest.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Alert:
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    #: None while firing with no known end; a time in the past: resolved.
    ends_at: datetime | None = None
    generator_url: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    def status_at(self, now: datetime) -> Status:
        return "resolved" if self.ends_at is not None and self.ends_at <= now else "firing"


@dataclass(frozen=True, slots=True)
class Notification:
    """One aggregation group's alerts, for one receiver."""

    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    status: Status  # "firing" when any alert fires
    alerts: tuple[Alert, ...]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str = ""
    #: When set, the alerts' status is judged at this instant (else: now).
    at: datetime | None = None

    @property
    def firing(self) -> tuple[Alert, ...]:
        now = self.at or datetime.now(UTC)
        return tuple(a for a in self.alerts if a.status_at(now) == "firing")


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    ok: bool
    receiver: str
    integration: str  # "telegram", "webhook", "alertmanager"
    attempts: int = 1
    messages: int = 0  # messages (Telegram) or requests that were accepted
    error: str | None = None  # a short, secret-free reason when not ok
    detail: Mapping[str, object] = field(default_factory=dict)
