from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.model import Model, TZDateTime


class ReplyClaim(Model):
    """Who answers one member message, fleet-wide (PostgreSQL; DESIGN §8).

    ``key`` names the message as every fleet account sees it (``responders: one``), or the
    message and one account (``responders: all``). The first account to insert the key
    answers; the row also tells that same account, seen again after a reconnect or a
    hand-over, that it already did. A row counts until ``expires_at``.
    """

    __tablename__ = "reply_claim"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    chat_id: Mapped[int] = mapped_column(BigInteger)
    claimed_at: Mapped[datetime] = mapped_column(TZDateTime)
    expires_at: Mapped[datetime] = mapped_column(TZDateTime, index=True)
