from __future__ import annotations

from sqlalchemy import JSON, Double, String
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.model import Model

#: An array of floats on PostgreSQL (what the admit function reads), JSON elsewhere.
SEND_TIMES = JSON().with_variant(postgresql.ARRAY(Double()), "postgresql")


class ReplyWindow(Model):
    """The replies of the last hour in one limit's scope, fleet-wide (PostgreSQL).

    ``key`` is ``a:<account id>`` (``account_hourly``), ``g:<chat id>`` (``group_hourly``)
    or ``p:<account id>:<chat id>`` (``min_interval_seconds``); ``sent_at`` the unix times
    of the replies admitted in it, oldest first, none older than an hour after the next
    admission. The row is locked while a reply is admitted, so the check and the
    reservation are one step for every worker.
    """

    __tablename__ = "reply_window"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    sent_at: Mapped[list[float]] = mapped_column(SEND_TIMES)
