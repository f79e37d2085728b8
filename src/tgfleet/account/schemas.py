from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from tgfleet.kit.schema import Schema


class SessionSummary(Schema):
    """What the API may say about an account's session: never key material."""

    state: str = Field(description="active, tampered (unusable until re-imported) or erased")
    source_format: str
    version: int
    kek_id: str | None
    updated_at: datetime


class AccountRead(Schema):
    id: uuid.UUID
    label: str
    tg_user_id: int | None
    username: str | None
    dc_id: int | None
    desired_state: str
    created_at: datetime
    updated_at: datetime
    session: SessionSummary | None = None
