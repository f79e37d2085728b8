"""The groups that use a playbook (the console's playbook pages), on both databases: a
count and the first few per playbook in one statement, and every group paged by cursor in
the order of the account labels."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import FACTORY_CONTEXT, make_accounts, make_playbook
from tgfleet.account import groups as account_groups
from tgfleet.account.exceptions import GroupNotFound
from tgfleet.kit.db import unit_of_work

Maker = async_sessionmaker[AsyncSession]


async def assign(
    maker: Maker, account_id: uuid.UUID, chat_ids: list[int], playbook_id: uuid.UUID
) -> None:
    async with unit_of_work(maker) as session:
        for chat_id in chat_ids:
            await account_groups.set_group(
                session,
                FACTORY_CONTEXT,
                account_id,
                chat_id,
                enabled=False,
                playbook_id=playbook_id,
                playbook_version=None,
                title=f"group {chat_id}",
            )


class TestPlaybookUsage:
    async def test_counts_and_the_first_groups_of_each(self, sessionmaker: Maker) -> None:
        """Each playbook's count of groups and its first ``first`` by label and chat id; a
        playbook no group uses is absent."""
        greeter = await make_playbook(sessionmaker, "greeter")
        other = await make_playbook(sessionmaker, "other")
        unused = await make_playbook(sessionmaker, "unused")
        bravo, alpha = await make_accounts(sessionmaker, ["bravo", "alpha"])
        await assign(sessionmaker, bravo, [-1001, -1002], greeter)
        await assign(sessionmaker, alpha, [-1003, -1001], greeter)
        await assign(sessionmaker, alpha, [-1004], other)
        async with unit_of_work(sessionmaker) as session:
            usage = await account_groups.playbook_usage(session, [greeter, other, unused], first=3)
        assert set(usage) == {greeter, other}
        assert usage[greeter].count == 4
        assert [(a.label, g.chat_id) for a, g in usage[greeter].first] == [
            ("alpha", -1003),
            ("alpha", -1001),
            ("bravo", -1002),
        ]
        assert usage[other].count == 1
        assert [(a.label, g.chat_id) for a, g in usage[other].first] == [("alpha", -1004)]

    async def test_every_group_paged_by_cursor(self, sessionmaker: Maker) -> None:
        """Pages of 2 continue after the last (label, account, chat) without repeating or
        skipping a group, also across accounts with the same label order."""
        greeter = await make_playbook(sessionmaker, "greeter")
        accounts = await make_accounts(sessionmaker, ["c-1", "a-1", "b-1"])
        for account_id in accounts:
            await assign(sessionmaker, account_id, [-1002, -1001, -1003], greeter)
        seen: list[tuple[str, int]] = []
        cursor = None
        async with unit_of_work(sessionmaker) as session:
            for _ in range(10):
                found = await account_groups.groups_using_playbook(
                    session, greeter, cursor=cursor, limit=2
                )
                seen += [(a.label, g.chat_id) for a, g in found.items]
                cursor = found.next_cursor
                if cursor is None:
                    break
        assert seen == [
            (label, chat_id) for label in ("a-1", "b-1", "c-1") for chat_id in (-1003, -1002, -1001)
        ]

    async def test_one_group_or_not_found(self, sessionmaker: Maker) -> None:
        """The settings of one (account, chat); a chat the account is not in is a 404."""
        greeter = await make_playbook(sessionmaker, "greeter")
        (account_id,) = await make_accounts(sessionmaker, ["solo"])
        await assign(sessionmaker, account_id, [-1001], greeter)
        async with unit_of_work(sessionmaker) as session:
            group = await account_groups.get_group(session, account_id, -1001)
            assert (group.playbook_id, group.title) == (greeter, "group -1001")
            with pytest.raises(GroupNotFound, match="-1999"):
                await account_groups.get_group(session, account_id, -1999)
