from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.kit.clock import utcnow
from tgfleet.kit.model import Model, StrEnumColumn, TZDateTime


class SecretState(StrEnum):
    """A stored session: usable, failed authentication (unusable until re-imported), or
    crypto-erased."""

    ACTIVE = "active"
    TAMPERED = "tampered"
    ERASED = "erased"


class SessionSecret(Model):
    """An account's session, envelope-encrypted (see ``tgfleet.vault.crypto``).

    ``ciphertext`` is the canonical session record under a per-secret data key;
    ``wrapped_key`` is that data key under the KEK ``kek_id``. Both are bound by AAD to
    ``account_id`` and ``version``. Crypto-erase clears them (state ``erased``).
    ``auth_key_fingerprint`` (a one-way hash) finds duplicates without decrypting.
    """

    __tablename__ = "session_secret"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[SecretState] = mapped_column(
        StrEnumColumn(SecretState, 16), default=SecretState.ACTIVE
    )
    source_format: Mapped[str] = mapped_column(String(32))
    kek_id: Mapped[str | None] = mapped_column(String(32), index=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    nonce: Mapped[bytes | None] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    auth_key_fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(TZDateTime, default=utcnow, onupdate=utcnow)
