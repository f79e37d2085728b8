from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.clock import utcnow
from tgfleet.kit.model import Model, TZDateTime


class Alert(Model):
    """An alert as the evaluator last saw it, keyed by its label fingerprint. Firing while
    ``ends_at`` is NULL or ahead; kept after it resolved (the history), pruned later.
    Stored before anything is sent, so a restart loses no alert."""

    __tablename__ = "alert"
    __table_args__ = (Index("ix_alert_ends_at", "ends_at"),)

    fingerprint: Mapped[str] = mapped_column(String(16), primary_key=True)
    alertname: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(32), default="")
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    starts_at: Mapped[datetime] = mapped_column(TZDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(TZDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
