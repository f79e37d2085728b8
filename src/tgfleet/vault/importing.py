"""Importing sessions: files, zips and folders, each file its own result and audit record.

Files are parsed and validated off the event loop, then stored a chunk at a time (one
transaction per chunk). ``ParsedFile`` and ``parse_files`` are shared with re-importing one
account's session (``tgfleet.vault.replacing``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import metrics
from tgfleet.account import service as account_service
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.exceptions import AppError
from tgfleet.kit.db import unit_of_work
from tgfleet.logging import get_logger
from tgfleet.models import Account, SecretState, SessionSecret
from tgfleet.vault import crypto
from tgfleet.vault.archive import ArchiveLimits, Entry, is_zip, iter_folder, iter_zip
from tgfleet.vault.exceptions import ArchiveError, DuplicateSessionError, ImportTooLargeError
from tgfleet.vault.formats import (
    CanonicalSession,
    FormatPolicy,
    auth_key_fingerprint,
    parse,
    to_record,
)
from tgfleet.vault.repository import SecretRepository, lock_vault
from tgfleet.vault.schemas import ImportResultRead
from tgfleet.vault.sessions import reseal
from tgfleet.vault.upload import UploadedFile
from tgfleet.vault.vault import Vault

log = get_logger(__name__)


#: One file's outcome, as the import endpoint answers it.
ImportResult = ImportResultRead


def expand_upload(name: str, data: bytes, limits: ArchiveLimits) -> list[Entry]:
    """One uploaded file, or every entry of an uploaded zip (refused whole if unsafe)."""
    if is_zip(data):
        return list(iter_zip(data, limits))
    return [Entry(name=name, data=data)]


def expand_path(path: Path, limits: ArchiveLimits) -> list[Entry]:
    """A file, a zip file or a folder on this machine, as entries (blocking: use a thread)."""
    if path.is_dir():
        return list(iter_folder(path, limits))
    size = path.stat().st_size
    if size > limits.max_total_bytes:
        raise ImportTooLargeError(
            f"{path} is {size} bytes, over the import limit of {limits.max_total_bytes}"
        )
    data = path.read_bytes()
    if is_zip(data):
        return list(iter_zip(data, limits))
    return [Entry(name=path.name, data=data)]


def check_totals(entries: Sequence[Entry], limits: ArchiveLimits) -> None:
    """The limits hold for a whole request or command, not only per zip or folder."""
    if len(entries) > limits.max_entries:
        raise ArchiveError(f"{len(entries)} files in one import; the limit is {limits.max_entries}")
    total = sum(len(entry.data) for entry in entries)
    if total > limits.max_total_bytes:
        raise ImportTooLargeError(
            f"the files of this import add up to {total} bytes; the limit is "
            f"{limits.max_total_bytes}"
        )


async def audit_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
    context: AuditContext,
    name: str,
    error: AppError,
) -> None:
    """Record an import refused as a whole (unsafe zip, too large) before any file ran."""
    async with unit_of_work(sessionmaker) as session:
        await audit_service.record(
            session,
            context,
            action="session.import",
            target="vault",
            result=audit_service.FAILURE,
            details={"file": name, "error": error.code, "detail": error.message},
        )


async def import_upload(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    files: Sequence[UploadedFile],
    *,
    name: str,
    label: str | None = None,
) -> list[ImportResult]:
    """Import an upload's files (session files, strings, zips), as the import endpoint and
    the console's import page take them: zips expanded and the limits checked over the
    whole upload, which is refused whole (audited as ``name``) before any file ran if a zip
    is unsafe or it is too large; ``label`` names the account only if the upload held
    exactly one session (many files keep their own names)."""
    try:
        entries: list[Entry] = []
        for upload in files:
            entries += await asyncio.to_thread(
                expand_upload, upload.name, bytes(upload.data), vault.limits
            )
        check_totals(entries, vault.limits)
    except (ArchiveError, ImportTooLargeError) as exc:
        await audit_refused(sessionmaker, context, name, exc)
        raise
    if label is not None and len(entries) != 1:
        label = None
    return await import_entries(sessionmaker, vault, context, entries, label=label)


def label_from_name(name: str) -> str:
    """The label an imported file asks for: its base name without a session suffix (made
    unique with ``-2``... when taken, `account_service.create_accounts`)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".session", ".txt", ".session-string"):
        base = base.removesuffix(suffix)
    return base or "account"


IMPORT_CHUNK = 100
_NO_ACCOUNT = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """One file of an import after parsing: its record and fingerprint, or why it was refused."""

    entry: Entry
    record: CanonicalSession | None
    error: AppError | None
    fingerprint: str | None


def parse_files(entries: Sequence[Entry], policy: FormatPolicy) -> list[ParsedFile]:
    """Parse and validate (CPU work, run in a thread); a bad file becomes its error."""
    parsed: list[ParsedFile] = []
    for entry in entries:
        try:
            record = parse(entry.data, policy, name=entry.name)
        except AppError as exc:
            parsed.append(ParsedFile(entry, None, exc, None))
            continue
        parsed.append(ParsedFile(entry, record, None, auth_key_fingerprint(record.auth_key)))
    return parsed


async def import_entries(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    entries: Sequence[Entry],
    *,
    label: str | None = None,
    on_result: Callable[[ImportResult], None] | None = None,
    chunk_size: int = IMPORT_CHUNK,
) -> list[ImportResult]:
    """Import sessions; every file gets its own result and audit record.

    Files are parsed and validated first, then stored a chunk at a time: one transaction
    writes the chunk's accounts, secrets and audit records in a few statements. A file
    that fails never affects another: invalid files and duplicates are settled before
    anything is written, and if a concurrent import races a chunk (a key or label taken in
    between), that chunk is redone one file per transaction.

    Each file counts once in ``tgfleet_vault_imports_total`` when its chunk has committed
    (see :func:`_counted`).
    """
    results: list[ImportResult] = []
    for start in range(0, len(entries), chunk_size):
        parsed = await asyncio.to_thread(
            parse_files, entries[start : start + chunk_size], vault.policy
        )
        try:
            chunk = await _counted(
                parsed, _store_chunk(sessionmaker, vault, context, parsed, label=label)
            )
        except IntegrityError:
            chunk = []
            for item in parsed:
                chunk += await _counted(
                    [item], _store_alone(sessionmaker, vault, context, item, label=label)
                )
        for result in chunk:
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def format_label(item: ParsedFile) -> str:
    """The ``format`` label of a file: its session format, or ``unknown`` when it did not
    parse (the parser names no format for a file it refuses)."""
    return item.record.source_format.value if item.record is not None else "unknown"


async def _counted(
    items: Sequence[ParsedFile], storing: Awaitable[list[ImportResult]]
) -> list[ImportResult]:
    """Await ``storing`` (committed by then) and count its results in
    ``tgfleet_vault_imports_total``: ``ok`` or ``rejected`` per file, or ``failed`` for every
    file when the store raised. An IntegrityError is not counted: the chunk is redone."""
    try:
        results = await storing
    except IntegrityError:
        raise
    except Exception:
        for item in items:
            metrics.VAULT_IMPORTS.labels(format_label(item), "failed").inc()
        raise
    for item, result in zip(items, results, strict=True):
        metrics.VAULT_IMPORTS.labels(format_label(item), "ok" if result.ok else "rejected").inc()
    return results


async def _store_chunk(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    parsed: list[ParsedFile],
    *,
    label: str | None,
) -> list[ImportResult]:
    async with unit_of_work(sessionmaker) as session:
        return await _store(session, vault, context, parsed, label=label)


async def _store_alone(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    item: ParsedFile,
    *,
    label: str | None,
) -> list[ImportResult]:
    try:
        async with unit_of_work(sessionmaker) as session:
            return await _store(session, vault, context, [item], label=label)
    except IntegrityError:
        error = DuplicateSessionError(
            f"{item.entry.name}: another import stored this session (or its label) meanwhile"
        )
    async with unit_of_work(sessionmaker) as session:
        return await _store(
            session, vault, context, [ParsedFile(item.entry, None, error, None)], label=label
        )


async def _store(
    session: AsyncSession,
    vault: Vault,
    context: AuditContext,
    parsed: list[ParsedFile],
    *,
    label: str | None,
) -> list[ImportResult]:
    """Write one chunk in the caller's unit of work; returns a result per file, in order."""
    await lock_vault(session, exclusive=False)
    keyring = await vault.current()  # checked inside the transaction: see lock_vault
    failures: dict[int, AppError] = {
        index: item.error for index, item in enumerate(parsed) if item.error is not None
    }
    secrets_repository = SecretRepository(session)
    holders = await secrets_repository.holders(
        [item.fingerprint for item in parsed if item.fingerprint is not None]
    )
    held = {s.account_id: s for s in await secrets_repository.for_accounts(list(holders.values()))}
    owners = {
        account.id: account
        for account in await account_service.get_accounts(session, list(holders.values()))
    }
    first_file: dict[str, str] = {}
    fresh: list[int] = []
    recovered: dict[int, Account] = {}
    for index, item in enumerate(parsed):
        if item.fingerprint is None:
            continue
        holder = held.get(holders.get(item.fingerprint, _NO_ACCOUNT))
        if (
            holder is not None
            and holder.state == SecretState.TAMPERED
            and item.fingerprint not in first_file
        ):
            # Re-importing the session of a tampered secret is how an operator recovers it.
            first_file[item.fingerprint] = item.entry.name
            recovered[index] = owners[holder.account_id]
            reseal(holder, parsed_record(item), keyring)
        elif item.fingerprint in holders:
            owner = owners[holders[item.fingerprint]]
            failures[index] = DuplicateSessionError(
                f"{item.entry.name}: this session is already in the vault as account "
                f"{owner.label!r} ({owner.id})"
            )
        elif item.fingerprint in first_file:
            failures[index] = DuplicateSessionError(
                f"{item.entry.name}: the same session as {first_file[item.fingerprint]} "
                "in this import"
            )
        else:
            first_file[item.fingerprint] = item.entry.name
            fresh.append(index)

    exact = label is not None and len(parsed) == 1
    accounts = await account_service.create_accounts(
        session,
        [
            account_service.NewAccount(
                label=label if exact and label else label_from_name(parsed[i].entry.name),
                tg_user_id=parsed_record(parsed[i]).user_id,
                dc_id=parsed_record(parsed[i]).dc_id,
            )
            for i in fresh
        ],
        exact_label=exact,
    )
    secrets: list[SessionSecret] = []
    audits: list[audit_service.AuditEntry] = []
    created: dict[int, Account] = {}
    for index, account in zip(fresh, accounts, strict=True):
        record = parsed_record(parsed[index])
        envelope = crypto.seal(keyring, to_record(record), account_id=account.id, version=1)
        secrets.append(
            SessionSecret(
                account_id=account.id,
                version=1,
                state=SecretState.ACTIVE,
                source_format=record.source_format.value,
                kek_id=envelope.kek_id,
                wrapped_key=envelope.wrapped_key,
                nonce=envelope.nonce,
                ciphertext=envelope.ciphertext,
                auth_key_fingerprint=parsed[index].fingerprint,
            )
        )
        created[index] = account
    await secrets_repository.add_all(secrets)
    await session.flush()  # the re-sealed (recovered) secrets
    created |= recovered

    results: list[ImportResult] = []
    for index, item in enumerate(parsed):
        if index in created:
            account = created[index]
            record = parsed_record(item)
            results.append(
                ImportResult(
                    name=item.entry.name, ok=True, account_id=account.id, label=account.label
                )
            )
            audits.append(
                audit_service.AuditEntry(
                    action="session.import",
                    target=f"account:{account.id}",
                    details={
                        "file": item.entry.name,
                        "label": account.label,
                        "format": record.source_format.value,
                        "dc_id": record.dc_id,
                        "kek_id": keyring.active.id,
                        **({"recovered": "tampered"} if index in recovered else {}),
                    },
                )
            )
        else:
            error = failures[index]
            results.append(
                ImportResult(name=item.entry.name, ok=False, error=error.code, detail=error.message)
            )
            audits.append(
                audit_service.AuditEntry(
                    action="session.import",
                    target="vault",
                    result=audit_service.FAILURE,
                    details={"file": item.entry.name, "error": error.code, "detail": error.message},
                )
            )
    await audit_service.record_many(session, context, audits)
    log.info("vault.imported", imported=len(created), failed=len(failures))
    return results


def parsed_record(item: ParsedFile) -> CanonicalSession:
    if item.record is None:  # only parsed files reach the writer
        msg = f"{item.entry.name} has no parsed record"
        raise RuntimeError(msg)
    return item.record
