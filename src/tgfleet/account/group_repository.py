"""Queries of ``account_group``: the per-group reply settings an operator edits (one, a page,
or set-based in bulk) and a worker reads, records and switches off."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    func,
    insert,
    literal,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from tgfleet.account.repository import CHUNK, chunks, like_escape, rowcount
from tgfleet.account.schemas import ChatRow, MemberRow, ReplyCount
from tgfleet.kit.model import TZDateTime
from tgfleet.kit.repository import RepositoryBase
from tgfleet.models import Account, AccountEvent, AccountGroup

_MEMBER_COLUMNS = (
    AccountGroup.chat_id,
    AccountGroup.account_id,
    Account.label,
    AccountGroup.enabled,
    AccountGroup.playbook_id,
    AccountGroup.playbook_version,
    AccountGroup.disabled_reason,
    AccountGroup.disabled_at,
    AccountGroup.title,
)


class AccountGroupRepository(RepositoryBase[AccountGroup]):
    model = AccountGroup

    async def switched_off(self) -> list[tuple[Account, AccountGroup]]:
        statement = (
            select(Account, AccountGroup)
            .join(AccountGroup, AccountGroup.account_id == Account.id)
            .where(AccountGroup.enabled.is_(False), AccountGroup.disabled_reason.is_not(None))
        )
        return [(row[0], row[1]) for row in (await self.session.execute(statement)).all()]

    async def fingerprint(self) -> tuple[object, ...]:
        """What changes whenever a group setting is added, removed or edited (cheap)."""
        result = await self.session.execute(select(func.count(), func.max(AccountGroup.updated_at)))
        return tuple(result.one())

    async def for_accounts(self, account_ids: Collection[uuid.UUID]) -> list[AccountGroup]:
        if not account_ids:
            return []
        return await self.all(
            select(AccountGroup).where(AccountGroup.account_id.in_(list(account_ids)))
        )

    async def of_account(self, account_id: uuid.UUID) -> list[AccountGroup]:
        return await self.all(select(AccountGroup).where(AccountGroup.account_id == account_id))

    async def disable(
        self, account_id: uuid.UUID, chat_id: int, *, reason: str, at: datetime
    ) -> bool:
        """Switch one group off after a group error (a worker's call)."""
        result = await self.session.execute(
            update(AccountGroup)
            .where(AccountGroup.account_id == account_id, AccountGroup.chat_id == chat_id)
            .values(enabled=False, disabled_reason=reason, disabled_at=at, updated_at=at)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    async def one(self, account_id: uuid.UUID, chat_id: int) -> AccountGroup | None:
        return await self.session.get(AccountGroup, (account_id, chat_id))

    async def add_or_get(self, group: AccountGroup) -> tuple[AccountGroup, bool]:
        """Insert ``group``, or return the row a worker inserted meanwhile (savepoint, so
        the race costs nothing but a retry). The flag says whether it was inserted."""
        try:
            async with self.session.begin_nested():
                self.session.add(group)
                await self.session.flush()
        except IntegrityError:
            existing = await self.one(group.account_id, group.chat_id)
            if existing is None:
                raise
            return existing, False
        return group, True

    async def delete(self, group: AccountGroup) -> None:
        await self.session.delete(group)
        await self.session.flush()

    async def page(
        self, account_id: uuid.UUID, *, after: int | None, limit: int
    ) -> list[AccountGroup]:
        statement = (
            select(AccountGroup)
            .where(AccountGroup.account_id == account_id)
            .order_by(AccountGroup.chat_id)
        )
        if after is not None:
            statement = statement.where(AccountGroup.chat_id > after)
        return await self.all(statement.limit(limit + 1))

    async def existing_pairs(
        self, account_ids: Sequence[uuid.UUID], chat_ids: Sequence[int]
    ) -> set[tuple[uuid.UUID, int]]:
        found: set[tuple[uuid.UUID, int]] = set()
        for part in chunks(account_ids, CHUNK // 5):
            result = await self.session.execute(
                select(AccountGroup.account_id, AccountGroup.chat_id).where(
                    AccountGroup.account_id.in_(part), AccountGroup.chat_id.in_(chat_ids)
                )
            )
            found.update((row.account_id, row.chat_id) for row in result)
        return found

    async def insert_many(self, rows: list[dict[str, Any]]) -> None:
        for part in chunks(rows):
            await self.session.execute(insert(AccountGroup), list(part))

    async def counts_by_account(
        self, account_ids: Sequence[uuid.UUID], chat_ids: Sequence[int] | None
    ) -> dict[uuid.UUID, int]:
        """How many of the selected group rows each account has."""
        found: dict[uuid.UUID, int] = {}
        for part in chunks(account_ids, CHUNK // 5):
            statement = (
                select(AccountGroup.account_id, func.count())
                .where(*self._selected(part, chat_ids))
                .group_by(AccountGroup.account_id)
            )
            result = await self.session.execute(statement)
            found.update((account_id, int(count)) for account_id, count in result)
        return found

    @staticmethod
    def _fleet_conditions(
        title: str | None, enabled: bool | None, label: str | None = None
    ) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if title:
            pattern = f"%{like_escape(title)}%"
            conditions.append(AccountGroup.title.ilike(pattern, escape="\\"))
        if enabled is not None:
            conditions.append(AccountGroup.enabled.is_(enabled))
        if label:
            labelled = select(Account.id).where(
                Account.label.ilike(f"{like_escape(label)}%", escape="\\")
            )
            conditions.append(AccountGroup.account_id.in_(labelled))
        return conditions

    async def chats(
        self,
        *,
        title: str | None,
        enabled: bool | None,
        after: int | None,
        limit: int,
        label: str | None = None,
    ) -> list[ChatRow]:
        """One page of the chats the fleet's accounts are in, by chat id: only the rows
        that match ``title`` (a part of it, any case), ``enabled`` and the account
        ``label`` prefix (any case) count."""
        statement = (
            select(
                AccountGroup.chat_id,
                func.max(AccountGroup.title),
                func.count(),
                func.sum(case((AccountGroup.enabled, 1), else_=0)),
            )
            .where(*self._fleet_conditions(title, enabled, label))
            .group_by(AccountGroup.chat_id)
            .order_by(AccountGroup.chat_id)
        )
        if after is not None:
            statement = statement.where(AccountGroup.chat_id > after)
        result = await self.session.execute(statement.limit(limit + 1))
        return [ChatRow(int(c), t, int(n), int(e or 0)) for c, t, n, e in result]

    async def members(
        self,
        chat_ids: Sequence[int],
        *,
        title: str | None,
        enabled: bool | None,
        per_chat: int,
    ) -> list[MemberRow]:
        """The first ``per_chat`` accounts (by label) of each chat, as :meth:`chats`
        filters them."""
        if not chat_ids:
            return []
        numbered = (
            select(
                *_MEMBER_COLUMNS,
                func.row_number()
                .over(partition_by=AccountGroup.chat_id, order_by=(Account.label, Account.id))
                .label("n"),
            )
            .join(Account, Account.id == AccountGroup.account_id)
            .where(
                AccountGroup.chat_id.in_(list(chat_ids)),
                *self._fleet_conditions(title, enabled),
            )
            .subquery()
        )
        statement = (
            select(*(column for column in numbered.c if column.name != "n"))
            .where(numbered.c.n <= per_chat)
            .order_by(numbered.c.chat_id, numbered.c.n)
        )
        result = await self.session.execute(statement)
        return [MemberRow(*row) for row in result]

    async def chat_playbooks(
        self,
        chat_ids: Sequence[int],
        *,
        title: str | None,
        enabled: bool | None,
        label: str | None,
    ) -> list[tuple[int, uuid.UUID, int]]:
        """(chat id, playbook id, accounts) for the playbooks the rows of these chats are
        set to, as :meth:`chats` filters them (rows without a playbook left out)."""
        if not chat_ids:
            return []
        statement = (
            select(AccountGroup.chat_id, AccountGroup.playbook_id, func.count())
            .where(
                AccountGroup.chat_id.in_(list(chat_ids)),
                AccountGroup.playbook_id.is_not(None),
                *self._fleet_conditions(title, enabled, label),
            )
            .group_by(AccountGroup.chat_id, AccountGroup.playbook_id)
        )
        result = await self.session.execute(statement)
        return [
            (int(chat), playbook, int(count))
            for chat, playbook, count in result
            if playbook is not None
        ]

    async def pairs(self, pairs: Collection[tuple[uuid.UUID, int]]) -> list[MemberRow]:
        """The settings of these (account, chat) pairs that exist, by chat and label."""
        if not pairs:
            return []
        chat_ids = sorted({chat_id for _, chat_id in pairs})
        account_ids = sorted({account_id for account_id, _ in pairs})
        found: list[MemberRow] = []
        for part in chunks(account_ids, CHUNK // 5):
            statement = (
                select(*_MEMBER_COLUMNS)
                .join(Account, Account.id == AccountGroup.account_id)
                .where(AccountGroup.account_id.in_(part), AccountGroup.chat_id.in_(chat_ids))
            )
            result = await self.session.execute(statement)
            found.extend(
                MemberRow(*row) for row in result if (row.account_id, row.chat_id) in pairs
            )
        return sorted(found, key=lambda row: (row.chat_id, row.label))

    async def reply_counts(
        self,
        account_ids: Sequence[uuid.UUID],
        chat_ids: Sequence[int],
        *,
        kind: str,
        since: datetime,
    ) -> list[ReplyCount]:
        """Replies sent since ``since`` per (account, chat), from the timeline events of
        ``kind`` (their ``details.chat_id``)."""
        if not account_ids or not chat_ids:
            return []
        chat = AccountEvent.details["chat_id"].as_integer()
        found: list[ReplyCount] = []
        for part in chunks(account_ids, CHUNK // 5):
            statement = (
                select(AccountEvent.account_id, chat, func.count(), func.max(AccountEvent.at))
                .where(
                    AccountEvent.kind == kind,
                    AccountEvent.at >= since,
                    AccountEvent.account_id.in_(part),
                    chat.in_(list(chat_ids)),
                )
                .group_by(AccountEvent.account_id, chat)
            )
            result = await self.session.execute(statement)
            found.extend(ReplyCount(a, int(c), int(n), at) for a, c, n, at in result)
        return found

    async def count_without_playbook(
        self, account_ids: Sequence[uuid.UUID], chat_ids: Sequence[int] | None
    ) -> int:
        """How many of the selected group rows have no playbook."""
        found = 0
        for part in chunks(account_ids, CHUNK // 5):
            statement = select(func.count()).where(
                *self._selected(part, chat_ids), AccountGroup.playbook_id.is_(None)
            )
            found += int((await self.session.execute(statement)).scalar_one())
        return found

    async def set_many(
        self,
        account_ids: Sequence[uuid.UUID],
        chat_ids: Sequence[int] | None,
        *,
        enabled: bool,
        playbook: tuple[uuid.UUID, int | None] | None,
        now: datetime,
    ) -> int:
        """Switch the selected rows on or off (and set their playbook when given) with one
        UPDATE per chunk of accounts. Enabling clears the disabled reason; switching an
        enabled group off records ``operator`` as the reason."""
        values: dict[str, Any] = {"enabled": enabled}
        if playbook is not None:
            values["playbook_id"], values["playbook_version"] = playbook
        if enabled:
            values |= {"disabled_reason": None, "disabled_at": None}
        else:
            values |= {
                "disabled_reason": case(
                    (AccountGroup.enabled, literal_column("'operator'")),
                    else_=AccountGroup.disabled_reason,
                ),
                "disabled_at": case(
                    (AccountGroup.enabled, literal(now, TZDateTime())),
                    else_=AccountGroup.disabled_at,
                ),
            }
        written = 0
        for part in chunks(account_ids, CHUNK // 5):
            statement = (
                update(AccountGroup)
                .where(*self._selected(part, chat_ids))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            written += rowcount(await self.session.execute(statement))
        return written

    @staticmethod
    def _selected(
        account_ids: Sequence[uuid.UUID], chat_ids: Sequence[int] | None
    ) -> list[ColumnElement[bool]]:
        conditions = [AccountGroup.account_id.in_(account_ids)]
        if chat_ids is not None:
            conditions.append(AccountGroup.chat_id.in_(chat_ids))
        return [and_(*conditions)]

    # --- The groups that use a playbook (the console's playbook pages) -------------------

    async def using_playbook(
        self,
        playbook_id: uuid.UUID,
        *,
        after: tuple[str, uuid.UUID, int] | None,
        limit: int,
    ) -> list[tuple[Account, AccountGroup]]:
        """Groups set to ``playbook_id`` with their accounts, by account label, account id
        and chat id; ``after`` continues after that (label, account id, chat id)."""
        statement = (
            select(Account, AccountGroup)
            .join(AccountGroup, AccountGroup.account_id == Account.id)
            .where(AccountGroup.playbook_id == playbook_id)
            .order_by(Account.label, Account.id, AccountGroup.chat_id)
        )
        if after is not None:
            label, account_id, chat_id = after
            statement = statement.where(
                tuple_(Account.label, Account.id, AccountGroup.chat_id)
                > tuple_(
                    literal(label, Account.label.type),
                    literal(account_id, Account.id.type),
                    literal(chat_id, AccountGroup.chat_id.type),
                )
            )
        result = await self.session.execute(statement.limit(limit + 1))
        return [(row[0], row[1]) for row in result.all()]

    async def usage_counts(self, playbook_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, int]:
        """How many groups use each of ``playbook_ids`` (playbooks no group uses are left out)."""
        if not playbook_ids:
            return {}
        result = await self.session.execute(
            select(AccountGroup.playbook_id, func.count())
            .where(AccountGroup.playbook_id.in_(list(playbook_ids)))
            .group_by(AccountGroup.playbook_id)
        )
        return {row[0]: row[1] for row in result.all() if row[0] is not None}

    async def first_using(
        self, playbook_ids: Collection[uuid.UUID], per_playbook: int
    ) -> list[tuple[Account, AccountGroup]]:
        """The first ``per_playbook`` groups of each playbook (by account label, chat id),
        in one statement (a window function)."""
        if not playbook_ids:
            return []
        ranked = (
            select(
                AccountGroup.account_id,
                AccountGroup.chat_id,
                func.row_number()
                .over(
                    partition_by=AccountGroup.playbook_id,
                    order_by=(Account.label, Account.id, AccountGroup.chat_id),
                )
                .label("rank"),
            )
            .join(Account, Account.id == AccountGroup.account_id)
            .where(AccountGroup.playbook_id.in_(list(playbook_ids)))
            .subquery()
        )
        statement = (
            select(Account, AccountGroup)
            .join(AccountGroup, AccountGroup.account_id == Account.id)
            .join(
                ranked,
                and_(
                    ranked.c.account_id == AccountGroup.account_id,
                    ranked.c.chat_id == AccountGroup.chat_id,
                ),
            )
            .where(ranked.c.rank <= per_playbook)
            .order_by(Account.label, Account.id, AccountGroup.chat_id)
        )
        result = await self.session.execute(statement)
        return [(row[0], row[1]) for row in result.all()]
