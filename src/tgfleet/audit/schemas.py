from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, field_validator

from tgfleet.kit.clock import isoformat
from tgfleet.kit.schema import RequestSchema, Schema, UtcDatetime


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who acts, from where, in which request: attached to every record of a unit of work."""

    actor: str
    ip: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """What ``search`` and an export narrow the log to (every field optional)."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def described(self) -> dict[str, str]:
        """The filters set, as the ``audit.export`` record names them."""
        values = {
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "since": isoformat(self.since) if self.since else None,
            "until": isoformat(self.until) if self.until else None,
        }
        return {name: value for name, value in values.items() if value is not None}


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


class AuditExportFilters(RequestSchema):
    """The filters of ``GET /api/v1/audit``, for an export."""

    actor: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    action: (
        Annotated[
            str, Field(min_length=1, max_length=64, description="exact, or a prefix ending in *")
        ]
        | None
    ) = None
    target: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    since: UtcDatetime | None = Field(default=None, description="inclusive, with a zone")
    until: UtcDatetime | None = Field(default=None, description="exclusive, with a zone")

    @field_validator("since", "until")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            msg = "needs a time zone, e.g. 2026-01-01T00:00:00Z"
            raise ValueError(msg)
        return value


class AuditExportRequest(RequestSchema):
    reason: Annotated[str, Field(min_length=3, max_length=500)] = Field(
        description="why the records leave; recorded in the audit log with the filters"
    )
    filters: AuditExportFilters = Field(default_factory=AuditExportFilters)
