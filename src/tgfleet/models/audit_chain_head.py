from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.model import Model, TZDateTime


class AuditChainHead(Model):
    """The single row holding the last seq and hash of the audit chain.

    Appending updates this row first, which serialises writers (a row lock on PostgreSQL,
    the database lock on SQLite) and lets ``audit verify`` notice a truncated tail.
    ``checkpoint_seq`` and ``checkpoint_at`` say when a checkpoint was last published (only
    the schedule: the checkpoints themselves live outside the database).
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    checkpoint_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    checkpoint_at: Mapped[datetime | None] = mapped_column(TZDateTime)
