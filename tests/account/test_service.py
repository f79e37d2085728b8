"""Account services on a real database (both backends): commands, bulk commands, listing
with counts, the timeline, group settings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import (
    account_row,
    audits,
    event_count,
    events_of,
    make_accounts,
    make_playbook,
    observe,
)
from tgfleet.account import commands as account_commands
from tgfleet.account import groups as account_groups
from tgfleet.account import service as account_service
from tgfleet.account.exceptions import (
    AccountNotFound,
    AccountsNotFound,
    EmptyFilter,
    GroupNeedsPlaybook,
    GroupNotFound,
    InvalidBulkTarget,
    InvalidGroupSettings,
    UnknownCommand,
)
from tgfleet.account.schemas import AccountFilter, ControlAction
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AccountEvent, AccountGroup
from tgfleet.playbook.exceptions import PlaybookNotFound, PlaybookVersionNotFound

OPERATOR = AuditContext(actor="user:olga")
Maker = async_sessionmaker[AsyncSession]


@contextmanager
def statements(maker: Maker) -> Iterator[list[str]]:
    """Collect the SQL statements the engine runs (an executemany counts once)."""
    seen: list[str] = []
    engine = maker.kw["bind"].sync_engine

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def control(maker: Maker, account_id: uuid.UUID, action: ControlAction) -> None:
    async with unit_of_work(maker) as session:
        await account_commands.control(session, OPERATOR, account_id, action)


class TestControl:
    async def test_start_stop_restart_move_desired_state(self, sessionmaker: Maker) -> None:
        """start runs the account, stop stops it, restart runs it and raises restart_seq."""
        (account_id,) = await make_accounts(sessionmaker, ["alpha"])
        await control(sessionmaker, account_id, ControlAction.START)
        account = await account_row(sessionmaker, account_id)
        assert (account.desired_state, account.restart_seq) == ("running", 0)
        await control(sessionmaker, account_id, ControlAction.STOP)
        account = await account_row(sessionmaker, account_id)
        assert (account.desired_state, account.restart_seq) == ("stopped", 0)
        await control(sessionmaker, account_id, ControlAction.RESTART)
        await control(sessionmaker, account_id, ControlAction.RESTART)
        account = await account_row(sessionmaker, account_id)
        assert (account.desired_state, account.restart_seq) == ("running", 2)

    @pytest.mark.parametrize("observed", ["quarantined", "error"])
    async def test_start_lifts_quarantine_and_error(
        self, sessionmaker: Maker, observed: str
    ) -> None:
        """An operator's start on a quarantined or failed account raises restart_seq, even
        when the account is already meant to run."""
        (account_id,) = await make_accounts(sessionmaker, ["q"])
        await control(sessionmaker, account_id, ControlAction.START)
        await observe(sessionmaker, account_id, observed, reason="auth_key_unregistered")
        await control(sessionmaker, account_id, ControlAction.START)
        account = await account_row(sessionmaker, account_id)
        assert (account.desired_state, account.restart_seq) == ("running", 1)

    async def test_start_on_an_online_account_changes_nothing(self, sessionmaker: Maker) -> None:
        """Starting a running, online account leaves restart_seq alone but is still
        audited and on the timeline."""
        (account_id,) = await make_accounts(sessionmaker, ["online"])
        await control(sessionmaker, account_id, ControlAction.START)
        await observe(sessionmaker, account_id, "online")
        await control(sessionmaker, account_id, ControlAction.START)
        account = await account_row(sessionmaker, account_id)
        assert (account.desired_state, account.restart_seq) == ("running", 0)
        starts = await audits(sessionmaker, "account.start")
        assert [a.details["changed"] for a in starts] == [True, False]
        assert starts[0].target == f"account:{account_id}"
        assert starts[0].actor == "user:olga"

    async def test_every_command_appends_an_event(self, sessionmaker: Maker) -> None:
        """Each command, also one that changes nothing, leaves a command event naming the
        actor."""
        (account_id,) = await make_accounts(sessionmaker, ["timeline"])
        for action in (ControlAction.STOP, ControlAction.START, ControlAction.RESTART):
            await control(sessionmaker, account_id, action)
        events = await events_of(sessionmaker, account_id)
        assert [(e.kind, e.code) for e in events] == [
            ("command", "stop"),
            ("command", "start"),
            ("command", "restart"),
        ]
        assert all(e.details["actor"] == "user:olga" for e in events)
        assert events[0].details["changed"] is False
        assert len(await audits(sessionmaker, "account.stop")) == 1

    async def test_unknown_command_is_refused(self, sessionmaker: Maker) -> None:
        """A command name that is not start, stop or restart is a clear 422, not a crash."""
        (account_id,) = await make_accounts(sessionmaker, ["typo"])
        async with unit_of_work(sessionmaker) as session:
            with pytest.raises(UnknownCommand, match="use one of start, stop, restart"):
                await account_commands.control(session, OPERATOR, account_id, "reboot")

    async def test_unknown_account_is_not_found(self, sessionmaker: Maker) -> None:
        """A command for an id that does not exist is a 404 and writes nothing."""
        with pytest.raises(AccountNotFound):
            await control(sessionmaker, uuid.uuid4(), ControlAction.START)
        assert await event_count(sessionmaker) == 0


async def bulk(maker: Maker, **kwargs: Any) -> account_commands.BulkResult:
    async with unit_of_work(maker) as session:
        return await account_commands.bulk_control(session, OPERATOR, **kwargs)


class TestBulkControl:
    async def test_by_ids_counts_matched_and_changed(self, sessionmaker: Maker) -> None:
        """Stopping three accounts of which one already stopped: 3 matched, 2 changed, an
        event each, one audit record."""
        ids = await make_accounts(sessionmaker, ["a", "b", "c"])
        await bulk(sessionmaker, ids=ids[:2], action="start")
        result = await bulk(sessionmaker, ids=ids, action=ControlAction.STOP)
        assert (result.matched, result.changed) == (3, 2)
        assert [(await account_row(sessionmaker, i)).desired_state for i in ids] == ["stopped"] * 3
        assert [len(await events_of(sessionmaker, i)) for i in ids] == [2, 2, 1]
        record = (await audits(sessionmaker, "account.bulk"))[-1]
        assert record.details == {"action": "stop", "ids": 3, "matched": 3, "changed": 2}

    async def test_by_state_filter_lifts_only_quarantined(self, sessionmaker: Maker) -> None:
        """A bulk start filtered on quarantined restarts exactly those accounts."""
        ids = await make_accounts(sessionmaker, ["q1", "q2", "ok"])
        await bulk(sessionmaker, ids=ids, action="start")
        await observe(sessionmaker, ids[0], "quarantined")
        await observe(sessionmaker, ids[1], "quarantined")
        await observe(sessionmaker, ids[2], "online")
        result = await bulk(
            sessionmaker, filter=AccountFilter(states=("quarantined",)), action="start"
        )
        assert (result.matched, result.changed) == (2, 2)
        seqs = [(await account_row(sessionmaker, i)).restart_seq for i in ids]
        assert seqs == [1, 1, 0]
        records = await audits(sessionmaker, "account.bulk")
        assert records[-1].details["filter"] == {"state": ["quarantined"]}

    async def test_restart_all_when_asked_explicitly(self, sessionmaker: Maker) -> None:
        """``everything`` covers the fleet; combined with a field it is refused."""
        ids = await make_accounts(sessionmaker, ["x", "y"])
        result = await bulk(sessionmaker, filter=AccountFilter(everything=True), action="restart")
        assert (result.matched, result.changed) == (2, 2)
        assert [(await account_row(sessionmaker, i)).restart_seq for i in ids] == [1, 1]
        with pytest.raises(InvalidBulkTarget):
            await bulk(
                sessionmaker, filter=AccountFilter(label="x", everything=True), action="stop"
            )

    async def test_empty_filter_is_refused(self, sessionmaker: Maker) -> None:
        """An empty filter would command the whole fleet by accident: refused, no change."""
        (account_id,) = await make_accounts(sessionmaker, ["solo"])
        with pytest.raises(EmptyFilter, match="must name at least one field"):
            await bulk(sessionmaker, filter=AccountFilter(), action="restart")
        assert (await account_row(sessionmaker, account_id)).restart_seq == 0

    async def test_ids_xor_filter(self, sessionmaker: Maker) -> None:
        """Neither ids nor a filter, or both, is refused."""
        ids = await make_accounts(sessionmaker, ["one"])
        with pytest.raises(InvalidBulkTarget):
            await bulk(sessionmaker, action="stop")
        with pytest.raises(InvalidBulkTarget):
            await bulk(sessionmaker, ids=ids, filter=AccountFilter(label="o"), action="stop")

    async def test_too_many_ids(self, sessionmaker: Maker) -> None:
        """More than 10,000 ids in one call is refused before any query."""
        with pytest.raises(InvalidBulkTarget, match="at most 10000"):
            await bulk(sessionmaker, ids=[uuid.uuid4() for _ in range(10_001)], action="stop")

    async def test_unknown_ids_change_nothing(self, sessionmaker: Maker) -> None:
        """Unknown ids: a 404 naming up to five of them, and no account changes."""
        ids = await make_accounts(sessionmaker, ["known"])
        unknown = [uuid.uuid4() for _ in range(7)]
        with pytest.raises(AccountsNotFound) as caught:
            await bulk(sessionmaker, ids=ids + unknown, action="start")
        assert str(unknown[0]) in caught.value.message
        assert str(unknown[5]) not in caught.value.message
        assert "and 2 more" in caught.value.message
        assert (await account_row(sessionmaker, ids[0])).desired_state == "stopped"
        assert await event_count(sessionmaker) == 0

    async def test_bulk_is_set_based(self, sessionmaker: Maker) -> None:
        """A start over 6,000 accounts runs a bounded number of statements (chunked
        UPDATEs and batched event inserts), not one per account."""
        async with unit_of_work(sessionmaker) as session:
            created = await account_service.create_accounts(
                session,
                [
                    account_service.NewAccount(label=f"n{i:05}", tg_user_id=None, dc_id=1)
                    for i in range(6_000)
                ],
                exact_label=True,
            )
            ids = [a.id for a in created]
        with statements(sessionmaker) as seen:
            result = await bulk(sessionmaker, ids=ids, action="start")
        assert (result.matched, result.changed) == (6_000, 6_000)
        assert len(seen) < 40, seen[:50]
        assert sum(s.lstrip().upper().startswith("UPDATE ACCOUNT ") for s in seen) == 2


class TestListing:
    async def test_filters_and_counts(self, sessionmaker: Maker) -> None:
        """state, label prefix and q filter the page; counts ignore state and read a
        missing status row as stopped."""
        ids = await make_accounts(
            sessionmaker,
            ["eu-1", "eu-2", "eu-3", "us-1"],
            usernames=["anna", None, "Bob_Shop", None],
            phones=[None, "+4915100", None, None],
        )
        await observe(sessionmaker, ids[0], "online")
        await observe(sessionmaker, ids[1], "quarantined")
        await observe(sessionmaker, ids[3], "online")
        async with unit_of_work(sessionmaker) as session:
            eu = await account_service.list_accounts(
                session, cursor=None, label="EU-", with_counts=True
            )
            online_eu = await account_service.list_accounts(
                session, cursor=None, label="eu-", states=["online"], with_counts=True
            )
            stopped = await account_service.list_accounts(session, cursor=None, states=["stopped"])
            by_username = await account_service.list_accounts(session, cursor=None, q="bob_")
            by_phone = await account_service.list_accounts(session, cursor=None, q="49151")
        assert [a.label for a in eu.items] == ["eu-1", "eu-2", "eu-3"]
        assert eu.counts is not None
        assert (eu.counts["online"], eu.counts["quarantined"], eu.counts["stopped"]) == (1, 1, 1)
        assert eu.counts["flood_wait"] == 0
        assert [a.label for a in online_eu.items] == ["eu-1"]
        assert online_eu.counts == eu.counts
        assert [a.label for a in stopped.items] == ["eu-3"]
        assert stopped.counts is None
        assert [a.label for a in by_username.items] == ["eu-3"]
        assert [a.label for a in by_phone.items] == ["eu-2"]
        assert set(eu.statuses) == {ids[0], ids[1]}

    async def test_pages_through_a_filtered_list(self, sessionmaker: Maker) -> None:
        """The label cursor continues a filtered listing without gaps or repeats."""
        labels = [f"shop-{i:02}" for i in range(7)] + ["other"]
        ids = await make_accounts(sessionmaker, labels)
        for account_id in ids[::2]:
            await observe(sessionmaker, account_id, "online")
        seen: list[str] = []
        cursor: str | None = None
        async with unit_of_work(sessionmaker) as session:
            while True:
                page = await account_service.list_accounts(
                    session, cursor=cursor, limit=2, label="shop", states=["online"]
                )
                seen += [a.label for a in page.items]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        assert seen == ["shop-00", "shop-02", "shop-04", "shop-06"]

    async def test_like_wildcards_are_literal(self, sessionmaker: Maker) -> None:
        """'%' and '_' in a filter match themselves, not anything."""
        await make_accounts(sessionmaker, ["a_b", "axb", "100%"])
        async with unit_of_work(sessionmaker) as session:
            underscore = await account_service.list_accounts(session, cursor=None, q="a_")
            percent = await account_service.list_accounts(session, cursor=None, label="100%")
        assert [a.label for a in underscore.items] == ["a_b"]
        assert [a.label for a in percent.items] == ["100%"]


class TestEvents:
    async def test_newest_first_with_cursor_and_kind(self, sessionmaker: Maker) -> None:
        """The timeline pages newest first; kind keeps one kind."""
        (account_id,) = await make_accounts(sessionmaker, ["t"])
        for action in (ControlAction.START, ControlAction.STOP, ControlAction.RESTART):
            await control(sessionmaker, account_id, action)
        playbook_id = await make_playbook(sessionmaker)
        async with unit_of_work(sessionmaker) as session:
            await account_groups.set_group(
                session,
                OPERATOR,
                account_id,
                -1001,
                enabled=True,
                playbook_id=playbook_id,
                playbook_version=None,
                title=None,
            )
        async with unit_of_work(sessionmaker) as session:
            first = await account_service.list_events(session, account_id, limit=3)
            assert first.next_cursor is not None
            rest = await account_service.list_events(
                session, account_id, cursor=first.next_cursor, limit=3
            )
            commands = await account_service.list_events(session, account_id, kind="command")
        assert [e.code for e in first.items] == ["enabled", "restart", "stop"]
        assert [e.code for e in rest.items] == ["start"]
        assert rest.next_cursor is None
        assert [e.code for e in commands.items] == ["restart", "stop", "start"]

    async def test_unknown_account(self, sessionmaker: Maker) -> None:
        """The timeline of an account that does not exist is a 404."""
        async with unit_of_work(sessionmaker) as session:
            with pytest.raises(AccountNotFound):
                await account_service.list_events(session, uuid.uuid4())


async def set_group(
    maker: Maker, account_id: uuid.UUID, chat_id: int, **kwargs: Any
) -> AccountGroup:
    settings: dict[str, Any] = {"playbook_id": None, "playbook_version": None, "title": None}
    settings.update(kwargs)
    async with unit_of_work(maker) as session:
        return await account_groups.set_group(session, OPERATOR, account_id, chat_id, **settings)


class TestGroups:
    async def test_created_disabled_then_enabled_with_playbook(self, sessionmaker: Maker) -> None:
        """A group can be added disabled; enabling with a playbook clears a disabled reason;
        switching it off records the operator as the reason."""
        (account_id,) = await make_accounts(sessionmaker, ["g"])
        playbook_id = await make_playbook(sessionmaker)
        group = await set_group(sessionmaker, account_id, -100123, enabled=False, title="Shop")
        assert (group.enabled, group.title, group.playbook_id) == (False, "Shop", None)
        async with unit_of_work(sessionmaker) as session:
            row = await session.get(AccountGroup, (account_id, -100123))
            assert row is not None
            row.disabled_reason = "write_forbidden"
        group = await set_group(
            sessionmaker, account_id, -100123, enabled=True, playbook_id=playbook_id
        )
        assert (group.enabled, group.title, group.disabled_reason) == (True, "Shop", None)
        assert group.playbook_version is None
        group = await set_group(
            sessionmaker, account_id, -100123, enabled=False, playbook_id=playbook_id
        )
        assert group.disabled_reason == "operator"
        assert group.disabled_at is not None
        codes = [e.code for e in await events_of(sessionmaker, account_id) if e.kind == "group"]
        assert codes == ["updated", "enabled", "disabled"]
        assert len(await audits(sessionmaker, "account.group.update")) == 3

    async def test_enabling_needs_a_playbook(self, sessionmaker: Maker) -> None:
        """Enabling replies without a playbook is refused and writes nothing."""
        (account_id,) = await make_accounts(sessionmaker, ["g"])
        with pytest.raises(GroupNeedsPlaybook, match="assign a playbook"):
            await set_group(sessionmaker, account_id, -5, enabled=True)
        async with unit_of_work(sessionmaker) as session:
            listed = await account_groups.list_groups(session, account_id)
        assert listed.items == []

    async def test_playbook_is_checked(self, sessionmaker: Maker) -> None:
        """An unknown playbook is a 404; a version it does not have a 422; a version without
        a playbook is refused; chat id 0 is refused."""
        (account_id,) = await make_accounts(sessionmaker, ["g"])
        playbook_id = await make_playbook(sessionmaker)
        with pytest.raises(PlaybookNotFound):
            await set_group(sessionmaker, account_id, -5, enabled=True, playbook_id=uuid.uuid4())
        with pytest.raises(PlaybookVersionNotFound):
            await set_group(
                sessionmaker,
                account_id,
                -5,
                enabled=True,
                playbook_id=playbook_id,
                playbook_version=9,
            )
        with pytest.raises(InvalidGroupSettings):
            await set_group(sessionmaker, account_id, -5, enabled=False, playbook_version=1)
        with pytest.raises(InvalidGroupSettings):
            await set_group(sessionmaker, account_id, 0, enabled=False)
        pinned = await set_group(
            sessionmaker, account_id, -5, enabled=True, playbook_id=playbook_id, playbook_version=1
        )
        assert pinned.playbook_version == 1

    async def test_delete(self, sessionmaker: Maker) -> None:
        """Deleting forgets the row (audited, on the timeline); a second delete is a 404."""
        (account_id,) = await make_accounts(sessionmaker, ["g"])
        await set_group(sessionmaker, account_id, -7, enabled=False)
        async with unit_of_work(sessionmaker) as session:
            await account_groups.delete_group(session, OPERATOR, account_id, -7)
        async with unit_of_work(sessionmaker) as session:
            assert (await account_groups.list_groups(session, account_id)).items == []
            with pytest.raises(GroupNotFound):
                await account_groups.delete_group(session, OPERATOR, account_id, -7)
        assert len(await audits(sessionmaker, "account.group.delete")) == 1

    async def test_bulk_enable_existing_and_created(self, sessionmaker: Maker) -> None:
        """A bulk enable writes only existing rows, unless create adds the missing ones; a
        bulk disable over all groups keeps playbooks."""
        ids = await make_accounts(sessionmaker, ["b1", "b2", "other"])
        playbook_id = await make_playbook(sessionmaker)
        await set_group(sessionmaker, ids[0], -1, enabled=False)
        await set_group(sessionmaker, ids[0], -2, enabled=False)
        await set_group(sessionmaker, ids[2], -1, enabled=False)
        async with unit_of_work(sessionmaker) as session:
            only_existing = await account_groups.bulk_set_groups(
                session,
                OPERATOR,
                filter=AccountFilter(label="b"),
                chat_ids=[-1],
                enabled=True,
                playbook_id=playbook_id,
            )
        assert (only_existing.matched, only_existing.groups, only_existing.created) == (2, 1, 0)
        async with unit_of_work(sessionmaker) as session:
            created = await account_groups.bulk_set_groups(
                session,
                OPERATOR,
                ids=ids[:2],
                chat_ids=[-1, -3],
                enabled=True,
                playbook_id=playbook_id,
                playbook_version=1,
                create=True,
            )
        assert (created.matched, created.groups, created.created) == (2, 4, 3)
        async with unit_of_work(sessionmaker) as session:
            rows = (
                await session.execute(select(AccountGroup).order_by(AccountGroup.chat_id))
            ).scalars()
            state = {(r.account_id, r.chat_id): (r.enabled, r.playbook_version) for r in rows}
        assert state == {
            (ids[0], -3): (True, 1),
            (ids[0], -2): (False, None),
            (ids[0], -1): (True, 1),
            (ids[1], -3): (True, 1),
            (ids[1], -1): (True, 1),
            (ids[2], -1): (False, None),
        }
        async with unit_of_work(sessionmaker) as session:
            off = await account_groups.bulk_set_groups(
                session, OPERATOR, ids=[ids[0]], all_groups=True, enabled=False
            )
        assert (off.matched, off.groups) == (1, 3)
        async with unit_of_work(sessionmaker) as session:
            group = await session.get(AccountGroup, (ids[0], -1))
            assert group is not None
            assert (group.enabled, group.playbook_id, group.disabled_reason) == (
                False,
                playbook_id,
                "operator",
            )
            untouched = await session.get(AccountGroup, (ids[0], -2))
            assert untouched is not None
            assert untouched.disabled_reason is None
        bulk_events = [e for e in await events_of(sessionmaker, ids[0]) if e.details.get("bulk")]
        assert [(e.code, e.details["groups"]) for e in bulk_events] == [
            ("enabled", 1),
            ("enabled", 2),
            ("disabled", 3),
        ]
        assert len(await audits(sessionmaker, "account.group.bulk")) == 3

    async def test_fleet_groups_by_chat_filtered_paged_and_capped(
        self, sessionmaker: Maker
    ) -> None:
        """The fleet's groups come by chat id, a page at a time; the title (any part, any
        case) and on/off filters keep matching settings only; each chat lists its first
        accounts by label and counts them all."""
        ids = await make_accounts(sessionmaker, ["c", "a", "b"])
        playbook_id = await make_playbook(sessionmaker)
        for account_id in ids:
            await set_group(sessionmaker, account_id, -10, enabled=False, title="Shop EU")
        await set_group(
            sessionmaker, ids[0], -20, enabled=True, title="Help", playbook_id=playbook_id
        )
        await set_group(sessionmaker, ids[1], -30, enabled=False, title="shop_us")
        async with unit_of_work(sessionmaker) as session:
            first = await account_groups.fleet_groups(session, limit=2, per_chat=2)
            rest = await account_groups.fleet_groups(
                session, limit=2, per_chat=2, cursor=first.next_cursor
            )
            shops = await account_groups.fleet_groups(session, title="SHOP")
            literal = await account_groups.fleet_groups(session, title="p_")
            on = await account_groups.fleet_groups(session, enabled=True)
        assert [(c.chat_id, c.title, c.accounts, c.enabled) for c in first.chats] == [
            (-30, "shop_us", 1, 0),
            (-20, "Help", 1, 1),
        ]
        assert [(c.chat_id, c.accounts) for c in rest.chats] == [(-10, 3)]
        assert rest.next_cursor is None
        assert [m.label for m in rest.members[-10]] == ["a", "b"]  # 2 of 3, by label
        assert [c.chat_id for c in shops.chats] == [-30, -10]
        assert [c.chat_id for c in literal.chats] == [-30]  # "_" is no wildcard: not "Shop EU"
        assert [(c.chat_id, [m.label for m in on.members[c.chat_id]]) for c in on.chats] == [
            (-20, ["c"])
        ]

    async def test_recent_group_replies_count_by_account_and_chat(
        self, sessionmaker: Maker
    ) -> None:
        """Replies per (account, chat) since a time: how many and the last one's time, from
        the reply events; older replies and other chats are not counted."""
        (account_id,) = await make_accounts(sessionmaker, ["r"])
        now = utcnow()
        async with unit_of_work(sessionmaker) as session:
            session.add_all(
                AccountEvent(
                    account_id=account_id,
                    at=now - timedelta(minutes=minutes),
                    kind="reply",
                    message="hi",
                    details={"chat_id": chat_id},
                )
                for chat_id, minutes in ((-1, 1), (-1, 5), (-1, 120), (-2, 1))
            )
        async with unit_of_work(sessionmaker) as session:
            found = await account_groups.recent_group_replies(
                session, [account_id], [-1], since=now - timedelta(minutes=60)
            )
        assert list(found) == [(account_id, -1)]
        count = found[(account_id, -1)]
        assert count.replies == 2
        assert abs((count.last_at - (now - timedelta(minutes=1))).total_seconds()) < 1

    async def test_bulk_disable_keeps_the_playbook_and_enable_restores_it(
        self, sessionmaker: Maker
    ) -> None:
        """A bulk disable keeps each group's playbook and pinned version; a bulk enable
        without a playbook switches each group back on with its own, and is refused,
        writing nothing, while one selected group has no playbook."""
        ids = await make_accounts(sessionmaker, ["k1", "k2"])
        first = await make_playbook(sessionmaker, "first")
        second = await make_playbook(sessionmaker, "second")
        await set_group(sessionmaker, ids[0], -1, enabled=True, playbook_id=first)
        await set_group(
            sessionmaker, ids[1], -1, enabled=True, playbook_id=second, playbook_version=1
        )
        await set_group(sessionmaker, ids[1], -2, enabled=False)
        async with unit_of_work(sessionmaker) as session:
            await account_groups.bulk_set_groups(
                session, OPERATOR, ids=ids, all_groups=True, enabled=False
            )
        async with unit_of_work(sessionmaker) as session:
            with pytest.raises(GroupNeedsPlaybook, match="1 of the selected groups"):
                await account_groups.bulk_set_groups(
                    session, OPERATOR, ids=ids, all_groups=True, enabled=True
                )
        async with unit_of_work(sessionmaker) as session:
            back = await account_groups.bulk_set_groups(
                session, OPERATOR, ids=ids, chat_ids=[-1], enabled=True
            )
        assert (back.matched, back.groups) == (2, 2)
        async with unit_of_work(sessionmaker) as session:
            rows = (await session.execute(select(AccountGroup))).scalars()
            state = {
                (r.account_id, r.chat_id): (r.enabled, r.playbook_id, r.playbook_version)
                for r in rows
            }
        assert state == {
            (ids[0], -1): (True, first, None),
            (ids[1], -1): (True, second, 1),
            (ids[1], -2): (False, None, None),
        }
        bulk = await audits(sessionmaker, "account.group.bulk")
        assert [(r.details["enabled"], r.details["groups"]) for r in bulk] == [
            (False, 3),
            (True, 2),
        ]

    async def test_bulk_refusals(self, sessionmaker: Maker) -> None:
        """Bulk group changes refuse enabling without a playbook, both or neither of
        chat_ids/all_groups, and create with all_groups."""
        ids = await make_accounts(sessionmaker, ["r"])
        cases: list[dict[str, Any]] = [
            {"chat_ids": [-1], "enabled": True, "create": True},
            {"enabled": False},
            {"chat_ids": [-1], "all_groups": True, "enabled": False},
            {"all_groups": True, "enabled": False, "create": True},
            {"chat_ids": [0], "enabled": False},
        ]
        for case in cases:
            async with unit_of_work(sessionmaker) as session:
                with pytest.raises((GroupNeedsPlaybook, InvalidGroupSettings)):
                    await account_groups.bulk_set_groups(session, OPERATOR, ids=ids, **case)
