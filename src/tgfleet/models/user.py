from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tgfleet.kit.clock import utcnow
from tgfleet.kit.model import Model, TZDateTime
from tgfleet.models.role import Role


class User(Model):
    """An operator. ``username`` is stored NFKC-normalised and case-folded, so it is unique
    regardless of case; ``username_skeleton`` (a digest of its TR39 skeleton) is unique too, so
    no look-alike of an existing name can be created. ``token_epoch`` is copied into every
    JWT: disabling the user or changing their password increments it, which ends every JWT
    issued before. ``credentials_changed_at`` says when the password last changed;
    ``language`` is the console language the user chose."""

    __tablename__ = "user"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    username_skeleton: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    password_hash: Mapped[str] = mapped_column(String(200))
    role_id: Mapped[int] = mapped_column(ForeignKey("role.id", ondelete="RESTRICT"), index=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)
    credentials_changed_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    token_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_login_at: Mapped[datetime | None] = mapped_column(TZDateTime, default=None)
    #: The console language chosen (``en``, ``zh-Hans``); None follows the browser.
    language: Mapped[str | None] = mapped_column(String(16), default=None)

    role: Mapped[Role] = relationship(lazy="raise")
