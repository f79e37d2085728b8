from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field

from tgfleet.kit.schema import RequestSchema, Schema
from tgfleet.vault.formats import SessionFormat


class ImportResultRead(Schema):
    name: str
    ok: bool
    account_id: uuid.UUID | None = None
    label: str | None = None
    error: str | None = None
    detail: str | None = None


class ImportReport(Schema):
    imported: int
    failed: int
    results: list[ImportResultRead]


class SessionReplaced(Schema):
    account_id: uuid.UUID
    version: int = Field(description="the secret's new version (the worker restarts on it)")
    source_format: str
    same_session: bool = Field(description="the same auth key as before (re-imported as is)")


class SessionExportRequest(RequestSchema):
    format: SessionFormat
    reason: Annotated[str, Field(min_length=3, max_length=500)] = Field(
        description="why the session leaves the vault; recorded in the audit log"
    )


class KekStatusRead(Schema):
    id: str
    state: str = Field(description="active, usable, retired, or missing (used but not held)")
    secrets: int
    created_at: str | None
    retired_at: str | None


class RotationRead(Schema):
    id: int
    target_kek_id: str
    state: str
    rewrapped: int
    failed: int
    actor: str
    started_at: datetime
    finished_at: datetime | None


class VaultStatusRead(Schema):
    source: str
    active_kek_id: str
    keks: list[KekStatusRead]
    secrets_by_state: dict[str, int]
    last_rotation: RotationRead | None


class RotationReportRead(Schema):
    target_kek_id: str
    rewrapped: int
    failed: int
    retired: list[str]
    resumed: bool
