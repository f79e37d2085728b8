"""Audit service: append records to the hash chain, query them, verify the chain.

``record`` runs inside the caller's unit of work, so the record and the change it describes
commit or roll back together. If the record cannot be written (the database, or no audit
key) the caller's change is rolled back too and the client gets a 503 (fail closed).

Every record is keyed: its ``mac`` is an HMAC of its chain hash under this process's active
audit key (``tgfleet.audit.keys``), so a rewrite needs the key, not only the database.
Records written before the chain was keyed have no MAC; they may only precede keyed ones.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet import metrics
from tgfleet.audit import checkpoint as audit_checkpoint
from tgfleet.audit import keys as audit_keys
from tgfleet.audit.chain import GENESIS_HASH, ChainedFields, chain_hash
from tgfleet.audit.checkpoint import Checkpoint
from tgfleet.audit.exceptions import AuditKeyError, AuditWriteFailed, CheckpointError
from tgfleet.audit.keys import AuditKeyring
from tgfleet.audit.repository import AuditRepository
from tgfleet.audit.schemas import AuditContext, AuditFilters, AuditRecordRead, AuditVerifyRead
from tgfleet.config import Settings
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.keyfile import KeyCheck
from tgfleet.kit.pagination import DEFAULT_LIMIT, Slice, decode_cursor, slice_rows
from tgfleet.logging import REDACTED, get_logger, is_secret_key
from tgfleet.models import AuditChainHead, AuditRecord

log = get_logger(__name__)

SUCCESS = "success"
FAILURE = "failure"
DENIED = "denied"


def scrub(details: Mapping[str, Any]) -> dict[str, Any]:
    """Copy ``details`` with the value of every secret-looking key replaced (recursively)."""

    def clean(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                str(k): (REDACTED if is_secret_key(str(k)) else clean(v)) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    cleaned: dict[str, Any] = clean(details)
    return cleaned


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One record to append: what happened to what, and how it ended."""

    action: str
    target: str
    result: str = SUCCESS
    details: Mapping[str, Any] | None = None


async def record(
    session: AsyncSession,
    context: AuditContext,
    *,
    action: str,
    target: str,
    result: str = SUCCESS,
    details: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Append one record to the chain in the caller's transaction."""
    (entry,) = await record_many(
        session, context, [AuditEntry(action=action, target=target, result=result, details=details)]
    )
    return entry


async def record_many(
    session: AsyncSession, context: AuditContext, entries: Sequence[AuditEntry]
) -> list[AuditRecord]:
    """Append several records in the caller's transaction, with three statements whatever
    their number (a bulk import audits every file without a round trip per file).

    Every append is timed (``tgfleet_audit_write_duration_seconds``, failed ones too) and
    counts its records in ``tgfleet_audit_writes_total``, or one failure in
    ``tgfleet_audit_write_failures_total``. The counter says what was appended: a record
    still rolls back with the caller's unit of work if that fails later.
    """
    if not entries:
        return []
    started = time.perf_counter()
    try:
        rows = await _append(session, context, entries)
    except Exception:
        metrics.AUDIT_WRITE_FAILURES.inc()
        raise
    finally:
        metrics.AUDIT_WRITE_DURATION.observe(time.perf_counter() - started)
    metrics.AUDIT_WRITES.inc(len(rows))
    return rows


async def _append(
    session: AsyncSession, context: AuditContext, entries: Sequence[AuditEntry]
) -> list[AuditRecord]:
    """Lock the chain head, chain the records to it, insert them, move the head."""
    repository = AuditRepository(session)
    msg = "the audit log could not be written, so the change was not made"
    try:
        key = (await audit_keys.current()).active
    except AuditKeyError as exc:
        # The detail (a path, a setting) is for the operator's log, not the client.
        log.error(  # noqa: TRY400 - the message says it all; a traceback adds nothing
            "audit.key_unavailable", action=entries[0].action, error=exc.message
        )
        raise AuditWriteFailed(msg) from exc
    try:
        last_seq, prev_hash = await repository.advance_head(len(entries))
        now = utcnow()
        rows: list[AuditRecord] = []
        for offset, item in enumerate(entries):
            fields = ChainedFields(
                seq=last_seq - len(entries) + 1 + offset,
                at=now,
                actor=context.actor,
                action=item.action,
                target=item.target,
                result=item.result,
                ip=context.ip,
                request_id=context.request_id,
                details=scrub(item.details or {}),
            )
            hash_ = chain_hash(prev_hash, fields)
            rows.append(
                AuditRecord(
                    seq=fields.seq,
                    at=fields.at,
                    actor=fields.actor,
                    action=fields.action,
                    target=fields.target,
                    result=fields.result,
                    ip=fields.ip,
                    request_id=fields.request_id,
                    details=fields.details,
                    prev_hash=prev_hash,
                    hash=hash_,
                    key_id=key.id,
                    mac=key.record_mac(hash_),
                )
            )
            prev_hash = hash_
        await repository.add_all(rows)
        await repository.set_head_hash(last_seq, prev_hash)
    except SQLAlchemyError as exc:
        log.exception("audit.write_failed", action=entries[0].action, error=type(exc).__name__)
        raise AuditWriteFailed(msg) from exc
    return rows


async def search(
    session: AsyncSession,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Slice[AuditRecord]:
    """Records newest first, filtered; ``cursor`` continues where the last page ended."""
    key = decode_cursor(cursor)
    before_seq = int(key["seq"]) if key and isinstance(key.get("seq"), int) else None
    repository = AuditRepository(session)
    filters = AuditFilters(actor=actor, action=action, target=target, since=since, until=until)
    statement = repository.search(filters, before_seq=before_seq).limit(limit + 1)
    rows = await repository.all(statement)
    return slice_rows(rows, limit, lambda entry: {"seq": entry.seq})


async def get(session: AsyncSession, seq: int) -> AuditRecord | None:
    """One record by its sequence number."""
    return await AuditRepository(session).get(seq)


async def record_export(
    session: AsyncSession, context: AuditContext, *, reason: str, filters: AuditFilters
) -> None:
    """Write the ``audit.export`` record (the reason and the filters) in the caller's unit
    of work, which commits BEFORE the first line of ``export_lines`` is read: an export
    that cannot be audited does not start."""
    await record(
        session,
        context,
        action="audit.export",
        target="audit",
        details={"reason": reason, "filters": filters.described()},
    )


#: The media type of an export: one JSON object per line.
EXPORT_MEDIA_TYPE = "application/x-ndjson"


def export_headers() -> dict[str, str]:
    """An export's download headers (the API's and the console's)."""
    return {
        "Content-Disposition": 'attachment; filename="tgfleet-audit.jsonl"',
        "Cache-Control": "no-store",
    }


async def export_lines(
    sessionmaker: async_sessionmaker[AsyncSession], filters: AuditFilters
) -> AsyncIterator[str]:
    """The filtered records, oldest first, one JSON object per line (the fields of
    ``GET /api/v1/audit`` and ``tgfleet audit export``, hashes included, so the file can be
    checked offline), read in one consistent snapshot in batches."""
    async with unit_of_work(sessionmaker, read_only=True) as session:
        async for entry in AuditRepository(session).filtered_ascending(filters):
            yield AuditRecordRead.model_validate(entry).model_dump_json() + "\n"


async def count(session: AsyncSession, *, action: str, result: str, since: datetime) -> int:
    """How many records of ``action`` with ``result`` were written since ``since`` (the
    alert evaluator counts failed ``session.decrypt`` this way, fleet-wide)."""
    return await AuditRepository(session).count_results(action=action, result=result, since=since)


async def stream(
    session: AsyncSession, *, since: datetime | None = None
) -> AsyncIterator[AuditRecord]:
    async for entry in AuditRepository(session).stream_ascending(since=since):
        yield entry


class _Broken(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


@dataclass(slots=True)
class _Walk:
    """What a verification has seen so far."""

    keyring: AuditKeyring | None
    checkpoints: dict[int, list[Checkpoint]]
    count: int = 0
    unkeyed: int = 0
    keyed: int = 0
    prev_hash: str = GENESIS_HASH

    def check(self, entry: AuditRecord) -> None:
        expected = self.count + 1
        if entry.seq != expected:
            raise _Broken(expected, f"record {expected} is missing (next stored is {entry.seq})")
        if entry.prev_hash != self.prev_hash:
            raise _Broken(entry.seq, "prev_hash does not match the hash of the record before it")
        if chain_hash(self.prev_hash, ChainedFields.of(entry)) != entry.hash:
            raise _Broken(entry.seq, "hash does not match the record's content")
        self._check_mac(entry)
        for checkpoint in self.checkpoints.get(entry.seq, ()):
            if not hmac.compare_digest(checkpoint.hash, entry.hash):
                raise _Broken(
                    entry.seq,
                    f"the record differs from the checkpoint published at {checkpoint.at}: "
                    f"the log was rewritten",
                )
        self.prev_hash = entry.hash
        self.count += 1

    def _check_mac(self, entry: AuditRecord) -> None:
        if entry.mac is None and entry.key_id is None:
            if self.keyed:
                raise _Broken(
                    entry.seq,
                    "the record has no MAC but follows keyed records (it was rewritten "
                    "without the audit key)",
                )
            self.unkeyed += 1
            return
        if entry.mac is None or entry.key_id is None:
            raise _Broken(entry.seq, "the record has a key id or a MAC, not both")
        self.keyed += 1
        if self.keyring is None:
            return
        key = self.keyring.find(entry.key_id)
        if key is None:
            raise _Broken(
                entry.seq,
                f"the record is keyed by audit key {entry.key_id}, which is not loaded "
                f"(restore the audit key file or set TGFLEET_AUDIT_PREVIOUS_KEYS)",
            )
        if not hmac.compare_digest(key.record_mac(entry.hash), entry.mac):
            raise _Broken(
                entry.seq,
                "the MAC does not match: the record was rewritten without the audit key",
            )


async def verify(
    session: AsyncSession,
    *,
    keyring: AuditKeyring | None = None,
    checkpoints: Sequence[Checkpoint] = (),
) -> AuditVerifyRead:
    """Walk the whole chain; report the first seq that is missing, moved, altered, not
    keyed by ``keyring`` or different from one of ``checkpoints``.

    Without ``keyring`` the MACs are not checked (``macs_checked`` is false): the hashes,
    the head and the checkpoints still are, which needs no secret.
    """
    by_seq: dict[int, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        by_seq.setdefault(checkpoint.seq, []).append(checkpoint)
    walk = _Walk(keyring=keyring, checkpoints=by_seq)
    repository = AuditRepository(session)
    try:
        _check_signers(keyring, checkpoints)
        async for entry in repository.stream_ascending():
            walk.check(entry)
        _check_end(walk, await repository.head())
    except _Broken as broken:
        return _result(walk, ok=False, first_bad_seq=broken.seq, reason=broken.reason)
    return _result(walk, ok=True)


async def verify_configured(session: AsyncSession, settings: Settings) -> AuditVerifyRead:
    """``verify`` with this process's audit keys and the configured checkpoint file (if it
    exists yet); a checkpoint file that cannot be used is reported as the failure."""
    keyring = await audit_keys.current()
    path = settings.effective_audit_checkpoint_file
    try:
        checkpoints = await asyncio.to_thread(_read_checkpoints, path)
    except CheckpointError as exc:
        return AuditVerifyRead(ok=False, count=0, reason=exc.message, macs_checked=True)
    return await verify(session, keyring=keyring, checkpoints=checkpoints)


def _read_checkpoints(path: Path) -> list[Checkpoint]:
    return audit_checkpoint.read_file(path) if path.exists() else []


def _check_signers(keyring: AuditKeyring | None, checkpoints: Sequence[Checkpoint]) -> None:
    """With the keys at hand, a checkpoint must be signed by one of them: one signed by
    another key (whoever replaced the checkpoint file too) proves nothing."""
    if keyring is None:
        return
    for checkpoint in checkpoints:
        if keyring.find(checkpoint.key_id) is None:
            raise _Broken(
                None,
                f"the checkpoint of seq {checkpoint.seq} published at {checkpoint.at} is "
                f"signed by audit key {checkpoint.key_id}, which is not one of this "
                f"tgfleet's audit keys",
            )


def _check_end(walk: _Walk, head: AuditChainHead | None) -> None:
    count = walk.count
    if head is None:
        raise _Broken(1, "the chain head row is missing")
    if head.seq > count:
        raise _Broken(
            count + 1, f"the log ends at seq {count} but the chain head names seq {head.seq}"
        )
    if head.seq < count:
        raise _Broken(
            head.seq + 1, f"records after seq {head.seq} were added without the chain head"
        )
    if head.hash != walk.prev_hash:
        raise _Broken(max(count, 1), "the chain head's hash does not match the last record")
    beyond = [seq for seq in walk.checkpoints if seq > count]
    if beyond:
        seq = min(beyond)
        at = walk.checkpoints[seq][0].at
        raise _Broken(
            count + 1,
            f"the log ends at seq {count} but a checkpoint published at {at} names seq "
            f"{seq}: records were removed",
        )


def _result(
    walk: _Walk, *, ok: bool, first_bad_seq: int | None = None, reason: str | None = None
) -> AuditVerifyRead:
    return AuditVerifyRead(
        ok=ok,
        count=walk.count,
        first_bad_seq=first_bad_seq,
        reason=reason,
        keyed=walk.keyed,
        unkeyed=walk.unkeyed,
        macs_checked=walk.keyring is not None,
        checkpoints=sum(len(found) for seq, found in walk.checkpoints.items() if seq <= walk.count),
    )


async def keys_in_use(session: AsyncSession) -> dict[str, int]:
    """Each audit key id that keyed records, and how many."""
    return await AuditRepository(session).records_per_key()


async def check_keys(session: AsyncSession, keyring: AuditKeyring) -> list[KeyCheck]:
    """For every audit key id in use: verify the MAC of its newest record with ``keyring``
    (without the key the records it keyed cannot be verified, and ``audit verify`` fails)."""
    repository = AuditRepository(session)
    checks: list[KeyCheck] = []
    for key_id, count in sorted((await repository.records_per_key()).items()):
        key = keyring.find(key_id)
        problem = None
        if key is None:
            problem = (
                f"audit key {key_id} keyed {count} record(s) and is not in the configured "
                f"audit keyring (it holds {', '.join(keyring.ids())})"
            )
        else:
            newest = await repository.newest_keyed_by(key_id)
            if newest is not None and not hmac.compare_digest(
                key.record_mac(newest.hash), newest.mac or ""
            ):
                problem = f"audit key {key_id}: record {newest.seq}'s MAC does not verify"
        checks.append(KeyCheck(key_id, count, problem))
    return checks
