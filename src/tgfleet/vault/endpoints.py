"""HTTP API for session import, export and erase, and for the vault's keys."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from tgfleet.auth.dependencies import Requires, audit_context
from tgfleet.auth.permissions import Permission
from tgfleet.auth.schemas import Principal
from tgfleet.components import AppComponents
from tgfleet.kit.http import DbSession, Meta
from tgfleet.vault import service as vault_service
from tgfleet.vault.schemas import (
    ImportReport,
    ImportResultRead,
    KekStatusRead,
    RotationRead,
    RotationReportRead,
    SessionExportRequest,
    SessionReplaced,
    VaultStatusRead,
)
from tgfleet.vault.upload import DEFAULT_UPLOAD_NAME, UPLOAD_ERRORS, read_upload, upload_error

IMPORT_PATH = "/api/v1/accounts/import"

router = APIRouter(tags=["vault"])

# Imports and rotation commit file by file, batch by batch, in units of work of their own:
# their guards check in a transaction that ends before they start (the request holds none).
Importer = Annotated[Principal, Requires(Permission.SESSION_IMPORT, own_transaction=True)]
Exporter = Annotated[Principal, Requires(Permission.SESSION_EXPORT)]
Eraser = Annotated[Principal, Requires(Permission.SESSION_DELETE)]
Rotator = Annotated[Principal, Requires(Permission.VAULT_ROTATE, own_transaction=True)]
VaultReader = Annotated[Principal, Requires(Permission.VAULT_READ)]


@router.post(IMPORT_PATH, response_model=ImportReport)
async def import_sessions(
    request: Request,
    components: AppComponents,
    principal: Importer,
    meta: Meta,
    label: Annotated[
        str | None, Query(max_length=200, description="label for a single imported file")
    ] = None,
    name: Annotated[
        str, Query(max_length=300, description="file name of a raw (non-multipart) body")
    ] = DEFAULT_UPLOAD_NAME,
) -> ImportReport:
    """Import sessions: a raw body (one session file or string, or a zip) or
    multipart/form-data with any number of files and zips. Each file is validated and
    imported on its own; the report lists every file's outcome. An unsafe zip is refused
    whole (path traversal, too many entries, a zip bomb)."""
    vault = components.vault
    context = audit_context(principal, meta)
    try:
        files, fields = await read_upload(
            request.headers.get("content-type", ""),
            request.stream(),
            max_bytes=vault.settings.import_max_upload_bytes,
            default_name=name,
        )
    except UPLOAD_ERRORS as exc:
        await vault_service.audit_refused(components.sessionmaker, context, name, upload_error(exc))
        raise
    results = await vault_service.import_upload(
        components.sessionmaker,
        vault,
        context,
        files,
        name=name,
        label=label or fields.get("label") or None,
    )
    return ImportReport(
        imported=sum(r.ok for r in results),
        failed=sum(not r.ok for r in results),
        results=[ImportResultRead.model_validate(r) for r in results],
    )


@router.put("/api/v1/accounts/{account_id}/session", response_model=SessionReplaced)
async def replace_session(
    account_id: uuid.UUID,
    request: Request,
    components: AppComponents,
    principal: Importer,
    meta: Meta,
    name: Annotated[
        str, Query(max_length=300, description="file name of a raw (non-multipart) body")
    ] = DEFAULT_UPLOAD_NAME,
) -> SessionReplaced:
    """Re-import one account's session (a raw body or one multipart file): it becomes the
    account's secret at the next version, and the worker starts the account afresh, also
    out of ``quarantined``. A session held by another account is a 409."""
    vault = components.vault
    context = audit_context(principal, meta)
    try:
        files, _fields = await read_upload(
            request.headers.get("content-type", ""),
            request.stream(),
            max_bytes=vault.settings.import_max_file_bytes,
            default_name=name,
        )
    except UPLOAD_ERRORS as exc:
        await vault_service.audit_refused(components.sessionmaker, context, name, upload_error(exc))
        raise
    result = await vault_service.replace_upload(
        components.sessionmaker, vault, context, account_id, files, name=name
    )
    return SessionReplaced(
        account_id=result.account_id,
        version=result.version,
        source_format=result.source_format,
        same_session=result.same_key,
    )


@router.post("/api/v1/accounts/{account_id}/session/export")
async def export_session(
    account_id: uuid.UUID,
    body: SessionExportRequest,
    components: AppComponents,
    principal: Exporter,
    session: DbSession,
    meta: Meta,
) -> Response:
    """Export an account's decrypted session as a file (Telethon or Pyrogram SQLite) or a
    string. Needs a reason; audited."""
    content = await vault_service.export(
        session,
        components.vault,
        audit_context(principal, meta),
        account_id,
        fmt=body.format,
        reason=body.reason,
    )
    download = vault_service.export_download(account_id, body.format)
    return Response(content=content, media_type=download.media_type, headers=download.headers)


@router.delete("/api/v1/accounts/{account_id}/session", status_code=status.HTTP_204_NO_CONTENT)
async def erase_session(
    account_id: uuid.UUID, principal: Eraser, session: DbSession, meta: Meta
) -> Response:
    """Crypto-erase an account's session: its wrapped data key and ciphertext are destroyed."""
    await vault_service.erase(session, audit_context(principal, meta), account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/api/v1/vault/rotate", response_model=RotationReportRead)
async def rotate(components: AppComponents, principal: Rotator, meta: Meta) -> RotationReportRead:
    """Rotate the key-encryption key: add a KEK (key-file keyring), re-wrap every data key
    in batches, retire the KEKs nothing uses. Safe to repeat after a crash."""
    report = await vault_service.rotate(
        components.sessionmaker, components.vault, audit_context(principal, meta)
    )
    return RotationReportRead.model_validate(report)


@router.get("/api/v1/vault/status", response_model=VaultStatusRead)
async def vault_status(
    components: AppComponents, _principal: VaultReader, session: DbSession
) -> VaultStatusRead:
    """The keyring's KEK ids and how many secrets each wraps; secrets by state."""
    result = await vault_service.status(session, components.vault)
    return VaultStatusRead(
        source=result.source,
        active_kek_id=result.active_kek_id,
        keks=[KekStatusRead.model_validate(k) for k in result.keks],
        secrets_by_state=result.secrets_by_state,
        last_rotation=(
            RotationRead.model_validate(result.last_rotation) if result.last_rotation else None
        ),
    )
