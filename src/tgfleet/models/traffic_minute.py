from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.model import Model, TZDateTime


class TrafficMinute(Model):
    """The fleet's messages received and replies sent in one UTC minute.

    Every worker adds its counter deltas to the row of the minute its status batch is
    written in (one upsert per batch, in the batch's transaction), so the row is the sum
    over all workers. Rows older than ``account.housekeeping.TRAFFIC_RETENTION`` are
    deleted by the API processes' housekeeping.
    """

    __tablename__ = "traffic_minute"

    #: The minute's start, UTC, seconds and microseconds zero.
    minute: Mapped[datetime] = mapped_column(TZDateTime, primary_key=True)
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    sent: Mapped[int] = mapped_column(BigInteger, default=0)
