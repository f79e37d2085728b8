from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.clock import utcnow
from tgfleet.kit.model import Model, StrEnumColumn, TZDateTime


class DesiredState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


class Account(Model):
    """A Telegram user account under management. Desired state lives here (the worker
    reconciles towards it); observed state lives in ``account_status``. Key material lives
    in ``session_secret``, never here.

    ``restart_seq`` grows by one with every operator start/restart: a worker that saw an
    older value restarts the client, also out of ``quarantined`` or ``error``.
    """

    __tablename__ = "account"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    label: Mapped[str] = mapped_column(String(200), unique=True)
    tg_user_id: Mapped[int | None] = mapped_column(BigInteger, index=True, default=None)
    username: Mapped[str | None] = mapped_column(String(64), default=None)
    phone: Mapped[str | None] = mapped_column(String(32), default=None)
    dc_id: Mapped[int | None] = mapped_column(Integer, default=None)
    desired_state: Mapped[DesiredState] = mapped_column(
        StrEnumColumn(DesiredState, 16), default=DesiredState.STOPPED
    )
    restart_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)
