"""Account leases (PostgreSQL): lease rows ensured, claimed, reaped, released; who holds
what; the statuses of accounts nobody holds. Workers are in ``worker_repository``, replies in
``reply_repository``; the SQL of all three is in ``tgfleet.lease.statements``."""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy import select

from tgfleet.kit.repository import RepositoryBase
from tgfleet.lease.statements import (
    CLAIM,
    DROP_STOPPED_FREE,
    ENSURE_ALL,
    ENSURE_FOR,
    HELD,
    HOLDERS,
    INSERT_UNASSIGNED,
    MARK_UNASSIGNED,
    REAP_DEAD,
    REAP_SUPERSEDED,
    RELEASE_ALL,
    RELEASE_SOME,
    RELEASE_STOPPED,
    RUNNING_ACCOUNTS,
    UNASSIGNED,
)
from tgfleet.models import AccountLease


class LeaseRepository(RepositoryBase[AccountLease]):
    """The ``account_lease`` table, and the status rows of accounts no live worker holds."""

    model = AccountLease

    async def claim(self, worker_id: str, epoch: int, *, limit: int) -> list[uuid.UUID]:
        if limit <= 0:
            return []
        result = await self.session.execute(
            CLAIM, {"id": worker_id, "epoch": epoch, "limit": limit}
        )
        return [row[0] for row in result.all()]

    async def ensure(self, account_ids: Collection[uuid.UUID] | None) -> None:
        if account_ids is None:
            await self.session.execute(ENSURE_ALL)
            await self.session.execute(DROP_STOPPED_FREE)
        elif account_ids:
            await self.session.execute(ENSURE_FOR, {"ids": list(account_ids)})

    async def reap(self, dead: Collection[str], superseded: Collection[tuple[str, int]]) -> int:
        freed = 0
        if dead:
            result = await self.session.execute(REAP_DEAD, {"ids": list(dead)})
            freed += int(getattr(result, "rowcount", 0) or 0)
        if superseded:
            result = await self.session.execute(
                REAP_SUPERSEDED,
                {"ids": [w for w, _e in superseded], "epochs": [e for _w, e in superseded]},
            )
            freed += int(getattr(result, "rowcount", 0) or 0)
        return freed

    async def leased_by(self, worker_id: str, account_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        if not account_ids:
            return set()
        result = await self.session.execute(
            select(AccountLease.account_id).where(
                AccountLease.worker_id == worker_id,
                AccountLease.account_id.in_(list(account_ids)),
            )
        )
        return set(result.scalars().all())

    async def held(self, worker_id: str, epoch: int) -> set[uuid.UUID]:
        result = await self.session.execute(HELD, {"id": worker_id, "epoch": epoch})
        return {row[0] for row in result.all()}

    async def release(
        self, worker_id: str, epoch: int, account_ids: Collection[uuid.UUID] | None
    ) -> int:
        if account_ids is None:
            result = await self.session.execute(RELEASE_ALL, {"id": worker_id, "epoch": epoch})
        else:
            if not account_ids:
                return 0
            result = await self.session.execute(
                RELEASE_SOME, {"id": worker_id, "epoch": epoch, "ids": list(account_ids)}
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def release_stopped(self, worker_id: str, epoch: int) -> int:
        result = await self.session.execute(RELEASE_STOPPED, {"id": worker_id, "epoch": epoch})
        return int(getattr(result, "rowcount", 0) or 0)

    async def running_accounts(self) -> int:
        return int((await self.session.execute(RUNNING_ACCOUNTS)).scalar_one())

    async def mark_unassigned(self, grace: float) -> int:
        inserted = await self.session.execute(INSERT_UNASSIGNED, {"grace": grace})
        updated = await self.session.execute(MARK_UNASSIGNED, {"grace": grace})
        return int(getattr(inserted, "rowcount", 0) or 0) + int(
            getattr(updated, "rowcount", 0) or 0
        )

    async def holders(self, account_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
        if not account_ids:
            return {}
        result = await self.session.execute(HOLDERS, {"ids": list(account_ids)})
        return {row[0]: row[1] for row in result.all()}

    async def unassigned(self) -> int:
        return int((await self.session.execute(UNASSIGNED)).scalar_one())
