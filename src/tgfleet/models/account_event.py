from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.clock import utcnow
from tgfleet.kit.model import Model, StrEnumColumn, TZDateTime
from tgfleet.models.account_status import AccountState

#: BIGINT on PostgreSQL, INTEGER (the rowid alias, so it autoincrements) on SQLite.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class AccountEvent(Model):
    """An account's append-only timeline: state changes, errors, flood waits, groups
    disabled, LLM fallbacks, operator commands, replies sent. Never holds secrets; the one
    update is the housekeeping's: a ``reply`` event's text (``message``) is set to null
    once it is older than ``TGFLEET_REPLY_TEXT_RETENTION_DAYS`` (the event stays)."""

    __tablename__ = "account_event"
    __table_args__ = (
        Index("ix_account_event_account_id_id", "account_id", "id"),
        # The housekeeping's search for reply texts past their retention.
        Index("ix_account_event_kind_at", "kind", "at"),
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[AccountState | None] = mapped_column(
        StrEnumColumn(AccountState, 16), default=None
    )
    previous_state: Mapped[AccountState | None] = mapped_column(
        StrEnumColumn(AccountState, 16), default=None
    )
    code: Mapped[str | None] = mapped_column(String(64), default=None)
    message: Mapped[str | None] = mapped_column(String(500), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
