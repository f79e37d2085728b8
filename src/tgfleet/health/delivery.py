"""The outcome of the last alert notification, for the ``alerting:lastDelivery`` check.

The alert engine (DESIGN §10) calls :meth:`DeliveryRecord.record_success` or
:meth:`DeliveryRecord.record_failure` after each delivery attempt; ``/health`` reads the
record. It lives in memory, per process: each process reports its own notifications (only
the process that runs the alert engine sends any), and a restart starts with none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tgfleet import metrics


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    at: datetime
    ok: bool
    #: What failed, in words safe to show on an open endpoint (an exception type name or a
    #: receiver's status code, never a URL, token or chat id).
    error: str | None = None


class DeliveryRecord:
    """The last notification attempt and the last success of this process."""

    def __init__(self) -> None:
        self.last_attempt: DeliveryAttempt | None = None
        self.last_success: datetime | None = None

    def record_success(self, at: datetime) -> None:
        """A notification was delivered at ``at`` (aware UTC)."""
        self.last_attempt = DeliveryAttempt(at=at, ok=True)
        self.last_success = at
        metrics.ALERT_LAST_DELIVERY.set(at.timestamp())

    def record_failure(self, at: datetime, error: str) -> None:
        """A delivery attempt failed at ``at``; ``error`` must hold no secret (see
        :attr:`DeliveryAttempt.error`)."""
        self.last_attempt = DeliveryAttempt(at=at, ok=False, error=error)
