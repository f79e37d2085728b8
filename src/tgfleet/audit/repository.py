from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import Select, func, select, update

from tgfleet.audit.schemas import AuditFilters
from tgfleet.kit.repository import RepositoryBase
from tgfleet.models import AuditChainHead, AuditRecord

HEAD_ID = 1


class AuditRepository(RepositoryBase[AuditRecord]):
    model = AuditRecord

    async def records_per_key(self) -> dict[str, int]:
        """How many records each audit key id keyed."""
        result = await self.session.execute(
            select(AuditRecord.key_id, func.count())
            .where(AuditRecord.key_id.is_not(None))
            .group_by(AuditRecord.key_id)
        )
        return {str(key_id): int(count) for key_id, count in result.all()}

    async def newest_keyed_by(self, key_id: str) -> AuditRecord | None:
        return await self.first(
            select(AuditRecord)
            .where(AuditRecord.key_id == key_id)
            .order_by(AuditRecord.seq.desc())
            .limit(1)
        )

    async def advance_head(self, count: int = 1) -> tuple[int, str]:
        """Reserve the next ``count`` seqs; return the last of them and the previous hash.

        The UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) before the
        chain is read, so concurrent writers queue here instead of forking the chain.
        """
        statement = (
            update(AuditChainHead)
            .where(AuditChainHead.id == HEAD_ID)
            .values(seq=AuditChainHead.seq + count)
            .returning(AuditChainHead.seq, AuditChainHead.hash)
            .execution_options(synchronize_session=False)
        )
        row = (await self.session.execute(statement)).one()
        return int(row[0]), str(row[1])

    async def set_head_hash(self, seq: int, hash_: str) -> None:
        await self.session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.id == HEAD_ID, AuditChainHead.seq == seq)
            .values(hash=hash_)
            .execution_options(synchronize_session=False)
        )

    async def head(self) -> AuditChainHead | None:
        return await self.session.get(AuditChainHead, HEAD_ID)

    async def lock_head(self) -> AuditChainHead | None:
        """The head, locked until the transaction ends (PostgreSQL: the row; SQLite: the
        write lock the unit of work already holds): appenders wait, so it is the last one."""
        statement = (
            select(AuditChainHead)
            .where(AuditChainHead.id == HEAD_ID)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def mark_checkpoint(self, seq: int, at: datetime) -> None:
        await self.session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.id == HEAD_ID)
            .values(checkpoint_seq=seq, checkpoint_at=at)
            .execution_options(synchronize_session=False)
        )

    async def unmark_checkpoint(
        self, seq: int, previous_seq: int, previous_at: datetime | None
    ) -> None:
        """Undo ``mark_checkpoint(seq, ...)`` unless another checkpoint was claimed since."""
        await self.session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.id == HEAD_ID, AuditChainHead.checkpoint_seq == seq)
            .values(checkpoint_seq=previous_seq, checkpoint_at=previous_at)
            .execution_options(synchronize_session=False)
        )

    def search(
        self, filters: AuditFilters, *, before_seq: int | None = None
    ) -> Select[AuditRecord]:
        statement = _filtered(select(AuditRecord).order_by(AuditRecord.seq.desc()), filters)
        if before_seq is not None:
            statement = statement.where(AuditRecord.seq < before_seq)
        return statement

    async def filtered_ascending(
        self, filters: AuditFilters, *, batch: int = 1000
    ) -> AsyncIterator[AuditRecord]:
        """The records ``search`` finds, oldest first, in batches (keyset, constant memory)."""
        last = 0
        while True:
            statement = _filtered(
                select(AuditRecord).where(AuditRecord.seq > last).order_by(AuditRecord.seq),
                filters,
            ).limit(batch)
            rows = await self.all(statement)
            if not rows:
                return
            for row in rows:
                yield row
            last = rows[-1].seq
            for row in rows:
                self.session.expunge(row)

    async def count_results(self, *, action: str, result: str, since: datetime) -> int:
        statement = select(func.count()).where(
            AuditRecord.action == action, AuditRecord.result == result, AuditRecord.at >= since
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def stream_ascending(
        self, *, since: datetime | None = None, batch: int = 1000
    ) -> AsyncIterator[AuditRecord]:
        """Every record in seq order, in batches (keyset pagination, constant memory)."""
        async for row in self.filtered_ascending(AuditFilters(since=since), batch=batch):
            yield row


def _filtered(statement: Select[AuditRecord], filters: AuditFilters) -> Select[AuditRecord]:
    """``statement`` narrowed to an actor, an action (exact, or a prefix ending in ``*``), a
    target and a time range (``since`` inclusive, ``until`` exclusive)."""
    if filters.actor is not None:
        statement = statement.where(AuditRecord.actor == filters.actor)
    if filters.action is not None:
        action = filters.action
        if action.endswith("*"):
            statement = statement.where(AuditRecord.action.startswith(action[:-1], autoescape=True))
        else:
            statement = statement.where(AuditRecord.action == action)
    if filters.target is not None:
        statement = statement.where(AuditRecord.target == filters.target)
    if filters.since is not None:
        statement = statement.where(AuditRecord.at >= filters.since)
    if filters.until is not None:
        statement = statement.where(AuditRecord.at < filters.until)
    return statement
