"""HTTP API for reading and verifying the audit log (permission ``audit:read``) and for
exporting it (``audit:export``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import (
    AuditExportRequest,
    AuditFilters,
    AuditRecordRead,
    AuditVerifyRead,
)
from tgfleet.auth.dependencies import Requires, audit_context
from tgfleet.auth.permissions import Permission
from tgfleet.auth.schemas import Principal
from tgfleet.components import AppComponents
from tgfleet.exceptions import InvalidInput
from tgfleet.kit.http import DbSession, Meta, ReadOnlyDbSession
from tgfleet.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, to_page
from tgfleet.kit.schema import UtcDatetime

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

AuditReader = Annotated[Principal, Requires(Permission.AUDIT_READ)]
AuditExporter = Annotated[Principal, Requires(Permission.AUDIT_EXPORT)]


@router.get("", response_model=Page[AuditRecordRead])
async def list_records(
    _principal: AuditReader,
    session: DbSession,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[
        str | None, Query(max_length=64, description="exact, or a prefix ending in *")
    ] = None,
    target: Annotated[str | None, Query(max_length=300)] = None,
    since: Annotated[UtcDatetime | None, Query(description="inclusive, ISO 8601 with zone")] = None,
    until: Annotated[UtcDatetime | None, Query(description="exclusive, ISO 8601 with zone")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[AuditRecordRead]:
    """Audit records, newest first, filtered by actor, action, target and time."""
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            msg = f"{name} needs a time zone, e.g. 2026-01-01T00:00:00Z"
            raise InvalidInput(msg)
    result = await audit_service.search(
        session,
        actor=actor,
        action=action,
        target=target,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
    return to_page(result, AuditRecordRead)


@router.get("/verify", response_model=AuditVerifyRead)
async def verify_chain(
    _principal: AuditReader, session: ReadOnlyDbSession, components: AppComponents
) -> AuditVerifyRead:
    """Walk the whole hash chain; report the first record that was edited, moved or removed,
    whose MAC does not match this server's audit keys, or that differs from a checkpoint in
    the configured checkpoint file (``TGFLEET_AUDIT_CHECKPOINT_FILE``)."""
    return await audit_service.verify_configured(session, components.settings)


@router.post(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {"content": {audit_service.EXPORT_MEDIA_TYPE: {}}, "description": "JSON lines"}
    },
)
async def export_records(
    body: AuditExportRequest,
    principal: AuditExporter,
    session: DbSession,
    components: AppComponents,
    meta: Meta,
) -> StreamingResponse:
    """The records the filters select, oldest first, as JSON lines (the fields of
    ``GET /api/v1/audit``, hashes included, for offline checks). Needs a reason; the
    ``audit.export`` record (reason and filters) is committed before the first line, which
    is read in a snapshot of its own."""
    filters = AuditFilters(**body.filters.model_dump())
    await audit_service.record_export(
        session,
        audit_context(principal, meta),
        reason=body.reason,
        filters=filters,
    )
    return StreamingResponse(
        audit_service.export_lines(components.sessionmaker, filters),
        media_type=audit_service.EXPORT_MEDIA_TYPE,
        headers=audit_service.export_headers(),
    )
