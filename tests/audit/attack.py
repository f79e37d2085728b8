"""What an attacker holding only the database can do to the audit log: rewrite records and
recompute every public hash and the head. Shared by the audit tests."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.audit import service as audit_service
from tgfleet.audit.chain import GENESIS_HASH, ChainedFields, chain_hash
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AuditChainHead, AuditRecord

EXPORTER = AuditContext(actor="user:alice", ip="192.0.2.7", request_id="req-export")


async def append_exports(maker: async_sessionmaker[AsyncSession], count: int) -> None:
    """``count`` ``session.export`` records, as the vault writes them."""
    async with unit_of_work(maker) as session:
        await audit_service.record_many(
            session,
            EXPORTER,
            [
                audit_service.AuditEntry(
                    action="session.export",
                    target=f"account:{index}",
                    details={"label": f"acc{index}", "format": "telethon", "reason": "move"},
                )
                for index in range(count)
            ],
        )


async def relabel_exports(maker: async_sessionmaker[AsyncSession], *, strip_macs: bool) -> int:
    """The attack of issue 14: every ``session.export`` becomes a ``session.import`` by
    ``cli:nobody``; every hash from there on and the head are recomputed by the public
    formula. ``strip_macs`` also blanks every key id and MAC so the records look written
    before the chain was keyed. Returns the first seq changed."""
    first = 0
    async with unit_of_work(maker) as session:
        rows = (await session.execute(select(AuditRecord).order_by(AuditRecord.seq))).scalars()
        prev = GENESIS_HASH
        for row in rows:
            if row.action == "session.export":
                row.action, row.actor = "session.import", "cli:nobody"
                first = first or row.seq
            if strip_macs:
                row.key_id, row.mac = None, None
            row.prev_hash = prev
            row.hash = chain_hash(prev, ChainedFields.of(row))
            prev = row.hash
        await session.flush()
        await session.execute(update(AuditChainHead).values(hash=prev))
    return first
