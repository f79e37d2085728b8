from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.clock import utcnow
from tgfleet.kit.model import Model, StrEnumColumn, TZDateTime


class RotationState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    DONE_WITH_FAILURES = "done_with_failures"
    #: A later run found this one still running (it crashed) towards another KEK.
    ABANDONED = "abandoned"


class VaultRotation(Model):
    """One run of key rotation. A row still ``running`` after a crash tells the next run
    which KEK to continue towards instead of adding another."""

    __tablename__ = "vault_rotation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target_kek_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[RotationState] = mapped_column(
        StrEnumColumn(RotationState, 32), default=RotationState.RUNNING
    )
    rewrapped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    actor: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(TZDateTime, default=None)
