"""Vault services: import, export, erase, decrypt, rotate, status.

Key material exists in plaintext only in memory, for as long as one call needs it. Every
import, export, erase, decrypt and rotation writes an audit record. A secret that fails
authentication is audited and marked ``tampered`` (unusable until its session is
re-imported); a secret whose KEK is merely not loaded is audited and left as it is.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import metrics
from tgfleet.account import service as account_service
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings
from tgfleet.exceptions import AppError
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.logging import get_logger
from tgfleet.models import Account, SessionSecret, VaultRotation
from tgfleet.vault import crypto
from tgfleet.vault.archive import ArchiveLimits, Entry, is_zip, iter_folder, iter_zip
from tgfleet.vault.exceptions import (
    ArchiveError,
    DecryptError,
    DuplicateSessionError,
    ImportTooLargeError,
    KeyUnavailable,
    RotationInProgress,
    SessionNotFound,
)
from tgfleet.vault.formats import (
    CanonicalSession,
    FormatPolicy,
    SessionFormat,
    auth_key_fingerprint,
    emit,
    from_record,
    parse,
    to_record,
)
from tgfleet.vault.keyring import Keyring, KeySource, add_kek, load_keyring, retire_kek
from tgfleet.vault.repository import RotationRepository, SecretRepository, lock_vault

log = get_logger(__name__)

ACTIVE = "active"
TAMPERED = "tampered"
ERASED = "erased"
REWRAP_BATCH = 500


class KeyUnavailableAudited(KeyUnavailable):
    """KeyUnavailable whose failed decrypt was audited: the unit of work keeps the record."""

    keeps_changes = True


@dataclass
class Vault:
    """The process's keyring and import limits. The keyring is reloaded from its source when
    a secret names a KEK it does not hold (another process rotated)."""

    keyring: Keyring
    policy: FormatPolicy
    limits: ArchiveLimits
    settings: Settings
    _stamp: tuple[int, int, int] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @classmethod
    def load(cls, settings: Settings) -> Vault:
        """Blocking (scrypt in passphrase mode): call from a thread inside a running loop."""
        stamp = _key_file_stamp(settings)
        return cls(
            keyring=load_keyring_for(settings),
            _stamp=stamp,
            policy=FormatPolicy(
                allowed_dc_ids=frozenset({1, 2, 3, 4, 5, *settings.vault_extra_dc_ids}),
                max_file_bytes=settings.import_max_file_bytes,
            ),
            limits=ArchiveLimits(
                max_entries=settings.import_max_entries,
                max_entry_bytes=settings.import_max_file_bytes,
                max_total_bytes=settings.import_max_total_bytes,
            ),
            settings=settings,
        )

    async def reload(self) -> Keyring:
        async with self._lock:
            stamp = _key_file_stamp(self.settings)
            self.keyring = await asyncio.to_thread(load_keyring_for, self.settings)
            self._stamp = stamp
            return self.keyring

    async def current(self) -> Keyring:
        """The keyring, reloaded first if the key file changed (another process rotated):
        new secrets must never be wrapped by a KEK that was retired meanwhile."""
        if self.keyring.source is KeySource.FILE and _key_file_stamp(self.settings) != self._stamp:
            return await self.reload()
        return self.keyring

    async def keyring_with(self, kek_id: str) -> Keyring:
        if kek_id in self.keyring.usable_ids():
            return self.keyring
        return await self.reload()


def _key_file_stamp(settings: Settings) -> tuple[int, int, int] | None:
    try:
        info = settings.effective_vault_key_file.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def load_keyring_for(settings: Settings) -> Keyring:
    return load_keyring(
        key_file=settings.effective_vault_key_file,
        env_key=settings.vault_key.get_secret_value() if settings.vault_key else None,
        passphrase=(
            settings.vault_passphrase.get_secret_value() if settings.vault_passphrase else None
        ),
        previous_keys=(
            settings.vault_previous_keys.get_secret_value()
            if settings.vault_previous_keys
            else None
        ),
        salt_file=settings.vault_salt_file,
        allow_readable_key_file=settings.vault_allow_readable_key_file,
    )


# -------------------------------------------------------------------------- import


@dataclass(frozen=True, slots=True)
class ImportResult:
    name: str
    ok: bool
    account_id: uuid.UUID | None = None
    label: str | None = None
    error: str | None = None
    detail: str | None = None


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


def _label_from_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".session", ".txt", ".session-string"):
        base = base.removesuffix(suffix)
    return base or "account"


IMPORT_CHUNK = 100


@dataclass(frozen=True, slots=True)
class _Parsed:
    entry: Entry
    record: CanonicalSession | None
    error: AppError | None
    fingerprint: str | None


def _parse_all(entries: Sequence[Entry], policy: FormatPolicy) -> list[_Parsed]:
    """Parse and validate (CPU work, run in a thread); a bad file becomes its error."""
    parsed: list[_Parsed] = []
    for entry in entries:
        try:
            record = parse(entry.data, policy, name=entry.name)
        except AppError as exc:
            parsed.append(_Parsed(entry, None, exc, None))
            continue
        parsed.append(_Parsed(entry, record, None, auth_key_fingerprint(record.auth_key)))
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
            _parse_all, entries[start : start + chunk_size], vault.policy
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


def _format_label(item: _Parsed) -> str:
    """The ``format`` label of a file: its session format, or ``unknown`` when it did not
    parse (the parser names no format for a file it refuses)."""
    return item.record.source_format.value if item.record is not None else "unknown"


async def _counted(
    items: Sequence[_Parsed], storing: Awaitable[list[ImportResult]]
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
            metrics.VAULT_IMPORTS.labels(_format_label(item), "failed").inc()
        raise
    for item, result in zip(items, results, strict=True):
        metrics.VAULT_IMPORTS.labels(_format_label(item), "ok" if result.ok else "rejected").inc()
    return results


async def _store_chunk(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    parsed: list[_Parsed],
    *,
    label: str | None,
) -> list[ImportResult]:
    async with unit_of_work(sessionmaker) as session:
        return await _store(session, vault, context, parsed, label=label)


async def _store_alone(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    item: _Parsed,
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
            session, vault, context, [_Parsed(item.entry, None, error, None)], label=label
        )


async def _store(
    session: AsyncSession,
    vault: Vault,
    context: AuditContext,
    parsed: list[_Parsed],
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
        if holder is not None and holder.state == TAMPERED and item.fingerprint not in first_file:
            # Re-importing the session of a tampered secret is how an operator recovers it.
            first_file[item.fingerprint] = item.entry.name
            recovered[index] = owners[holder.account_id]
            _reseal(holder, _record(item), keyring)
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
                label=label if exact and label else _label_from_name(parsed[i].entry.name),
                tg_user_id=_record(parsed[i]).user_id,
                dc_id=_record(parsed[i]).dc_id,
            )
            for i in fresh
        ],
        exact_label=exact,
    )
    secrets: list[SessionSecret] = []
    audits: list[audit_service.AuditEntry] = []
    created: dict[int, Account] = {}
    for index, account in zip(fresh, accounts, strict=True):
        record = _record(parsed[index])
        envelope = crypto.seal(keyring, to_record(record), account_id=account.id, version=1)
        secrets.append(
            SessionSecret(
                account_id=account.id,
                version=1,
                state=ACTIVE,
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
            record = _record(item)
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


_NO_ACCOUNT = uuid.UUID(int=0)


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
    (parsed,) = await asyncio.to_thread(_parse_all, [entry], vault.policy)
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
        metrics.VAULT_IMPORTS.labels(_format_label(parsed), "failed").inc()
        raise
    else:
        metrics.VAULT_IMPORTS.labels(_format_label(parsed), "ok").inc()
        return result
    metrics.VAULT_IMPORTS.labels(_format_label(parsed), "rejected").inc()
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


async def _replace(
    session: AsyncSession,
    vault: Vault,
    context: AuditContext,
    account_id: uuid.UUID,
    parsed: _Parsed,
) -> ReplaceResult:
    if parsed.error is not None:
        raise parsed.error
    record = _record(parsed)
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
    _reseal(secret, record, keyring)
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


def _reseal(secret: SessionSecret, record: CanonicalSession, keyring: Keyring) -> None:
    """Replace a tampered secret with a fresh envelope at the next version."""
    version = secret.version + 1
    envelope = crypto.seal(
        keyring, to_record(record), account_id=secret.account_id, version=version
    )
    secret.version = version
    secret.state = ACTIVE
    secret.source_format = record.source_format.value
    secret.kek_id = envelope.kek_id
    secret.wrapped_key = envelope.wrapped_key
    secret.nonce = envelope.nonce
    secret.ciphertext = envelope.ciphertext


def _record(item: _Parsed) -> CanonicalSession:
    if item.record is None:  # only parsed files reach the writer
        msg = f"{item.entry.name} has no parsed record"
        raise RuntimeError(msg)
    return item.record


# ---------------------------------------------------------------- decrypt / export


async def _secret_of(session: AsyncSession, account_id: uuid.UUID) -> SessionSecret:
    secret = await SecretRepository(session).get(account_id)
    if secret is None or secret.state == ERASED or secret.ciphertext is None:
        raise SessionNotFound(f"account {account_id} has no session in the vault")
    return secret


async def decrypt(
    session: AsyncSession,
    vault: Vault,
    context: AuditContext,
    account_id: uuid.UUID,
    *,
    purpose: str,
) -> CanonicalSession:
    """Decrypt an account's session into memory, audited with ``purpose`` (run, export).

    A secret that fails to decrypt (tampered ciphertext or wrapped key, a blob moved from
    another account) is marked ``tampered``, audited as a failure, and raises DecryptError;
    see :func:`decrypt_many`, which this is the single-account form of.
    """
    result = (await decrypt_many(session, vault, context, [account_id], purpose=purpose))[
        account_id
    ]
    if isinstance(result, Decrypted):
        return result.record
    if isinstance(result, KeyUnavailable):
        raise KeyUnavailableAudited(result.message) from result
    raise result


@dataclass(frozen=True, slots=True)
class Decrypted:
    """One account's session for the runtime: the record and the version it came from."""

    record: CanonicalSession
    version: int


async def decrypt_many(
    session: AsyncSession,
    vault: Vault,
    context: AuditContext,
    account_ids: Sequence[uuid.UUID],
    *,
    purpose: str,
) -> dict[uuid.UUID, Decrypted | AppError]:
    """Decrypt many sessions into memory with one query and one audit append.

    The batch form of :func:`decrypt` for the worker starting a fleet: every account gets
    its own audit record (success or failure), written together. A secret that fails to
    decrypt is marked ``tampered`` exactly as in :func:`decrypt`; a missing, erased or
    already tampered secret, or one whose KEK is not loaded, maps to its error. Nothing
    here raises for one account's problem.

    Every secret it tries to open counts in ``tgfleet_vault_decrypts_total`` (``ok`` or
    ``failed``; a missing or already tampered one is refused without a try), and the batch,
    audit append aside, is one ``tgfleet_vault_decrypt_duration_seconds`` observation.
    """
    started = time.perf_counter()
    secrets = {s.account_id: s for s in await SecretRepository(session).for_accounts(account_ids)}
    results: dict[uuid.UUID, Decrypted | AppError] = {}
    audits: list[audit_service.AuditEntry] = []
    tampered_now = False
    opened = failed = 0
    for account_id in account_ids:
        target = f"account:{account_id}"
        secret = secrets.get(account_id)
        if secret is None or secret.state == ERASED or secret.ciphertext is None:
            results[account_id] = SessionNotFound(
                f"account {account_id} has no session in the vault"
            )
            continue
        if secret.state == TAMPERED:
            results[account_id] = DecryptError(
                f"account {account_id}'s session failed to decrypt before and is unusable; "
                "re-import it"
            )
            continue
        details: dict[str, object] = {"purpose": purpose, "kek_id": secret.kek_id}
        try:
            record = await _open_secret(vault, secret)
        except KeyUnavailable as exc:
            failed += 1
            results[account_id] = exc
            audits.append(_decrypt_failed(target, details, exc))
            continue
        except AppError as exc:
            failed += 1
            secret.state = TAMPERED
            tampered_now = True
            log.error(  # noqa: TRY400 - the code says it all; no trace of key material
                "vault.decrypt_failed", account_id=str(account_id), error=exc.code
            )
            results[account_id] = DecryptError(
                f"account {account_id}'s session failed to decrypt (tampered or moved); it is "
                "marked unusable until re-imported"
            )
            audits.append(_decrypt_failed(target, details, exc))
            continue
        opened += 1
        results[account_id] = Decrypted(record=record, version=secret.version)
        audits.append(
            audit_service.AuditEntry(action="session.decrypt", target=target, details=details)
        )
    metrics.VAULT_DECRYPT_DURATION.observe(time.perf_counter() - started)
    metrics.VAULT_DECRYPTS.labels("ok").inc(opened)
    metrics.VAULT_DECRYPTS.labels("failed").inc(failed)
    if tampered_now:
        await session.flush()
    await audit_service.record_many(session, context, audits)
    return results


def _decrypt_failed(
    target: str, details: dict[str, object], error: AppError
) -> audit_service.AuditEntry:
    return audit_service.AuditEntry(
        action="session.decrypt",
        target=target,
        result=audit_service.FAILURE,
        details={**details, "error": error.code},
    )


async def update_session(
    session: AsyncSession,
    vault: Vault,
    context: AuditContext,
    account_id: uuid.UUID,
    record: CanonicalSession,
    *,
    expected_version: int,
    reason: str,
) -> int | None:
    """Write back what a running client changed (a new auth key, DC or address).

    Seals ``record`` at the next version, audited as ``session.update`` with the reason
    and the DC (never the key). Returns the new version, or ``None`` when the stored
    secret moved on meanwhile (re-imported, erased): the operator's copy wins.
    """
    await lock_vault(session, exclusive=False)
    secret = await SecretRepository(session).get(account_id)
    if secret is None or secret.state != ACTIVE or secret.version != expected_version:
        log.warning(
            "vault.update_skipped", account_id=str(account_id), reason="secret changed meanwhile"
        )
        return None
    keyring = await vault.current()
    fingerprint = auth_key_fingerprint(record.auth_key)
    key_changed = fingerprint != secret.auth_key_fingerprint
    _reseal(secret, record, keyring)
    secret.auth_key_fingerprint = fingerprint
    await session.flush()
    await audit_service.record(
        session,
        context,
        action="session.update",
        target=f"account:{account_id}",
        details={
            "reason": reason,
            "dc_id": record.dc_id,
            "version": secret.version,
            "kek_id": keyring.active.id,
            "rekeyed": key_changed,
        },
    )
    return secret.version


async def _open_secret(vault: Vault, secret: SessionSecret) -> CanonicalSession:
    """Decrypt and check one stored secret; any failure is an AppError (DecryptError)."""
    if secret.kek_id is None or secret.wrapped_key is None or secret.nonce is None:
        raise DecryptError("the secret is missing its wrapped key or nonce")
    envelope = crypto.Envelope(
        kek_id=secret.kek_id,
        wrapped_key=secret.wrapped_key,
        nonce=secret.nonce,
        ciphertext=secret.ciphertext or b"",
    )
    keyring = await vault.keyring_with(secret.kek_id)
    if secret.kek_id not in keyring.usable_ids():
        raise KeyUnavailable(
            f"the key-encryption key {secret.kek_id} of account {secret.account_id} is not in "
            "this process's keyring; load it (key file or TGFLEET_VAULT_PREVIOUS_KEYS)"
        )
    plaintext = crypto.open_envelope(
        keyring, envelope, account_id=secret.account_id, version=secret.version
    )
    record = from_record(plaintext)
    if auth_key_fingerprint(record.auth_key) != secret.auth_key_fingerprint:
        raise DecryptError("the decrypted session does not match its fingerprint")
    return record


async def export(
    session: AsyncSession,
    vault: Vault,
    context: AuditContext,
    account_id: uuid.UUID,
    *,
    fmt: SessionFormat,
    reason: str,
) -> bytes:
    """A decrypted session in ``fmt``; audited with the reason given. Counted in
    ``tgfleet_vault_exports_total`` as ``ok``, or ``failed`` whatever stopped it."""
    try:
        account = await account_service.get_account(session, account_id)
        record = await decrypt(session, vault, context, account.id, purpose="export")
        await audit_service.record(
            session,
            context,
            action="session.export",
            target=f"account:{account.id}",
            details={"label": account.label, "format": fmt.value, "reason": reason},
        )
        content = await asyncio.to_thread(emit, record, fmt)
    except Exception:
        metrics.VAULT_EXPORTS.labels("failed").inc()
        raise
    metrics.VAULT_EXPORTS.labels("ok").inc()
    return content


async def erase(session: AsyncSession, context: AuditContext, account_id: uuid.UUID) -> None:
    """Crypto-erase: the wrapped data key and ciphertext are destroyed; nothing can decrypt
    the session afterwards, whatever keys survive."""
    account = await account_service.get_account(session, account_id)
    secret = await SecretRepository(session).get(account.id)
    if secret is None or secret.state == ERASED:
        raise SessionNotFound(f"account {account_id} has no session in the vault")
    previous_kek = secret.kek_id
    secret.state = ERASED
    secret.kek_id = None
    secret.wrapped_key = None
    secret.nonce = None
    secret.ciphertext = None
    secret.auth_key_fingerprint = None
    await session.flush()
    await audit_service.record(
        session,
        context,
        action="session.delete",
        target=f"account:{account.id}",
        details={"label": account.label, "kek_id": previous_kek},
    )


async def secrets_fingerprint(
    session: AsyncSession, only: Sequence[uuid.UUID] | None = None
) -> tuple[object, ...]:
    """Changes whenever a secret is added, replaced, re-wrapped, erased or marked."""
    return await SecretRepository(session).fingerprint(only)


async def secret_versions(
    session: AsyncSession, only: Sequence[uuid.UUID] | None = None
) -> dict[uuid.UUID, tuple[int, str]]:
    """Each account's secret (version, state): what the worker polls to notice a re-import."""
    return await SecretRepository(session).versions(only)


@dataclass(frozen=True, slots=True)
class SecretSummary:
    """What a listing shows of an account's secret: never key material."""

    account_id: uuid.UUID
    state: str
    source_format: str
    version: int
    kek_id: str | None
    updated_at: datetime


async def summaries(
    session: AsyncSession, account_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, SecretSummary]:
    rows = await SecretRepository(session).summaries(account_ids)
    return {row[0]: SecretSummary(*row) for row in rows}


# ------------------------------------------------------------------------ rotation


@dataclass(frozen=True, slots=True)
class RotationReport:
    target_kek_id: str
    rewrapped: int
    failed: int
    retired: list[str]
    resumed: bool


async def rotate(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    *,
    batch_size: int = REWRAP_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> RotationReport:
    """Re-wrap every data key under a new KEK, then retire the KEKs nothing uses.

    File keyring: a new KEK is added first (unless a crashed run left a ``running``
    rotation, which is continued towards its target). Env or passphrase keyring: the
    target is the configured key; old ones come from TGFLEET_VAULT_PREVIOUS_KEYS.
    Each batch commits on its own, so a killed run loses at most one batch of work and a
    rerun continues where it stopped. Ciphertexts are never touched.

    A run counts once in ``tgfleet_vault_rotations_total``: ``ok``, or ``failed`` when it
    raised or left secrets it could not re-wrap (the old KEK then stays). Each committed
    batch adds its re-wrapped data keys to ``tgfleet_vault_rewrapped_secrets_total``.
    """
    try:
        report = await _rotate(sessionmaker, vault, context, batch_size, progress)
    except Exception:
        metrics.VAULT_ROTATIONS.labels("failed").inc()
        raise
    metrics.VAULT_ROTATIONS.labels("ok" if report.failed == 0 else "failed").inc()
    return report


async def _rotate(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> RotationReport:
    plan = await _start_rotation(sessionmaker, vault, context)
    rewrapped = failed = 0
    after: uuid.UUID | None = None
    while True:
        async with unit_of_work(sessionmaker) as session:
            batch = await SecretRepository(session).needing_rewrap(
                plan.target, after=after, limit=batch_size
            )
            if not batch:
                break
            done, bad = await _rewrap_batch(session, plan, batch)
            after = batch[-1].account_id
        metrics.VAULT_REWRAPPED.inc(done)  # committed: a killed run keeps what it counted
        rewrapped += done
        failed += bad
        if progress is not None:
            progress(rewrapped + failed, plan.total)
    retired = await _finish_rotation(sessionmaker, vault, context, plan, rewrapped, failed)
    log.info("vault.rotated", target=plan.target, rewrapped=rewrapped, failed=failed)
    return RotationReport(
        target_kek_id=plan.target,
        rewrapped=rewrapped,
        failed=failed,
        retired=retired,
        resumed=plan.resumed,
    )


@dataclass(frozen=True, slots=True)
class _RotationPlan:
    rotation_id: int
    target: str
    keyring: Keyring
    total: int
    resumed: bool


async def _start_rotation(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault, context: AuditContext
) -> _RotationPlan:
    """Continue a crashed rotation, or add the new KEK (file keyring) and record a run."""
    async with unit_of_work(sessionmaker) as session:
        rotations = RotationRepository(session)
        running = await rotations.running()
        keyring = await vault.reload()
        if running is not None and running.target_kek_id == keyring.active.id:
            target, rotation_id, resumed = running.target_kek_id, running.id, True
        else:
            if running is not None:
                running.state = "abandoned"
            if keyring.source is KeySource.FILE:
                new = await asyncio.to_thread(add_kek, vault.settings.effective_vault_key_file)
                keyring = await vault.reload()
                target = new.id
            else:
                target = keyring.active.id
            rotation = VaultRotation(target_kek_id=target, actor=context.actor)
            await rotations.add(rotation)
            rotation_id, resumed = rotation.id, False
        await audit_service.record(
            session,
            context,
            action="vault.rotate.start",
            target=f"kek:{target}",
            details={"resumed": resumed, "source": keyring.source.value},
        )
        in_use = await SecretRepository(session).count_by_kek()
    if keyring.active.id != target:
        raise RotationInProgress(
            f"the keyring's active key is {keyring.active.id} but rotation {rotation_id} "
            f"targets {target}; rerun once the keyring is consistent"
        )
    total = sum(count for kek_id, count in in_use.items() if kek_id != target)
    return _RotationPlan(rotation_id, target, keyring, total, resumed)


async def _rewrap_batch(
    session: AsyncSession, plan: _RotationPlan, batch: list[SessionSecret]
) -> tuple[int, int]:
    """Re-wrap one batch in the caller's transaction; returns (re-wrapped, failed)."""
    updates: list[tuple[uuid.UUID, int, str, bytes]] = []
    failed = 0
    for secret in batch:
        if secret.kek_id not in plan.keyring.usable_ids():
            failed += 1  # its KEK is not loaded here: a configuration problem, not tampering
            log.warning("vault.rewrap_key_missing", account_id=str(secret.account_id))
            continue
        try:
            envelope = crypto.rewrap(
                plan.keyring,
                crypto.Envelope(
                    kek_id=secret.kek_id or "",
                    wrapped_key=secret.wrapped_key or b"",
                    nonce=secret.nonce or b"",
                    ciphertext=secret.ciphertext or b"",
                ),
                account_id=secret.account_id,
                version=secret.version,
                to_kek_id=plan.target,
            )
        except DecryptError:
            failed += 1
            secret.state = TAMPERED  # the wrapped key was altered: unusable, say so
            continue
        updates.append((secret.account_id, secret.version, envelope.kek_id, envelope.wrapped_key))
    await SecretRepository(session).set_wrapped_keys(updates)
    rotation = await RotationRepository(session).get(plan.rotation_id)
    if rotation is not None:
        rotation.rewrapped += len(updates)
        rotation.failed += failed
    return len(updates), failed


async def _finish_rotation(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    plan: _RotationPlan,
    rewrapped: int,
    failed: int,
) -> list[str]:
    """Retire every KEK (file keyring) that no secret uses any more; close the run."""
    retired: list[str] = []
    async with unit_of_work(sessionmaker) as session:
        # Exclusive: imports still writing with an old KEK finish first and are counted.
        await lock_vault(session, exclusive=True)
        in_use = await SecretRepository(session).count_by_kek()
        if plan.keyring.source is KeySource.FILE:
            for kek in plan.keyring.all():
                if kek.id == plan.target or kek.key is None or in_use.get(kek.id):
                    continue
                try:
                    await asyncio.to_thread(
                        retire_kek, vault.settings.effective_vault_key_file, kek.id
                    )
                except AppError:  # not in the file (a TGFLEET_VAULT_PREVIOUS_KEYS key)
                    log.info("vault.retire_skipped", kek_id=kek.id)
                    continue
                retired.append(kek.id)
        rotation = await RotationRepository(session).get(plan.rotation_id)
        if rotation is not None:
            rotation.state = "done" if failed == 0 else "done_with_failures"
            rotation.finished_at = utcnow()
        await audit_service.record(
            session,
            context,
            action="vault.rotate.finish",
            target=f"kek:{plan.target}",
            result=audit_service.SUCCESS if failed == 0 else audit_service.FAILURE,
            details={"rewrapped": rewrapped, "failed": failed, "retired": retired},
        )
    await vault.reload()
    return retired


@dataclass(frozen=True, slots=True)
class KekStatus:
    id: str
    state: str  # active, usable (still decrypts), retired, missing (used by secrets, not held)
    secrets: int
    created_at: str | None
    retired_at: str | None


@dataclass(frozen=True, slots=True)
class VaultStatus:
    source: str
    active_kek_id: str
    keks: list[KekStatus]
    secrets_by_state: dict[str, int]
    last_rotation: VaultRotation | None


async def status(session: AsyncSession, vault: Vault) -> VaultStatus:
    """KEKs with how many secrets each wraps, secrets by state, the last rotation."""
    secrets = SecretRepository(session)
    in_use = await secrets.count_by_kek()
    keyring = vault.keyring
    keks: list[KekStatus] = []
    for kek in keyring.all():
        if kek.id == keyring.active.id:
            state = "active"
        elif kek.key is None:
            state = "retired"
        else:
            state = "usable"
        keks.append(
            KekStatus(
                id=kek.id,
                state=state,
                secrets=in_use.pop(kek.id, 0),
                created_at=kek.created_at.isoformat() if kek.created_at else None,
                retired_at=kek.retired_at.isoformat() if kek.retired_at else None,
            )
        )
    keks.extend(
        KekStatus(id=kek_id, state="missing", secrets=count, created_at=None, retired_at=None)
        for kek_id, count in sorted(in_use.items())
    )
    return VaultStatus(
        source=keyring.source.value,
        active_kek_id=keyring.active.id,
        keks=keks,
        secrets_by_state=await secrets.count_by_state(),
        last_rotation=await RotationRepository(session).latest(),
    )
