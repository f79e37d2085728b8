from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, select, tuple_

from tgfleet.kit.repository import RepositoryBase
from tgfleet.models import AccountGroup, Playbook, PlaybookVersion


class PlaybookRepository(RepositoryBase[Playbook]):
    model = Playbook

    async def fingerprint(self) -> tuple[object, ...]:
        result = await self.session.execute(
            select(func.count(), func.max(Playbook.updated_at), func.sum(Playbook.latest_version))
        )
        return tuple(result.one())

    async def get_for_update(self, playbook_id: uuid.UUID) -> Playbook | None:
        """The row, locked until the transaction ends (PostgreSQL; SQLite's BEGIN IMMEDIATE
        already serialises writers), so that two saves cannot take the same version."""
        return await self.first(
            select(Playbook).where(Playbook.id == playbook_id).with_for_update()
        )

    async def by_ids(self, ids: Collection[uuid.UUID]) -> list[Playbook]:
        if not ids:
            return []
        return await self.all(select(Playbook).where(Playbook.id.in_(list(ids))))

    async def delete(self, playbook: Playbook) -> None:
        await self.session.delete(playbook)
        await self.session.flush()

    async def by_name(self, name: str) -> Playbook | None:
        return await self.first(select(Playbook).where(Playbook.name == name))

    async def latest_versions(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, int]:
        if not ids:
            return {}
        result = await self.session.execute(
            select(Playbook.id, Playbook.latest_version).where(Playbook.id.in_(list(ids)))
        )
        return {row.id: row.latest_version for row in result}

    async def page_by_name(self, *, after: str | None, limit: int) -> list[Playbook]:
        statement = select(Playbook).order_by(Playbook.name)
        if after is not None:
            statement = statement.where(Playbook.name > after)
        return await self.all(statement.limit(limit + 1))

    async def page_newest(
        self, *, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Playbook]:
        statement = select(Playbook).order_by(Playbook.created_at.desc(), Playbook.id.desc())
        if before is not None:
            at, ident = before
            statement = statement.where(
                (Playbook.created_at < at) | ((Playbook.created_at == at) & (Playbook.id < ident))
            )
        return await self.all(statement.limit(limit + 1))

    async def groups_using(self, playbook_id: uuid.UUID) -> int:
        return await self.count(
            select(AccountGroup.account_id).where(AccountGroup.playbook_id == playbook_id)
        )


class PlaybookVersionRepository(RepositoryBase[PlaybookVersion]):
    model = PlaybookVersion

    async def one(self, playbook_id: uuid.UUID, version: int) -> PlaybookVersion | None:
        return await self.session.get(PlaybookVersion, (playbook_id, version))

    async def exists(self, playbook_id: uuid.UUID, version: int) -> bool:
        result = await self.session.execute(
            select(func.count())
            .select_from(PlaybookVersion)
            .where(PlaybookVersion.playbook_id == playbook_id, PlaybookVersion.version == version)
        )
        return int(result.scalar_one()) > 0

    async def many(self, refs: Collection[tuple[uuid.UUID, int]]) -> list[PlaybookVersion]:
        if not refs:
            return []
        return await self.all(
            select(PlaybookVersion).where(
                tuple_(PlaybookVersion.playbook_id, PlaybookVersion.version).in_(list(refs))
            )
        )

    async def page(
        self, playbook_id: uuid.UUID, *, before: int | None, limit: int
    ) -> list[PlaybookVersion]:
        statement = (
            select(PlaybookVersion)
            .where(PlaybookVersion.playbook_id == playbook_id)
            .order_by(PlaybookVersion.version.desc())
        )
        if before is not None:
            statement = statement.where(PlaybookVersion.version < before)
        return await self.all(statement.limit(limit + 1))
