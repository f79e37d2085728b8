"""RepositoryBase: every query lives in a repository; repositories flush, never commit."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.kit.model import Model

M = TypeVar("M", bound=Model)


class RepositoryBase(Generic[M]):
    model: type[M]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, ident: Any) -> M | None:
        return await self.session.get(self.model, ident)

    async def add(self, obj: M) -> M:
        self.session.add(obj)
        await self.session.flush()
        return obj

    async def add_all(self, objects: list[M]) -> list[M]:
        """Insert many rows with one flush (SQLAlchemy batches them into few statements)."""
        self.session.add_all(objects)
        await self.session.flush()
        return objects

    async def first(self, statement: Select[M]) -> M | None:
        result = await self.session.execute(statement.limit(1))
        return result.scalars().first()

    async def all(self, statement: Select[M]) -> list[M]:
        result = await self.session.execute(statement)
        return list(result.scalars().all())

    async def count(self, statement: Select[Any]) -> int:
        result = await self.session.execute(
            select(func.count()).select_from(statement.order_by(None).subquery())
        )
        return int(result.scalar_one())
