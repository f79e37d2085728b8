from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


class AuditVerifyRead(Schema):
    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str | None = None
