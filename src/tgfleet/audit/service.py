"""Audit service: append records to the hash chain, query them, verify the chain.

``record`` runs inside the caller's unit of work, so the record and the change it describes
commit or roll back together. If the record cannot be written the caller's change is
rolled back too and the client gets a 503 (fail closed).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet import metrics
from tgfleet.audit.chain import GENESIS_HASH, ChainedFields, chain_hash
from tgfleet.audit.exceptions import AuditWriteFailed
from tgfleet.audit.repository import AuditRepository
from tgfleet.audit.schemas import AuditContext, AuditVerifyRead
from tgfleet.kit.clock import utcnow
from tgfleet.kit.pagination import DEFAULT_LIMIT, Slice, decode_cursor, slice_rows
from tgfleet.logging import REDACTED, get_logger, is_secret_key
from tgfleet.models import AuditRecord

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
                )
            )
            prev_hash = hash_
        await repository.add_all(rows)
        await repository.set_head_hash(last_seq, prev_hash)
    except SQLAlchemyError as exc:
        log.exception("audit.write_failed", action=entries[0].action, error=type(exc).__name__)
        msg = "the audit log could not be written, so the change was not made"
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
    statement = repository.search(
        actor=actor, action=action, target=target, since=since, until=until, before_seq=before_seq
    ).limit(limit + 1)
    rows = await repository.all(statement)
    return slice_rows(rows, limit, lambda entry: {"seq": entry.seq})


async def count(session: AsyncSession, *, action: str, result: str, since: datetime) -> int:
    """How many records of ``action`` with ``result`` were written since ``since`` (the
    alert evaluator counts failed ``session.decrypt`` this way, fleet-wide)."""
    return await AuditRepository(session).count_results(action=action, result=result, since=since)


async def stream(
    session: AsyncSession, *, since: datetime | None = None
) -> AsyncIterator[AuditRecord]:
    async for entry in AuditRepository(session).stream_ascending(since=since):
        yield entry


async def verify(session: AsyncSession) -> AuditVerifyRead:
    """Walk the whole chain; report the first seq that is missing, moved or altered."""
    repository = AuditRepository(session)
    expected_seq = 1
    prev_hash = GENESIS_HASH
    count = 0
    async for entry in repository.stream_ascending():
        if entry.seq != expected_seq:
            return AuditVerifyRead(
                ok=False,
                count=count,
                first_bad_seq=expected_seq,
                reason=f"record {expected_seq} is missing (next stored is {entry.seq})",
            )
        if entry.prev_hash != prev_hash:
            return AuditVerifyRead(
                ok=False,
                count=count,
                first_bad_seq=entry.seq,
                reason="prev_hash does not match the hash of the record before it",
            )
        fields = ChainedFields(
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            result=entry.result,
            ip=entry.ip,
            request_id=entry.request_id,
            details=entry.details,
        )
        if chain_hash(prev_hash, fields) != entry.hash:
            return AuditVerifyRead(
                ok=False,
                count=count,
                first_bad_seq=entry.seq,
                reason="hash does not match the record's content",
            )
        prev_hash = entry.hash
        count += 1
        expected_seq += 1
    head = await repository.head()
    if head is None:
        return AuditVerifyRead(
            ok=False, count=count, first_bad_seq=1, reason="the chain head row is missing"
        )
    if head.seq > count:
        return AuditVerifyRead(
            ok=False,
            count=count,
            first_bad_seq=count + 1,
            reason=f"the log ends at seq {count} but the chain head names seq {head.seq}",
        )
    if head.seq < count:
        return AuditVerifyRead(
            ok=False,
            count=count,
            first_bad_seq=head.seq + 1,
            reason=f"records after seq {head.seq} were added without the chain head",
        )
    if head.hash != prev_hash:
        return AuditVerifyRead(
            ok=False,
            count=count,
            first_bad_seq=max(count, 1),
            reason="the chain head's hash does not match the last record",
        )
    return AuditVerifyRead(ok=True, count=count)
