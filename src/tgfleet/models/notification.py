from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.clock import utcnow
from tgfleet.kit.model import Model, TZDateTime

#: BIGINT on PostgreSQL, INTEGER (the rowid alias, so it autoincrements) on SQLite.
NotificationId = BigInteger().with_variant(Integer(), "sqlite")


class Notification(Model):
    """The notification log: what one receiver was told about one aggregation group, and
    when (the fingerprints firing and resolved at that moment). The newest successful row per
    (group key, receiver) is Alertmanager's nflog entry: a restarted evaluator reads it and
    neither resends nor forgets. Failed attempts are rows too (``ok`` false), for history."""

    __tablename__ = "notification"
    __table_args__ = (
        Index("ix_notification_group_receiver_id", "group_key", "receiver", "id"),
        Index("ix_notification_sent_at", "sent_at"),
    )

    id: Mapped[int] = mapped_column(NotificationId, primary_key=True, autoincrement=True)
    group_key: Mapped[str] = mapped_column(String(1000))
    receiver: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    firing: Mapped[list[str]] = mapped_column(JSON, default=list)
    resolved: Mapped[list[str]] = mapped_column(JSON, default=list)
    sent_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
    messages: Mapped[int] = mapped_column(Integer, default=0)
    #: Per integration: {"integration", "ok", "attempts", "messages", "error"}; no secrets.
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
