from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.model import Model


class AuditChainHead(Model):
    """The single row holding the last seq and hash of the audit chain.

    Appending updates this row first, which serialises writers (a row lock on PostgreSQL,
    the database lock on SQLite) and lets ``audit verify`` notice a truncated tail.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
