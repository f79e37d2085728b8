"""The stored sessions of accounts: decrypt, write back, export, erase, list.

Key material exists in plaintext only in memory, for as long as one call needs it. Every
decrypt, export and erase writes an audit record. A secret that fails authentication is
audited and marked ``tampered`` (unusable until its session is re-imported); a secret whose
KEK is merely not loaded is audited and left as it is.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet import metrics
from tgfleet.account import service as account_service
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.exceptions import AppError
from tgfleet.logging import get_logger
from tgfleet.models import SecretState, SessionSecret
from tgfleet.vault import crypto
from tgfleet.vault.exceptions import DecryptError, KeyUnavailable, SessionNotFound
from tgfleet.vault.formats import (
    CanonicalSession,
    SessionFormat,
    auth_key_fingerprint,
    emit,
    from_record,
    to_record,
)
from tgfleet.vault.kek import Keyring
from tgfleet.vault.repository import SecretRepository, lock_vault
from tgfleet.vault.vault import Vault

log = get_logger(__name__)


class KeyUnavailableAudited(KeyUnavailable):
    """KeyUnavailable whose failed decrypt was audited: the unit of work keeps the record."""

    keeps_changes = True


def reseal(secret: SessionSecret, record: CanonicalSession, keyring: Keyring) -> None:
    """Replace a tampered secret with a fresh envelope at the next version."""
    version = secret.version + 1
    envelope = crypto.seal(
        keyring, to_record(record), account_id=secret.account_id, version=version
    )
    secret.version = version
    secret.state = SecretState.ACTIVE
    secret.source_format = record.source_format.value
    secret.kek_id = envelope.kek_id
    secret.wrapped_key = envelope.wrapped_key
    secret.nonce = envelope.nonce
    secret.ciphertext = envelope.ciphertext


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
        if secret is None or secret.state == SecretState.ERASED or secret.ciphertext is None:
            results[account_id] = SessionNotFound(
                f"account {account_id} has no session in the vault"
            )
            continue
        if secret.state == SecretState.TAMPERED:
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
            secret.state = SecretState.TAMPERED
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
    if secret is None or secret.state != SecretState.ACTIVE or secret.version != expected_version:
        log.warning(
            "vault.update_skipped", account_id=str(account_id), reason="secret changed meanwhile"
        )
        return None
    keyring = await vault.current()
    fingerprint = auth_key_fingerprint(record.auth_key)
    key_changed = fingerprint != secret.auth_key_fingerprint
    reseal(secret, record, keyring)
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


#: The media type of an exported session, by format.
EXPORT_MEDIA_TYPES: dict[SessionFormat, str] = {
    SessionFormat.TELETHON: "application/vnd.sqlite3",
    SessionFormat.PYROGRAM: "application/vnd.sqlite3",
    SessionFormat.TELETHON_STRING: "text/plain",
    SessionFormat.PYROGRAM_STRING: "text/plain",
}


@dataclass(frozen=True, slots=True)
class Download:
    """How an exported session is sent: an attachment, never cached."""

    media_type: str
    headers: dict[str, str]


def export_download(account_id: uuid.UUID, fmt: SessionFormat) -> Download:
    """The response of an :func:`export` (the API's and the console's are the same)."""
    suffix = ".session" if fmt in {SessionFormat.TELETHON, SessionFormat.PYROGRAM} else ".txt"
    return Download(
        media_type=EXPORT_MEDIA_TYPES[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="{account_id}{suffix}"',
            "Cache-Control": "no-store",
        },
    )


async def erase(session: AsyncSession, context: AuditContext, account_id: uuid.UUID) -> None:
    """Crypto-erase: the wrapped data key and ciphertext are destroyed; nothing can decrypt
    the session afterwards, whatever keys survive."""
    account = await account_service.get_account(session, account_id)
    secret = await SecretRepository(session).get(account.id)
    if secret is None or secret.state == SecretState.ERASED:
        raise SessionNotFound(f"account {account_id} has no session in the vault")
    previous_kek = secret.kek_id
    secret.state = SecretState.ERASED
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


async def tampered(session: AsyncSession, *, limit: int = 100) -> list[SecretSummary]:
    """The secrets marked ``tampered`` (a decrypt or a rotation found them altered), the
    most recent first: what the vault knows without decrypting anything. Each is recovered
    by importing its session again, or erased."""
    rows = await SecretRepository(session).in_state(SecretState.TAMPERED, limit=limit)
    return [SecretSummary(*row) for row in rows]
