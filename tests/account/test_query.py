"""The account listing's filters, sorts and cursors, and the bulk preview, through the
account services on both databases."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import join_groups, make_accounts, observe
from tgfleet.account import commands as account_commands
from tgfleet.account import service as account_service
from tgfleet.account.exceptions import (
    AccountsNotFound,
    CursorSortMismatch,
    EmptyFilter,
    InvalidBulkTarget,
    UnknownSort,
)
from tgfleet.account.schemas import AccountFilter, AccountQuery, AccountSort, ControlAction
from tgfleet.audit.schemas import AuditContext
from tgfleet.exceptions import InvalidInput
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.pagination import encode_cursor
from tgfleet.models import Account

Maker = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def labels(maker: Maker, **arguments: Any) -> list[str]:
    """Every label a listing with these arguments returns, paging through it."""
    seen: list[str] = []
    cursor: str | None = None
    async with unit_of_work(maker) as session:
        while True:
            page = await account_service.list_accounts(session, cursor=cursor, **arguments)
            seen += [account.label for account in page.items]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor


@dataclass(frozen=True)
class Row:
    """One account of the sorting fleet as the listing should see it."""

    label: str
    state: str
    since: datetime
    worker: str
    created: datetime


#: label, minutes after T0 it was created, and its status (state, minutes since, worker)
#: or None (never run). Ties on every key, so the label must break them.
SORT_FLEET: list[tuple[str, int, tuple[str, int, str | None] | None]] = [
    ("a00", 5, ("online", 30, "w2")),
    ("a01", 1, None),
    ("a02", 5, ("online", 30, "w1")),
    ("a03", 3, ("quarantined", 10, "w1")),
    ("a04", 2, None),
    ("a05", 9, ("flood_wait", 2, None)),
    ("a06", 0, ("stopped", 9, "w3")),
    ("a07", 5, ("online", 1, "w2")),
    ("a08", 7, ("error", 30, "w1")),
    ("a09", 2, ("online", 5, "w3")),
    ("a10", 6, None),
    ("a11", 4, ("reconnecting", 4, "w2")),
]


async def sort_fleet(maker: Maker) -> list[Row]:
    ids = await make_accounts(maker, [label for label, _, _ in SORT_FLEET])
    async with unit_of_work(maker) as session:
        for account_id, (_, created, _) in zip(ids, SORT_FLEET, strict=True):
            await session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(created_at=T0 + timedelta(minutes=created))
            )
    rows: list[Row] = []
    for account_id, (label, created, status) in zip(ids, SORT_FLEET, strict=True):
        created_at = T0 + timedelta(minutes=created)
        if status is None:
            rows.append(Row(label, "stopped", created_at, "", created_at))
            continue
        state, since, worker = status
        since_at = T0 + timedelta(minutes=since)
        await observe(maker, account_id, state, since=since_at, worker_id=worker)
        rows.append(Row(label, state, since_at, worker or "", created_at))
    return rows


def python_order(rows: list[Row], sort: AccountSort) -> list[str]:
    """The order a listing sorted by ``sort`` must have: the key in its direction, then the
    label ascending (Python's sort is stable, reversed too)."""
    by_label = sorted(rows, key=lambda row: row.label)
    ordered = sorted(by_label, key=lambda row: getattr(row, sort.key), reverse=sort.descending)
    return [row.label for row in ordered]


class TestFilters:
    async def test_each_filter_alone_and_combined(self, sessionmaker: Maker) -> None:
        """workers and groups alone, with each other and with state, label and q; an
        account in two of the named groups is listed once; counts honour both."""
        ids = await make_accounts(
            sessionmaker,
            ["eu-1", "eu-2", "eu-3", "us-1", "us-2"],
            usernames=["anna", None, None, "bob", None],
        )
        await observe(sessionmaker, ids[0], "online", worker_id="w1")
        await observe(sessionmaker, ids[1], "quarantined", worker_id="w1")
        await observe(sessionmaker, ids[2], "online", worker_id="w2")
        await observe(sessionmaker, ids[3], "online", worker_id="w1")
        await join_groups(sessionmaker, ids[0], [-100, -200])
        await join_groups(sessionmaker, ids[2], [-200])
        await join_groups(sessionmaker, ids[3], [-100])
        await join_groups(sessionmaker, ids[4], [-300])

        assert await labels(sessionmaker, workers=["w1"]) == ["eu-1", "eu-2", "us-1"]
        assert await labels(sessionmaker, workers=["w1", "w2"]) == ["eu-1", "eu-2", "eu-3", "us-1"]
        assert await labels(sessionmaker, workers=["nobody"]) == []
        assert await labels(sessionmaker, groups=[-100]) == ["eu-1", "us-1"]
        assert await labels(sessionmaker, groups=[-100, -200], limit=1) == ["eu-1", "eu-3", "us-1"]
        assert await labels(sessionmaker, groups=[-999]) == []
        assert await labels(sessionmaker, workers=["w1"], groups=[-200]) == ["eu-1"]
        assert await labels(sessionmaker, states=["online"], groups=[-100, -300]) == [
            "eu-1",
            "us-1",
        ]
        assert await labels(sessionmaker, states=["stopped"], groups=[-300]) == ["us-2"]
        assert await labels(sessionmaker, label="eu", workers=["w1"], states=["online"]) == ["eu-1"]
        assert await labels(sessionmaker, q="bob", workers=["w1"], groups=[-100]) == ["us-1"]
        async with unit_of_work(sessionmaker) as session:
            listing = await account_service.list_accounts(
                session, cursor=None, workers=["w1"], states=["online"], with_counts=True
            )
            grouped = await account_service.state_counts(session, groups=[-100, -200])
        assert [a.label for a in listing.items] == ["eu-1", "us-1"]
        assert listing.counts is not None
        assert (listing.counts["online"], listing.counts["quarantined"]) == (2, 1)
        assert sum(listing.counts.values()) == 3
        assert (grouped["online"], sum(grouped.values())) == (3, 3)

    def test_url_parameters_parse_as_the_api_reads_them(self) -> None:
        """AccountQuery.from_pairs collects the repeated parameters, strips and drops empty
        text, ignores what is not a filter, and refuses what the API answers 422 to."""
        query = AccountQuery.from_pairs(
            [
                ("state", "online"),
                ("cursor", "abc"),
                ("state", "error"),
                ("group", "-5"),
                ("worker", "w1"),
                ("worker", "w1"),
                ("label", " eu "),
                ("q", ""),
                ("sort", "-since"),
            ]
        )
        assert query.sort is AccountSort.SINCE_DESC
        assert query.to_filter() == AccountFilter(
            states=("online", "error"), label="eu", workers=("w1",), groups=(-5,)
        )
        assert AccountQuery.from_pairs([]).to_filter() == AccountFilter()
        for refused in (
            [("group", "0")],
            [("group", "x")],
            [("sort", "size")],
            [("state", "sleeping")],
            [("state", "online")] * 51,
            [("label", "a\x00b")],
        ):
            with pytest.raises(ValidationError):
                AccountQuery.from_pairs(refused)

    async def test_an_id_prefix_selects_the_ids_it_starts(self, sessionmaker: Maker) -> None:
        """``id_prefix`` matches the ids whose text starts with it, the range's ends
        included and its neighbours excluded (CHAR(32) hex on SQLite, uuid on PostgreSQL),
        with or without the dashes it reaches, in any case."""
        ids = {
            "below": "1a6f7b96-ffff-4fff-bfff-ffffffffffff",
            "first": "1a6f7b97-0000-0000-0000-000000000000",
            "inner": "1a6f7b97-63d0-43b1-a2be-f83000000001",
            "last": "1a6f7b97-ffff-ffff-ffff-ffffffffffff",
            "above": "1a6f7b98-0000-4000-8000-000000000000",
        }
        async with unit_of_work(sessionmaker) as session:
            session.add_all(
                Account(id=uuid.UUID(text), label=label, dc_id=2) for label, text in ids.items()
            )

        async def named(prefix: str) -> list[str]:
            query = AccountQuery.from_pairs([("id_prefix", prefix)])
            assert query.id_prefix is not None
            async with unit_of_work(sessionmaker) as session:
                listing = await account_service.list_accounts(
                    session, cursor=None, id_prefix=query.id_prefix, with_counts=True
                )
            assert listing.counts is not None
            assert sum(listing.counts.values()) == len(listing.items)
            return sorted(a.label for a in listing.items)

        assert await named("1a6f7b97") == ["first", "inner", "last"]
        assert await named("1a6f7b97-") == ["first", "inner", "last"]
        assert await named("1A6F7B97-63D0") == ["inner"]
        assert await named("1a6f7b9") == ["above", "below", "first", "inner", "last"]
        assert await named(ids["last"]) == ["last"]
        assert await named(ids["first"]) == ["first"]
        assert await named("1a6f7b97-63d1") == []
        assert await labels(sessionmaker, id_prefix="1a6f7b97", label="in") == ["inner"]
        for refused in ("1a6f7", "1a6f7b9763d0", "1a6f7b9x", "1a6f7b97_", ids["last"] + "0"):
            with pytest.raises(ValidationError):
                AccountQuery.from_pairs([("id_prefix", refused)])

    def test_describe_names_every_field_given(self) -> None:
        """The audit details of a filter carry the workers and groups too."""
        wanted = AccountFilter(states=("online",), workers=("w1", "w2"), groups=(-100,))
        assert wanted.describe() == {"state": ["online"], "worker": ["w1", "w2"], "group": [-100]}
        assert AccountFilter(groups=(-1,)).names_a_field
        assert AccountFilter(workers=("w",)).names_a_field


class TestSorting:
    @pytest.mark.parametrize("sort", list(AccountSort), ids=[s.value for s in AccountSort])
    async def test_pages_follow_the_sort(self, sessionmaker: Maker, sort: AccountSort) -> None:
        """Paging three at a time through every sort gives each account once, in the order
        a Python sort of the same data gives (never-run accounts: stopped, since creation,
        worker '')."""
        rows = await sort_fleet(sessionmaker)
        seen = await labels(sessionmaker, sort=sort, limit=3)
        assert seen == python_order(rows, sort)
        filtered = await labels(sessionmaker, sort=sort, limit=2, states=["online", "stopped"])
        wanted = [row for row in rows if row.state in {"online", "stopped"}]
        assert filtered == python_order(wanted, sort)

    async def test_a_cursor_continues_only_its_own_sort(self, sessionmaker: Maker) -> None:
        """A cursor made for one sort is refused by another; a cursor from before sorting
        (label only) continues the label order; an unknown sort names the allowed ones."""
        await sort_fleet(sessionmaker)
        async with unit_of_work(sessionmaker) as session:
            by_state = await account_service.list_accounts(
                session, cursor=None, sort="-state", limit=2
            )
            assert by_state.next_cursor is not None
            with pytest.raises(CursorSortMismatch, match="sorted by '-state', not 'state'"):
                await account_service.list_accounts(
                    session, cursor=by_state.next_cursor, sort="state"
                )
            with pytest.raises(CursorSortMismatch, match="sorted by 'label', not 'since'"):
                await account_service.list_accounts(
                    session, cursor=encode_cursor({"label": "a03"}), sort="since"
                )
            legacy = await account_service.list_accounts(
                session, cursor=encode_cursor({"label": "a09"})
            )
            with pytest.raises(UnknownSort, match="use one of label, -label, state"):
                await account_service.list_accounts(session, cursor=None, sort="size")
            forged: list[tuple[str, dict[str, Any]]] = [
                ("since", {"sort": "since", "key": "2026-01-01", "label": "a"}),  # naive
                ("since", {"sort": "since", "key": "yesterday", "label": "a"}),
                ("state", {"sort": "state", "key": "sleeping", "label": "a"}),
                ("worker", {"sort": "worker", "key": 7, "label": "a"}),
                ("worker", {"sort": "worker", "key": "w1"}),
                ("worker", {"sort": "worker", "key": "w\x00", "label": "a"}),
                ("label", {"label": "a\x00"}),  # PostgreSQL text holds no NUL
                ("label", {"sort": {"a": 1}, "label": "a"}),
            ]
            for sort, key in forged:
                with pytest.raises(InvalidInput, match="cursor is not one this API returned"):
                    await account_service.list_accounts(
                        session, cursor=encode_cursor(key), sort=sort
                    )
        assert [a.label for a in legacy.items] == ["a10", "a11"]


class TestPreview:
    async def test_preview_counts_what_the_bulk_command_matches(self, sessionmaker: Maker) -> None:
        """preview_matching counts and names (by label) the accounts a bulk command on the
        same filter then matches; it refuses what select_accounts refuses."""
        ids = await make_accounts(sessionmaker, [f"p{i:02}" for i in range(25)] + ["q00"])
        for account_id in ids[:22]:
            await observe(sessionmaker, account_id, "online", worker_id="w1")
        await join_groups(sessionmaker, ids[3], [-5])
        wanted = AccountFilter(label="p", workers=("w1",))
        async with unit_of_work(sessionmaker) as session:
            preview = await account_service.preview_matching(session, wanted)
            small = await account_service.preview_matching(
                session, AccountFilter(groups=(-5,)), sample=5
            )
            everything = await account_service.preview_matching(
                session, AccountFilter(everything=True), sample=2
            )
            with pytest.raises(EmptyFilter):
                await account_service.preview_matching(session, AccountFilter())
            with pytest.raises(InvalidBulkTarget):
                await account_service.preview_matching(
                    session, AccountFilter(label="p", everything=True)
                )
        assert preview.count == 22
        assert preview.sample == [(ids[i], f"p{i:02}", "online") for i in range(20)]
        assert small.count == 1
        assert small.sample == [(ids[3], "p03", "online")]
        assert (everything.count, [label for _, label, _ in everything.sample]) == (
            26,
            ["p00", "p01"],
        )
        async with unit_of_work(sessionmaker) as session:
            result = await account_commands.bulk_control(
                session, AuditContext(actor="user:olga"), filter=wanted, action=ControlAction.STOP
            )
        assert result.matched == preview.count

    async def test_preview_of_ids(self, sessionmaker: Maker) -> None:
        """A dry run by ids names them by label; an unknown id is refused as a real run
        refuses it."""
        ids = await make_accounts(sessionmaker, ["z2", "z1", "z3"])
        async with unit_of_work(sessionmaker) as session:
            preview = await account_service.preview_selection(
                session, ids=[ids[2], ids[0], ids[1], ids[0]], wanted=None, sample=2
            )
        assert preview.count == 3
        assert preview.sample == [(ids[1], "z1", "stopped"), (ids[0], "z2", "stopped")]
        async with unit_of_work(sessionmaker) as session:
            with pytest.raises(AccountsNotFound):
                await account_service.preview_selection(session, ids=[uuid.uuid4()], wanted=None)
