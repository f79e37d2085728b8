"""Re-importing one account's session: it becomes the account's secret at the next version."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import metrics
from tgfleet.account import service as account_service
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.exceptions import AppError
from tgfleet.kit.db import unit_of_work
from tgfleet.logging import get_logger
from tgfleet.models import SessionSecret
from tgfleet.vault.archive import Entry
from tgfleet.vault.exceptions import (
    ArchiveError,
    DuplicateSessionError,
    ImportTooLargeError,
    ReplaceNeedsOneSession,
)
from tgfleet.vault.importing import (
    ParsedFile,
    audit_refused,
    expand_upload,
    format_label,
    parse_files,
    parsed_record,
)
from tgfleet.vault.repository import SecretRepository, lock_vault
from tgfleet.vault.sessions import reseal
from tgfleet.vault.upload import UploadedFile
from tgfleet.vault.vault import Vault

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReplaceResult:
    account_id: uuid.UUID
    version: int
    source_format: str
    same_key: bool


async def replace_session(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    account_id: uuid.UUID,
    entry: Entry,
) -> ReplaceResult:
    """Re-import an account's session: ``entry`` becomes its secret at the next version.

    This is how an operator brings back a quarantined account after logging it in again
    (a new key) or after clearing its problem with Telegram (the same key): the worker sees
    the version grow and starts the account afresh. A session that another account holds
    is refused (409); a file that does not parse is refused with its specific error (422).
    Audited as ``session.replace`` (success or failure), and counted as an import.
    """
    (parsed,) = await asyncio.to_thread(parse_files, [entry], vault.policy)
    try:
        async with unit_of_work(sessionmaker) as session:
            result = await _replace(session, vault, context, account_id, parsed)
    except IntegrityError:
        error: AppError = DuplicateSessionError(
            f"{entry.name}: another import stored this session meanwhile"
        )
    except AppError as exc:
        error = exc
    except Exception:
        metrics.VAULT_IMPORTS.labels(format_label(parsed), "failed").inc()
        raise
    else:
        metrics.VAULT_IMPORTS.labels(format_label(parsed), "ok").inc()
        return result
    metrics.VAULT_IMPORTS.labels(format_label(parsed), "rejected").inc()
    async with unit_of_work(sessionmaker) as session:
        await audit_service.record(
            session,
            context,
            action="session.replace",
            target=f"account:{account_id}",
            result=audit_service.FAILURE,
            details={"file": entry.name, "error": error.code, "detail": error.message},
        )
    raise error


async def replace_upload(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    account_id: uuid.UUID,
    files: Sequence[UploadedFile],
    *,
    name: str,
) -> ReplaceResult:
    """:func:`replace_session` with an upload's files, as the API's ``PUT
    /accounts/{id}/session`` and the console's account page take them: zips expanded, and
    exactly one session among them, else the upload is refused (audited as ``name``, as
    the import's refusals are) before anything is replaced."""
    try:
        entry = await _one_entry(vault, files)
    except (ArchiveError, ImportTooLargeError, ReplaceNeedsOneSession) as exc:
        await audit_refused(sessionmaker, context, name, exc)
        raise
    return await replace_session(sessionmaker, vault, context, account_id, entry)


async def _one_entry(vault: Vault, files: Sequence[UploadedFile]) -> Entry:
    entries: list[Entry] = []
    for upload in files:
        entries += await asyncio.to_thread(
            expand_upload, upload.name, bytes(upload.data), vault.limits
        )
    if len(entries) != 1:
        msg = f"a session replacement takes exactly one session; the upload held {len(entries)}"
        raise ReplaceNeedsOneSession(msg)
    return entries[0]


async def _replace(
    session: AsyncSession,
    vault: Vault,
    context: AuditContext,
    account_id: uuid.UUID,
    parsed: ParsedFile,
) -> ReplaceResult:
    if parsed.error is not None:
        raise parsed.error
    record = parsed_record(parsed)
    await account_service.get_account(session, account_id)  # 404 for an unknown account
    await lock_vault(session, exclusive=False)
    keyring = await vault.current()
    repository = SecretRepository(session)
    holder = (await repository.holders([parsed.fingerprint or ""])).get(parsed.fingerprint or "")
    if holder is not None and holder != account_id:
        raise DuplicateSessionError(
            f"{parsed.entry.name}: this session is already in the vault as account {holder}"
        )
    secret = await repository.get(account_id)
    if secret is None:
        secret = SessionSecret(account_id=account_id, version=0, source_format="")
        session.add(secret)
    same_key = secret.auth_key_fingerprint == parsed.fingerprint
    reseal(secret, record, keyring)
    secret.auth_key_fingerprint = parsed.fingerprint
    await session.flush()
    await audit_service.record(
        session,
        context,
        action="session.replace",
        target=f"account:{account_id}",
        details={
            "file": parsed.entry.name,
            "format": record.source_format.value,
            "dc_id": record.dc_id,
            "version": secret.version,
            "kek_id": keyring.active.id,
            "same_session": same_key,
        },
    )
    log.info("vault.replaced", account_id=str(account_id), version=secret.version)
    return ReplaceResult(
        account_id=account_id,
        version=secret.version,
        source_format=record.source_format.value,
        same_key=same_key,
    )
