from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.clock import utcnow
from tgfleet.kit.model import Model, TZDateTime


class Silence(Model):
    """Mutes the alerts its matchers match between ``starts_at`` and ``ends_at``
    (Alertmanager's silence). Expiring one sets ``ends_at`` to now; rows are kept."""

    __tablename__ = "silence"
    __table_args__ = (Index("ix_silence_ends_at", "ends_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    #: [{"name", "value", "is_regex", "is_equal"}]
    matchers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    starts_at: Mapped[datetime] = mapped_column(TZDateTime)
    ends_at: Mapped[datetime] = mapped_column(TZDateTime)
    created_by: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
