from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.model import Model, TZDateTime


class AccountLease(Model):
    """Which worker (and which run of it, ``epoch``) may run an account.

    ``worker_id`` NULL: free. Validity is the holder's: the lease counts while
    ``worker.epoch == epoch`` and ``worker.expires_at`` is ahead (see ``Worker``); a lease
    whose worker expired is taken by another only after a grace period.
    """

    __tablename__ = "account_lease"
    __table_args__ = (
        # Free leases only: what a claim reads, however large the fleet.
        Index(
            "ix_account_lease_free",
            "account_id",
            postgresql_where=text("worker_id IS NULL"),
            sqlite_where=text("worker_id IS NULL"),
        ),
    )

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    worker_id: Mapped[str | None] = mapped_column(String(128), index=True, default=None)
    epoch: Mapped[int | None] = mapped_column(BigInteger, default=None)
    acquired_at: Mapped[datetime | None] = mapped_column(TZDateTime, default=None)
