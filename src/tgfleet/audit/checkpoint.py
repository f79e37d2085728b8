"""Checkpoints: the chain head, signed, published outside the database.

A checkpoint is one JSON line::

    {"format": "tgfleet-audit-checkpoint", "version": 1, "seq": 1234, "hash": "<hex>",
     "key_id": "<id>", "public_key": "<base64>", "at": "2026-12-07T04:00:00.000000Z",
     "signature": "<base64>"}

``hash`` is record ``seq``'s chain hash, which depends on every record up to it. The
signature is Ed25519, by the signing key derived from audit key ``key_id``, over the
canonical JSON (sorted keys, no blanks) of every other field; ``key_id`` is the fingerprint
of ``public_key`` (see ``tgfleet.audit.keys``). Whoever has a checkpoint can check it, and
the log against it, without any secret: a log rewritten up to ``seq`` no longer has that
hash there.

``CheckpointPublisher`` runs in every API process: it checks the head every few seconds and,
once ``audit_checkpoint_every_records`` records were appended or
``audit_checkpoint_every_seconds`` passed with at least one, claims the checkpoint in the
database (so one process publishes each) and writes it to the configured sinks: a file
(appended, 0600, fsynced), standard output, a webhook. A checkpoint whose sinks failed is
published again at the next check.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from cryptography.exceptions import InvalidSignature
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.audit import keys as audit_keys
from tgfleet.audit.chain import open_document
from tgfleet.audit.exceptions import CheckpointError
from tgfleet.audit.keys import AuditKey, key_id_of, public_key_from
from tgfleet.audit.repository import AuditRepository
from tgfleet.config import Settings
from tgfleet.kit.clock import isoformat, utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.lifecycle import TaskLifecycle
from tgfleet.logging import get_logger
from tgfleet.models import AuditChainHead

FORMAT = "tgfleet-audit-checkpoint"
VERSION = 1
WEBHOOK_TIMEOUT_SECONDS = 10.0
MAX_CHECK_SECONDS = 5.0
MAX_LINE_BYTES = 4096

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    key_id: str
    public_key: str
    at: str
    signature: str = ""

    def signed_part(self) -> bytes:
        document = {
            "format": FORMAT,
            "version": VERSION,
            "seq": self.seq,
            "hash": self.hash,
            "key_id": self.key_id,
            "public_key": self.public_key,
            "at": self.at,
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def to_line(self) -> str:
        document = json.loads(self.signed_part())
        document["signature"] = self.signature
        return json.dumps(document, sort_keys=True, separators=(",", ":"))


def sign(key: AuditKey, *, seq: int, hash_: str, at: datetime) -> Checkpoint:
    """The checkpoint of record ``seq`` with chain hash ``hash_``, signed by ``key``."""
    unsigned = Checkpoint(
        seq=seq,
        hash=hash_,
        key_id=key.id,
        public_key=base64.b64encode(key.public_key).decode("ascii"),
        at=isoformat(at),
    )
    signature = base64.b64encode(key.sign(unsigned.signed_part())).decode("ascii")
    return replace(unsigned, signature=signature)


def parse(line: str, *, where: str) -> Checkpoint:
    """One checkpoint line, its signature checked against the public key it carries and that
    key against its id; ``CheckpointError`` naming ``where`` otherwise."""

    def bad(reason: str) -> CheckpointError:
        return CheckpointError(f"{where}: {reason}")

    document = open_document(line, format_name=FORMAT, version=VERSION, bad=bad)
    seq = document.get("seq")
    strings = {name: document.get(name) for name in ("hash", "key_id", "public_key", "at")}
    signature = document.get("signature")
    if type(seq) is not int or seq < 1:
        raise bad("seq must be a positive integer")
    if not all(isinstance(value, str) for value in strings.values()) or not isinstance(
        signature, str
    ):
        raise bad("hash, key_id, public_key, at and signature must be strings")
    checkpoint = Checkpoint(seq=seq, signature=signature, **strings)  # type: ignore[arg-type]
    try:
        public = public_key_from(checkpoint.public_key)
        raw_signature = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        raise bad("public_key or signature is not valid base64 of an Ed25519 key") from None
    if key_id_of(base64.b64decode(checkpoint.public_key)) != checkpoint.key_id:
        raise bad(f"key_id {checkpoint.key_id} is not the id of its public key")
    try:
        public.verify(raw_signature, checkpoint.signed_part())
    except InvalidSignature:
        raise bad(f"the signature does not verify (seq {seq} was altered or forged)") from None
    return checkpoint


def read_file(path: Path) -> list[Checkpoint]:
    """Every checkpoint in a JSON-lines file (blank lines skipped), each one checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"checkpoint file {path} does not exist"
        raise CheckpointError(msg) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read checkpoint file {path}: {exc}"
        raise CheckpointError(msg) from None
    checkpoints = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if len(line) > MAX_LINE_BYTES:
                msg = f"{path} line {number}: longer than {MAX_LINE_BYTES} characters"
                raise CheckpointError(msg)
            checkpoints.append(parse(line, where=f"{path} line {number}"))
    return checkpoints


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to ``path`` (created 0600; never through a symlink), then fsync."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointPublisher(TaskLifecycle):
    """Publishes checkpoints from one process; ``start``/``stop`` own its task."""

    task_name = "audit-checkpoints"

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._every_records = settings.audit_checkpoint_every_records
        self._every = timedelta(seconds=settings.audit_checkpoint_every_seconds)
        self._check_seconds = min(MAX_CHECK_SECONDS, settings.audit_checkpoint_every_seconds)
        self._file = settings.effective_audit_checkpoint_file
        self._stdout = settings.audit_checkpoint_stdout
        webhook = settings.audit_checkpoint_webhook_url
        self._webhook = webhook.get_secret_value() if webhook is not None else None

    async def _run(self) -> None:
        while True:
            try:
                await self.publish_due()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a failed check
                log.warning("audit.checkpoint_failed", error=type(exc).__name__)
            await asyncio.sleep(self._check_seconds)

    async def publish_due(self, *, force: bool = False) -> Checkpoint | None:
        """Publish a checkpoint of the head if one is due (``force``: whenever the head moved
        since the last). Returns it, or None when none was due."""
        keyring = await audit_keys.current()
        now = utcnow()
        # A snapshot first: most checks find nothing due and then take no write lock.
        async with unit_of_work(self._sessionmaker, read_only=True) as session:
            if not self._due(await AuditRepository(session).head(), now, force=force):
                return None
        async with unit_of_work(self._sessionmaker) as session:
            repository = AuditRepository(session)
            head = await repository.lock_head()
            if head is None or not self._due(head, now, force=force):
                return None  # another process published it meanwhile
            previous_seq, previous_at = head.checkpoint_seq, head.checkpoint_at
            checkpoint = sign(keyring.active, seq=head.seq, hash_=head.hash, at=now)
            await repository.mark_checkpoint(head.seq, now)
        try:
            await self._publish(checkpoint)
        except Exception:
            # Give the claim back so the next check publishes again.
            async with unit_of_work(self._sessionmaker) as session:
                await AuditRepository(session).unmark_checkpoint(
                    checkpoint.seq, previous_seq, previous_at
                )
            raise
        log.info("audit.checkpoint", seq=checkpoint.seq, key_id=checkpoint.key_id)
        return checkpoint

    def _due(self, head: AuditChainHead | None, now: datetime, *, force: bool) -> bool:
        if head is None or head.seq <= head.checkpoint_seq:
            return False
        return (
            force
            or head.checkpoint_at is None
            or head.seq - head.checkpoint_seq >= self._every_records
            or now - head.checkpoint_at >= self._every
        )

    async def _publish(self, checkpoint: Checkpoint) -> None:
        line = checkpoint.to_line()
        await asyncio.to_thread(append_line, self._file, line)
        if self._stdout:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        if self._webhook is not None:
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS) as client:
                response = await client.post(
                    self._webhook,
                    content=line.encode("utf-8"),
                    headers={"Content-Type": "application/json"},
                )
            if response.status_code >= 300:
                # The status only: the URL may hold a secret path or token.
                msg = f"the checkpoint webhook answered {response.status_code}"
                raise CheckpointError(msg)


@contextlib.asynccontextmanager
async def audit_runtime(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[None]:
    """An API process's audit side: its keys loaded now (a bad key stops the start, not the
    first change) and, unless turned off, the checkpoint publisher for its lifetime."""
    audit_keys.configure(settings)
    await audit_keys.current()
    publisher = CheckpointPublisher(settings, sessionmaker)
    if settings.audit_checkpoints_enabled:
        publisher.start()
    try:
        yield
    finally:
        await publisher.stop()
