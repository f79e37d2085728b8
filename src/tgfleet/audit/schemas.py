from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import Field

from tgfleet.kit.schema import Schema


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who acts, from where, in which request: attached to every record of a unit of work."""

    actor: str
    ip: str | None = None
    request_id: str | None = None


class AuditRecordRead(Schema):
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    result: str
    ip: str | None
    request_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str
    key_id: str | None = None
    mac: str | None = None


class AuditVerifyRead(Schema):
    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str | None = None
    keyed: int = Field(default=0, description="records with a MAC (checked if macs_checked)")
    unkeyed: int = Field(default=0, description="records written before the chain was keyed")
    macs_checked: bool = Field(default=False, description="false when no audit key was loaded")
    checkpoints: int = Field(default=0, description="checkpoints the log was checked against")
