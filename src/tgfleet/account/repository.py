from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from tgfleet.account.schemas import (
    NEEDS_RESTART_TO_START,
    AccountFilter,
    AccountState,
    ControlAction,
    DesiredState,
)
from tgfleet.kit.model import TZDateTime
from tgfleet.kit.repository import RepositoryBase
from tgfleet.models import Account, AccountEvent, AccountGroup, AccountStatus

#: Ids per IN (...) list: well under the bind-parameter limits of SQLite (32,766) and
#: asyncpg (32,767), so a bulk of any size runs as a few set-based statements.
CHUNK = 5_000

#: The observed state, with "no status row" read as stopped. Rendered inline (not bound) so
#: that PostgreSQL sees the same expression in SELECT and GROUP BY.
OBSERVED_STATE = func.coalesce(AccountStatus.state, literal_column(f"'{AccountState.STOPPED}'"))

T = TypeVar("T")


class StateRow(NamedTuple):
    label: str
    state: str
    reason: str | None
    last_error_code: str | None
    since: datetime
    wait_until: datetime | None


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _rowcount(result: Any) -> int:
    return int(cast("CursorResult[Any]", result).rowcount)


def filter_conditions(
    wanted: AccountFilter, *, with_state: bool = True
) -> list[ColumnElement[bool]]:
    """WHERE conditions for ``wanted``; the statement must outer-join ``account_status``."""
    conditions: list[ColumnElement[bool]] = []
    if wanted.label:
        conditions.append(Account.label.ilike(f"{_like_escape(wanted.label)}%", escape="\\"))
    if wanted.q:
        pattern = f"%{_like_escape(wanted.q)}%"
        conditions.append(
            or_(
                Account.label.ilike(pattern, escape="\\"),
                Account.username.ilike(pattern, escape="\\"),
                Account.phone.ilike(pattern, escape="\\"),
            )
        )
    if with_state and wanted.states:
        conditions.append(OBSERVED_STATE.in_(wanted.states))
    return conditions


#: How the status row joins its account (outer: an account no worker ran has none).
STATUS_JOIN = AccountStatus.account_id == Account.id


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
        escaped = _like_escape(stem)
        result = await self.session.execute(
            select(Account.label).where(
                or_(Account.label == stem, Account.label.like(f"{escaped}-%", escape="\\"))
            )
        )
        return set(result.scalars().all())

    async def page(
        self, *, after: str | None, limit: int, wanted: AccountFilter
    ) -> list[tuple[Account, AccountStatus | None]]:
        """``limit + 1`` accounts in label order after ``after``, each with its status."""
        statement = (
            select(Account, AccountStatus)
            .outerjoin(AccountStatus, STATUS_JOIN)
            .order_by(Account.label)
        )
        if after is not None:
            statement = statement.where(Account.label > after)
        statement = statement.where(*filter_conditions(wanted))
        result = await self.session.execute(statement.limit(limit + 1))
        return [(row[0], row[1]) for row in result]

    async def state_counts(self, wanted: AccountFilter) -> dict[str, int]:
        """Accounts per observed state over ``wanted`` without its states: one GROUP BY."""
        statement = (
            select(OBSERVED_STATE, func.count())
            .select_from(Account)
            .outerjoin(AccountStatus, STATUS_JOIN)
            .where(*filter_conditions(wanted, with_state=False))
            .group_by(OBSERVED_STATE)
        )
        result = await self.session.execute(statement)
        return {str(state): int(count) for state, count in result}

    async def in_states(self, states: Sequence[str]) -> list[StateRow]:
        """Accounts whose observed state is one of ``states``, as plain rows of the columns an
        alert needs (no ORM objects: 10,000 of them every few seconds would be slow)."""
        statement = (
            select(
                Account.label,
                AccountStatus.state,
                AccountStatus.reason,
                AccountStatus.last_error_code,
                AccountStatus.since,
                AccountStatus.wait_until,
            )
            .join(AccountStatus, STATUS_JOIN)
            .where(AccountStatus.state.in_(list(states)))
        )
        return [StateRow(*row) for row in (await self.session.execute(statement)).all()]

    async def desired_state_counts(self) -> dict[tuple[str, str], int]:
        """(desired state, observed state) -> accounts, over the whole fleet: one GROUP BY."""
        statement = (
            select(Account.desired_state, OBSERVED_STATE, func.count())
            .select_from(Account)
            .outerjoin(AccountStatus, STATUS_JOIN)
            .group_by(Account.desired_state, OBSERVED_STATE)
        )
        result = await self.session.execute(statement)
        return {(str(desired), str(state)): int(count) for desired, state, count in result}

    async def existing_ids(self, account_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        found: set[uuid.UUID] = set()
        for part in chunks(account_ids):
            result = await self.session.execute(select(Account.id).where(Account.id.in_(part)))
            found.update(result.scalars().all())
        return found

    async def ids_matching(self, wanted: AccountFilter) -> list[uuid.UUID]:
        statement = (
            select(Account.id)
            .outerjoin(AccountStatus, STATUS_JOIN)
            .where(*filter_conditions(wanted))
        )
        result = await self.session.execute(statement.order_by(Account.id))
        return list(result.scalars().all())

    async def apply_command(self, account_ids: Sequence[uuid.UUID], action: ControlAction) -> int:
        """Move the desired state of ``account_ids`` with set-based UPDATEs (one per
        ``CHUNK`` ids); returns how many accounts changed.

        ``start`` raises ``restart_seq`` only where the observed state is quarantined or
        error (an operator's start lifts a quarantine); ``restart`` always raises it.
        """
        lifted = exists().where(
            AccountStatus.account_id == Account.id,
            AccountStatus.state.in_([s.value for s in NEEDS_RESTART_TO_START]),
        )
        values: dict[str, Any]
        needs_change: ColumnElement[bool] | None
        if action is ControlAction.STOP:
            values = {"desired_state": DesiredState.STOPPED.value}
            needs_change = Account.desired_state != DesiredState.STOPPED.value
        elif action is ControlAction.RESTART:
            values = {
                "desired_state": DesiredState.RUNNING.value,
                "restart_seq": Account.restart_seq + 1,
            }
            needs_change = None
        else:
            values = {
                "desired_state": DesiredState.RUNNING.value,
                "restart_seq": Account.restart_seq + case((lifted, 1), else_=0),
            }
            needs_change = or_(Account.desired_state != DesiredState.RUNNING.value, lifted)
        changed = 0
        for part in chunks(account_ids):
            statement = update(Account).where(Account.id.in_(part)).values(**values)
            if needs_change is not None:
                statement = statement.where(needs_change)
            result = await self.session.execute(
                statement.execution_options(synchronize_session=False)
            )
            changed += _rowcount(result)
        return changed

    async def refresh(self, account: Account) -> Account:
        await self.session.refresh(account)
        return account


class AccountStatusRepository(RepositoryBase[AccountStatus]):
    model = AccountStatus

    async def by_accounts(self, account_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, AccountStatus]:
        found: dict[uuid.UUID, AccountStatus] = {}
        for part in chunks(account_ids):
            rows = await self.all(select(AccountStatus).where(AccountStatus.account_id.in_(part)))
            found.update((row.account_id, row) for row in rows)
        return found


class AccountEventRepository(RepositoryBase[AccountEvent]):
    model = AccountEvent

    async def append_many(self, rows: list[dict[str, Any]]) -> None:
        """Insert events as one executemany per ``CHUNK`` (no ORM objects)."""
        for part in chunks(rows):
            await self.session.execute(insert(AccountEvent), list(part))

    async def page(
        self, account_id: uuid.UUID, *, before: int | None, limit: int, kind: str | None
    ) -> list[AccountEvent]:
        statement = (
            select(AccountEvent)
            .where(AccountEvent.account_id == account_id)
            .order_by(AccountEvent.id.desc())
        )
        if before is not None:
            statement = statement.where(AccountEvent.id < before)
        if kind is not None:
            statement = statement.where(AccountEvent.kind == kind)
        return await self.all(statement.limit(limit + 1))


class AccountGroupRepository(RepositoryBase[AccountGroup]):
    model = AccountGroup

    async def switched_off(self) -> list[tuple[Account, AccountGroup]]:
        statement = (
            select(Account, AccountGroup)
            .join(AccountGroup, AccountGroup.account_id == Account.id)
            .where(AccountGroup.enabled.is_(False), AccountGroup.disabled_reason.is_not(None))
        )
        return [(row[0], row[1]) for row in (await self.session.execute(statement)).all()]

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
            written += _rowcount(await self.session.execute(statement))
        return written

    @staticmethod
    def _selected(
        account_ids: Sequence[uuid.UUID], chat_ids: Sequence[int] | None
    ) -> list[ColumnElement[bool]]:
        conditions = [AccountGroup.account_id.in_(account_ids)]
        if chat_ids is not None:
            conditions.append(AccountGroup.chat_id.in_(chat_ids))
        return [and_(*conditions)]
