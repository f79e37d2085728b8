from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.clock import utcnow
from tgfleet.kit.model import Model, TZDateTime


class AccountGroup(Model):
    """One group an account is in, and what the account does there.

    Replies are opt-in: a group the worker discovers is stored with ``enabled`` false.
    ``chat_id`` is Telethon's marked peer id (``-id`` for a basic group, ``-100id`` for a
    supergroup). ``playbook_version`` pins a version; ``None`` follows the latest.
    A group error (write forbidden, banned, private) clears ``enabled`` and records why.
    """

    __tablename__ = "account_group"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    title: Mapped[str | None] = mapped_column(String(255), default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    playbook_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("playbook.id", ondelete="RESTRICT"), index=True, default=None
    )
    playbook_version: Mapped[int | None] = mapped_column(Integer, default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(TZDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)
