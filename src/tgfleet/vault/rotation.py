"""Key rotation (re-wrap every data key under a new KEK, retire the old ones) and the key status.

A rotation runs in batches, each committed on its own, and is recorded in
``vault_rotation`` so a killed run is continued by the next one. Ciphertexts are never
touched: only the wrapped data keys change.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import metrics
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.exceptions import AppError
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.logging import get_logger
from tgfleet.models import RotationState, SecretState, SessionSecret, VaultRotation
from tgfleet.vault import crypto
from tgfleet.vault.exceptions import DecryptError, RotationInProgress
from tgfleet.vault.kek import Keyring, KeySource
from tgfleet.vault.keyring import add_kek, retire_kek
from tgfleet.vault.repository import (
    RotationRepository,
    SecretRepository,
    lock_vault,
    rotation_lock,
)
from tgfleet.vault.vault import Vault

log = get_logger(__name__)

REWRAP_BATCH = 500


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

    ``progress(done, total)`` is called once the run knows how many data keys it re-wraps
    (``done`` 0) and after each committed batch (re-wrapped and failed so far).

    One rotation runs at a time across every process (``_alone``): a second one started
    meanwhile raises ``RotationInProgress`` before it changes anything.

    A run counts once in ``tgfleet_vault_rotations_total``: ``ok``, or ``failed`` when it
    raised or left secrets it could not re-wrap (the old KEK then stays). Each committed
    batch adds its re-wrapped data keys to ``tgfleet_vault_rewrapped_secrets_total``.
    """
    async with _alone(sessionmaker, vault):  # refused before anything: not counted
        try:
            report = await _rotate(sessionmaker, vault, context, batch_size, progress)
        except Exception:
            metrics.VAULT_ROTATIONS.labels("failed").inc()
            raise
    metrics.VAULT_ROTATIONS.labels("ok" if report.failed == 0 else "failed").inc()
    return report


#: The file a rotation holds an exclusive ``flock`` on (SQLite: one host), in the data dir.
ROTATION_LOCK_FILE = "vault-rotation.lock"


@asynccontextmanager
async def _alone(
    sessionmaker: async_sessionmaker[AsyncSession], vault: Vault
) -> AsyncIterator[None]:
    """Hold the rotation lock for the run, or raise ``RotationInProgress`` at once.

    Two concurrent runs would each add a KEK (key-file keyring), re-wrap the same secrets
    to different targets, and one's end could retire the key the other is still wrapping
    with. PostgreSQL: a session advisory lock (any number of hosts); SQLite: an exclusive
    ``flock`` on a file in the data directory (its processes share the host and the file).
    """
    busy = "another key rotation is running; wait for it to finish, then check the status"
    engine = sessionmaker.kw["bind"]
    async with rotation_lock(engine) as taken:
        if not taken:
            raise RotationInProgress(busy)
        if engine.dialect.name == "postgresql":
            yield
            return
        path = vault.settings.data_dir / ROTATION_LOCK_FILE
        descriptor = await asyncio.to_thread(_open_lock_file, path)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RotationInProgress(busy) from None
            yield
        finally:
            os.close(descriptor)  # closing drops the flock


def _open_lock_file(path: Path) -> int:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


async def _rotate(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> RotationReport:
    plan = await _start_rotation(sessionmaker, vault, context)
    if progress is not None:
        progress(0, plan.total)
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
                running.state = RotationState.ABANDONED
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
            secret.state = SecretState.TAMPERED  # the wrapped key was altered: unusable, say so
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
            rotation.state = RotationState.DONE if failed == 0 else RotationState.DONE_WITH_FAILURES
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
