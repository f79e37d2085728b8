from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.clock import utcnow
from tgfleet.kit.model import Model, StrEnumColumn, TZDateTime


class AccountState(StrEnum):
    """Observed states (DESIGN §4). An account without a status row is ``stopped``."""

    STOPPED = "stopped"
    STARTING = "starting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    FLOOD_WAIT = "flood_wait"
    QUARANTINED = "quarantined"
    STOPPING = "stopping"
    ERROR = "error"
    #: Desired running, but no live worker holds it (PostgreSQL leases; all at capacity).
    UNASSIGNED = "unassigned"


class AccountStatus(Model):
    """What a worker observes of one account (DESIGN §4): the state machine's current
    state, since when, who runs it, the last error, and running counters.

    ``restart_seq`` and ``secret_version`` are what the worker acted on last: an operator
    restart (a higher ``account.restart_seq``) or a re-import (a higher
    ``session_secret.version``) lifts a quarantine.
    """

    __tablename__ = "account_status"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[AccountState] = mapped_column(
        StrEnumColumn(AccountState, 16), index=True, default=AccountState.STOPPED
    )
    since: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    reason: Mapped[str | None] = mapped_column(String(64), default=None)
    worker_id: Mapped[str | None] = mapped_column(String(128), default=None)
    restart_seq: Mapped[int] = mapped_column(Integer, default=0)
    secret_version: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    last_error_message: Mapped[str | None] = mapped_column(String(500), default=None)
    last_error_at: Mapped[datetime | None] = mapped_column(TZDateTime, default=None)
    wait_until: Mapped[datetime | None] = mapped_column(TZDateTime, default=None)
    messages_received: Mapped[int] = mapped_column(BigInteger, default=0)
    replies_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    replies_suppressed: Mapped[int] = mapped_column(BigInteger, default=0)
    reconnects: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)
