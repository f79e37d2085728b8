"""Playbook services on a real database: versions, in-use deletes, audit, compiled cache."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.db import unit_of_work
from tgfleet.models import Account, AccountGroup, AuditRecord, Playbook
from tgfleet.playbook import exceptions
from tgfleet.playbook import service as playbook_service

CONTEXT = AuditContext(actor="user:tester", ip="127.0.0.1", request_id="req-1")
V1 = "rules:\n  - {name: hi, when: {mention: true}, reply: {templates: ['v1']}}\n"
V2 = "rules:\n  - {name: hi, when: {mention: true}, reply: {templates: ['v2']}}\n"

Maker = async_sessionmaker[AsyncSession]


async def make(sessionmaker: Maker, name: str = "faq", source: str = V1) -> Playbook:
    async with unit_of_work(sessionmaker) as session:
        return await playbook_service.create(
            session, CONTEXT, name=name, source=source, description="d"
        )


async def actions(sessionmaker: Maker) -> list[tuple[str, str, str]]:
    async with unit_of_work(sessionmaker) as session:
        rows = await session.execute(select(AuditRecord).order_by(AuditRecord.seq))
        return [
            (r.action, r.actor, r.target)
            for r in rows.scalars()
            if r.action.startswith("playbook.")
        ]


class TestVersions:
    async def test_create_update_and_versions(self, sessionmaker: Maker) -> None:
        """Each save is a version; latest_version advances; old versions stay as written."""
        created = await make(sessionmaker)
        assert created.latest_version == 1
        async with unit_of_work(sessionmaker) as session:
            updated = await playbook_service.update(session, CONTEXT, created.id, source=V2)
        assert updated.latest_version == 2
        async with unit_of_work(sessionmaker) as session:
            first = await playbook_service.get_version(session, created.id, 1)
            latest = await playbook_service.get_version(session, created.id)
            page = await playbook_service.list_versions(session, created.id, cursor=None, limit=1)
            rest = await playbook_service.list_versions(
                session, created.id, cursor=page.next_cursor, limit=1
            )
        assert (first.source, first.created_by) == (V1, "user:tester")
        assert (latest.version, latest.source) == (2, V2)
        assert [v.version for v in page.items + rest.items] == [2, 1]
        assert await actions(sessionmaker) == [
            ("playbook.create", "user:tester", f"playbook:{created.id}"),
            ("playbook.update", "user:tester", f"playbook:{created.id}"),
        ]

    async def test_identical_source_is_refused(self, sessionmaker: Maker) -> None:
        created = await make(sessionmaker)
        with pytest.raises(exceptions.PlaybookUnchanged):
            async with unit_of_work(sessionmaker) as session:
                await playbook_service.update(session, CONTEXT, created.id, source=V1)
        async with unit_of_work(sessionmaker) as session:
            same = await playbook_service.update(
                session, CONTEXT, created.id, source=V1, description="new words"
            )
        assert (same.latest_version, same.description) == (1, "new words")

    async def test_invalid_source_writes_nothing(self, sessionmaker: Maker) -> None:
        with pytest.raises(exceptions.PlaybookInvalid):
            await make(sessionmaker, source="rules: []\n")
        async with unit_of_work(sessionmaker) as session:
            assert (await playbook_service.list_playbooks(session, cursor=None)).items == []
        assert await actions(sessionmaker) == []

    async def test_duplicate_name(self, sessionmaker: Maker) -> None:
        await make(sessionmaker)
        with pytest.raises(exceptions.PlaybookNameTaken):
            await make(sessionmaker)

    async def test_ensure_version_and_latest_versions(self, sessionmaker: Maker) -> None:
        created = await make(sessionmaker)
        async with unit_of_work(sessionmaker) as session:
            await playbook_service.ensure_version(session, created.id, None)
            await playbook_service.ensure_version(session, created.id, 1)
            with pytest.raises(exceptions.PlaybookVersionNotFound):
                await playbook_service.ensure_version(session, created.id, 2)
            with pytest.raises(exceptions.PlaybookNotFound):
                await playbook_service.ensure_version(session, uuid.uuid4(), None)
            latest = await playbook_service.latest_versions(session, [created.id, uuid.uuid4()])
        assert latest == {created.id: 1}

    async def test_load_compiled_pinned_and_latest(self, sessionmaker: Maker) -> None:
        """Pinned and latest versions compile to their own rules; unknown refs are left out."""
        created = await make(sessionmaker)
        async with unit_of_work(sessionmaker) as session:
            await playbook_service.update(session, CONTEXT, created.id, source=V2)
        async with unit_of_work(sessionmaker) as session:
            compiled = await playbook_service.load_compiled(
                session, [(created.id, 1), (created.id, 2), (uuid.uuid4(), 1)]
            )
        assert set(compiled) == {(created.id, 1), (created.id, 2)}
        assert compiled[(created.id, 1)].version == 1
        assert compiled[(created.id, 2)].name == "faq"

    async def test_create_or_update_by_name_is_idempotent(self, sessionmaker: Maker) -> None:
        for source in (V1, V1, V2):
            async with unit_of_work(sessionmaker) as session:
                playbook = await playbook_service.create_or_update_by_name(
                    session, CONTEXT, "demo", source, "desc"
                )
        assert playbook.latest_version == 2
        assert [a for a, _, _ in await actions(sessionmaker)] == [
            "playbook.create",
            "playbook.update",
        ]

    async def test_list_by_name_and_newest(self, sessionmaker: Maker) -> None:
        for name in ("b", "a", "c"):
            await make(sessionmaker, name)
        async with unit_of_work(sessionmaker) as session:
            first = await playbook_service.list_playbooks(session, cursor=None, limit=2)
            second = await playbook_service.list_playbooks(
                session, cursor=first.next_cursor, limit=2
            )
            newest = await playbook_service.list_playbooks(
                session, cursor=None, limit=2, order="newest"
            )
            older = await playbook_service.list_playbooks(
                session, cursor=newest.next_cursor, limit=2, order="newest"
            )
        assert [p.name for p in first.items + second.items] == ["a", "b", "c"]
        assert [p.name for p in newest.items + older.items] == ["c", "a", "b"]


class TestDelete:
    async def test_in_use_is_refused_naming_the_count(self, sessionmaker: Maker) -> None:
        created = await make(sessionmaker)
        async with unit_of_work(sessionmaker) as session:
            account = Account(id=uuid.uuid4(), label="acct-1")
            session.add(account)
            await session.flush()
            session.add_all(
                [
                    AccountGroup(account_id=account.id, chat_id=chat, playbook_id=created.id)
                    for chat in (-1001, -1002)
                ]
            )
        with pytest.raises(exceptions.PlaybookInUse, match="used by 2 account groups"):
            async with unit_of_work(sessionmaker) as session:
                await playbook_service.delete(session, CONTEXT, created.id)

    async def test_delete_removes_versions(self, sessionmaker: Maker) -> None:
        created = await make(sessionmaker)
        async with unit_of_work(sessionmaker) as session:
            await playbook_service.delete(session, CONTEXT, created.id)
        async with unit_of_work(sessionmaker) as session:
            with pytest.raises(exceptions.PlaybookNotFound):
                await playbook_service.get_version(session, created.id, 1)
            assert await playbook_service.load_compiled(session, [(created.id, 1)]) == {}
        assert [a for a, _, _ in await actions(sessionmaker)][-1] == "playbook.delete"
