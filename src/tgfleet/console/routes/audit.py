"""The audit pages: the log filtered and paged (``GET /api/v1/audit``), one record with
every field, the chain's verification (``GET /api/v1/audit/verify``), all ``audit:read``;
and the export with a reason (``POST /api/v1/audit/export``, ``audit:export``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditExportRequest
from tgfleet.auth.dependencies import audit_context
from tgfleet.components import AppComponents
from tgfleet.console import views_audit
from tgfleet.console.guard import AuditExporter, AuditReader
from tgfleet.console.i18n import gettext as _
from tgfleet.console.pages import page, wants_block
from tgfleet.kit.http import DbSession, Meta, ReadOnlyDbSession

router = APIRouter(include_in_schema=False)

#: A filter as the query string carries it (the view names a value past its own limit).
Filter = Annotated[str, Query(max_length=views_audit.RAW_LIMIT)]
FormFilter = Annotated[str, Form(max_length=views_audit.RAW_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=500)]


@router.get("/audit")
async def audit_log(
    request: Request,
    viewer: AuditReader,
    session: DbSession,
    actor: Filter = "",
    action: Filter = "",
    target: Filter = "",
    since: Annotated[str, Query(alias="from", max_length=views_audit.RAW_LIMIT)] = "",
    until: Annotated[str, Query(alias="to", max_length=views_audit.RAW_LIMIT)] = "",
    cursor: Cursor = None,
) -> Response:
    """The log, newest first, as the API filters it; a refused filter is named next to its
    field and nothing is searched."""
    query = views_audit.parse_query(actor, action, target, since, until)
    log = await views_audit.audit_log(session, query, cursor or None)
    context = {"log": log, "verification": None}
    if wants_block(request, "log"):
        return page(request, "audit.html", viewer, context, name="audit", block="log")
    return page(request, "audit.html", viewer, context, name="audit")


@router.get("/audit/verify")
async def verify_chain(
    request: Request,
    viewer: AuditReader,
    components: AppComponents,
    snapshot: ReadOnlyDbSession,
) -> Response:
    """The API's verification (the whole chain, this server's audit keys, the checkpoint
    file); when it fails, the first bad record linked."""
    result = await audit_service.verify_configured(snapshot, components.settings)
    verification = {"result": result, "summary": views_audit.verification_summary(result)}
    if wants_block(request, "verify"):
        return page(
            request,
            "audit.html",
            viewer,
            {"verification": verification},
            name="audit",
            block="verify",
        )
    query = views_audit.parse_query("", "", "", "", "")
    log = await views_audit.audit_log(snapshot, query, None)
    return page(
        request, "audit.html", viewer, {"log": log, "verification": verification}, name="audit"
    )


@router.get("/audit/{seq}")
async def audit_record(
    seq: str, viewer: AuditReader, session: DbSession, request: Request
) -> Response:
    """One record: every field, the details as indented JSON, the chain fields."""
    number = int(seq) if seq.isascii() and seq.isdigit() and len(seq) <= 19 else 0
    detail = await views_audit.record_detail(session, number)
    return page(request, "audit_record.html", viewer, {"detail": detail}, name="audit")


@router.post("/audit/export")
async def export_log(
    request: Request,
    viewer: AuditExporter,
    components: AppComponents,
    session: DbSession,
    meta: Meta,
    reason: Annotated[str, Form(max_length=2000)] = "",
    actor: FormFilter = "",
    action: FormFilter = "",
    target: FormFilter = "",
    since: Annotated[str, Form(alias="from", max_length=views_audit.RAW_LIMIT)] = "",
    until: Annotated[str, Form(alias="to", max_length=views_audit.RAW_LIMIT)] = "",
) -> Response:
    """The API's export: the filtered records as JSON lines, the ``audit.export`` record
    (reason and filters) committed first. A missing reason or a refused filter comes back
    as the page with the message next to its field, nothing exported or recorded."""
    query = views_audit.parse_query(actor, action, target, since, until)
    text = reason.strip()
    export_error = None
    try:
        AuditExportRequest.model_validate({"reason": text})
    except ValidationError:
        export_error = _("Give the reason (3 to 500 characters); it is recorded in the audit log.")
    if export_error or query.errors:
        log = await views_audit.audit_log(session, query, None)
        return page(
            request,
            "audit.html",
            viewer,
            {"log": log, "verification": None, "export_error": export_error, "reason": text},
            name="audit",
        )
    await audit_service.record_export(
        session, audit_context(viewer.principal, meta), reason=text, filters=query.filters
    )
    return StreamingResponse(
        audit_service.export_lines(components.sessionmaker, query.filters),
        media_type=audit_service.EXPORT_MEDIA_TYPE,
        headers=audit_service.export_headers(),
    )
