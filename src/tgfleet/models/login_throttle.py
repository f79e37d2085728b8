from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.model import Model, TZDateTime


class LoginThrottle(Model):
    """Failed-login counter for one key: ``user:<name>`` or ``ip:<address>``.

    Kept in the database so that every API replica sees the same counters."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(TZDateTime)
    blocked_until: Mapped[datetime | None] = mapped_column(TZDateTime, default=None)
