from __future__ import annotations

import uuid

from sqlalchemy import or_, select

from tgfleet.kit.repository import RepositoryBase
from tgfleet.models import Account


class AccountRepository(RepositoryBase[Account]):
    model = Account

    async def by_label(self, label: str) -> Account | None:
        return await self.first(select(Account).where(Account.label == label))

    async def by_ids(self, account_ids: list[uuid.UUID]) -> list[Account]:
        if not account_ids:
            return []
        return await self.all(select(Account).where(Account.id.in_(account_ids)))

    async def labels_in(self, labels: set[str]) -> set[str]:
        if not labels:
            return set()
        result = await self.session.execute(
            select(Account.label).where(Account.label.in_(sorted(labels)))
        )
        return set(result.scalars().all())

    async def labels_like(self, stem: str) -> set[str]:
        escaped = stem.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        result = await self.session.execute(
            select(Account.label).where(
                or_(Account.label == stem, Account.label.like(f"{escaped}-%", escape="\\"))
            )
        )
        return set(result.scalars().all())

    async def page(self, *, after: str | None, limit: int, q: str | None) -> list[Account]:
        statement = select(Account).order_by(Account.label)
        if after is not None:
            statement = statement.where(Account.label > after)
        if q:
            escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(Account.label.like(f"%{escaped}%", escape="\\"))
        return await self.all(statement.limit(limit + 1))
