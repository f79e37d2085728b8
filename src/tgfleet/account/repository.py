"""Queries of the account domain, one repository per table: accounts (with the status
join the listings, counts and the worker's reconcile read), their status rows and their
timeline. Group settings are in ``tgfleet.account.group_repository``."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Select,
    and_,
    case,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute

from tgfleet.account.schemas import (
    HELD_STATES,
    AccountFilter,
    AccountSort,
    ControlAction,
    id_prefix_bounds,
)
from tgfleet.kit.repository import RepositoryBase
from tgfleet.models import (
    Account,
    AccountEvent,
    AccountGroup,
    AccountState,
    AccountStatus,
    DesiredState,
)

#: Ids per IN (...) list: well under the bind-parameter limits of SQLite (32,766) and
#: asyncpg (32,767), so a bulk of any size runs as a few set-based statements.
CHUNK = 5_000

#: The observed state, with "no status row" read as stopped. Rendered inline (not bound) so
#: that PostgreSQL sees the same expression in SELECT and GROUP BY.
OBSERVED_STATE = func.coalesce(AccountStatus.state, literal_column(f"'{AccountState.STOPPED}'"))

#: The key of each sort, never NULL (so both databases order the same): an account without
#: a status row is ``stopped``, ``since`` its creation, and its worker is ``''``. No index
#: serves them but the label's: state, since and worker span the outer join, and at 10,000
#: accounts a page in any sort took 10-20 ms on SQLite and 25-35 ms on PostgreSQL (a top-N
#: sort; label order 4 and 8 ms), so an index on ``created_at`` alone was not worth a
#: migration (measured with a scratch script, December 2026).
SORT_KEYS: dict[str, ColumnElement[Any] | InstrumentedAttribute[Any]] = {
    "label": Account.label,
    "state": OBSERVED_STATE,
    "since": func.coalesce(AccountStatus.since, Account.created_at),
    "worker": func.coalesce(AccountStatus.worker_id, literal_column("''")),
    "created": Account.created_at,
}

T = TypeVar("T")


class StateRow(NamedTuple):
    label: str
    state: AccountState
    reason: str | None
    last_error_code: str | None
    since: datetime
    wait_until: datetime | None


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def rowcount(result: Any) -> int:
    return int(cast("CursorResult[Any]", result).rowcount)


def filter_conditions(
    wanted: AccountFilter, *, with_state: bool = True
) -> list[ColumnElement[bool]]:
    """WHERE conditions for ``wanted``; the statement must outer-join ``account_status``."""
    conditions: list[ColumnElement[bool]] = []
    if wanted.id_prefix:
        conditions.append(Account.id.between(*id_prefix_bounds(wanted.id_prefix)))
    if wanted.label:
        conditions.append(Account.label.ilike(f"{like_escape(wanted.label)}%", escape="\\"))
    if wanted.q:
        pattern = f"%{like_escape(wanted.q)}%"
        conditions.append(
            or_(
                Account.label.ilike(pattern, escape="\\"),
                Account.username.ilike(pattern, escape="\\"),
                Account.phone.ilike(pattern, escape="\\"),
            )
        )
    if with_state and wanted.states:
        conditions.append(OBSERVED_STATE.in_(wanted.states))
    if wanted.workers:
        conditions.append(AccountStatus.worker_id.in_(wanted.workers))
    if wanted.groups:
        # EXISTS, not a join: an account in several of the groups is still one row.
        conditions.append(
            exists().where(
                AccountGroup.account_id == Account.id, AccountGroup.chat_id.in_(wanted.groups)
            )
        )
    return conditions


def after_condition(sort: AccountSort, key: Any, label: str) -> ColumnElement[bool]:
    """Rows after (``key``, ``label``) in ``sort``'s order (the label always ascending)."""
    if sort.key == "label":
        return Account.label < label if sort.descending else Account.label > label
    expression = SORT_KEYS[sort.key]
    beyond = expression < key if sort.descending else expression > key
    return or_(beyond, and_(expression == key, Account.label > label))


def ordering(sort: AccountSort) -> list[ColumnElement[Any]]:
    expression = SORT_KEYS[sort.key]
    first = expression.desc() if sort.descending else expression.asc()
    return [first] if sort.key == "label" else [first, Account.label.asc()]


#: How the status row joins its account (outer: an account no worker ran has none).
STATUS_JOIN = AccountStatus.account_id == Account.id


def _matching(wanted: AccountFilter, *columns: Any) -> Select[Any]:
    """``columns`` of the accounts ``wanted`` selects (with their status row outer-joined):
    the one selection behind a listing page, a bulk command and its preview."""
    return (
        select(*columns)
        .select_from(Account)
        .outerjoin(AccountStatus, STATUS_JOIN)
        .where(*filter_conditions(wanted))
    )


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
        escaped = like_escape(stem)
        result = await self.session.execute(
            select(Account.label).where(
                or_(Account.label == stem, Account.label.like(f"{escaped}-%", escape="\\"))
            )
        )
        return set(result.scalars().all())

    async def page(
        self,
        *,
        after: tuple[Any, str] | None,
        limit: int,
        wanted: AccountFilter,
        sort: AccountSort = AccountSort.LABEL,
    ) -> list[tuple[Account, AccountStatus | None, Any]]:
        """``limit + 1`` accounts in ``sort``'s order after ``after`` (the sort key and the
        label of the last row seen), each with its status and its sort key."""
        statement = _matching(wanted, Account, AccountStatus, SORT_KEYS[sort.key]).order_by(
            *ordering(sort)
        )
        if after is not None:
            statement = statement.where(after_condition(sort, *after))
        result = await self.session.execute(statement.limit(limit + 1))
        return [(row[0], row[1], row[2]) for row in result]

    async def count_matching(self, wanted: AccountFilter) -> int:
        statement = _matching(wanted, func.count())
        return int((await self.session.execute(statement)).scalar_one())

    async def sample_matching(
        self, wanted: AccountFilter, limit: int
    ) -> list[tuple[uuid.UUID, str, str]]:
        """The first ``limit`` accounts ``wanted`` selects, by label: (id, label, state)."""
        statement = _matching(wanted, Account.id, Account.label, OBSERVED_STATE)
        result = await self.session.execute(statement.order_by(Account.label).limit(limit))
        return [(row[0], row[1], str(row[2])) for row in result]

    async def sample_of(
        self, account_ids: Sequence[uuid.UUID], limit: int
    ) -> list[tuple[uuid.UUID, str, str]]:
        """The first ``limit`` of these accounts by label: (id, label, state)."""
        found: list[tuple[uuid.UUID, str, str]] = []
        for part in chunks(account_ids):
            statement = (
                select(Account.id, Account.label, OBSERVED_STATE)
                .outerjoin(AccountStatus, STATUS_JOIN)
                .where(Account.id.in_(part))
                .order_by(Account.label)
                .limit(limit)
            )
            found += [
                (row[0], row[1], str(row[2])) for row in await self.session.execute(statement)
            ]
        return sorted(found, key=lambda row: row[1])[:limit]

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
        statement = _matching(wanted, Account.id)
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
            AccountStatus.state.in_(HELD_STATES),
        )
        values: dict[str, Any]
        needs_change: ColumnElement[bool] | None
        if action is ControlAction.STOP:
            values = {"desired_state": DesiredState.STOPPED}
            needs_change = Account.desired_state != DesiredState.STOPPED
        elif action is ControlAction.RESTART:
            values = {
                "desired_state": DesiredState.RUNNING,
                "restart_seq": Account.restart_seq + 1,
            }
            needs_change = None
        else:
            values = {
                "desired_state": DesiredState.RUNNING,
                "restart_seq": Account.restart_seq + case((lifted, 1), else_=0),
            }
            needs_change = or_(Account.desired_state != DesiredState.RUNNING, lifted)
        changed = 0
        for part in chunks(account_ids):
            statement = update(Account).where(Account.id.in_(part)).values(**values)
            if needs_change is not None:
                statement = statement.where(needs_change)
            result = await self.session.execute(
                statement.execution_options(synchronize_session=False)
            )
            changed += rowcount(result)
        return changed

    async def desired(
        self, only: Collection[uuid.UUID] | None = None
    ) -> list[tuple[Account, AccountStatus | None]]:
        """Every account (or those in ``only``) with its status row, in one query."""
        statement = select(Account, AccountStatus).outerjoin(AccountStatus, STATUS_JOIN)
        if only is not None:
            statement = statement.where(Account.id.in_(list(only)))
        result = await self.session.execute(statement)
        return [(account, status) for account, status in result.all()]

    async def fingerprint(self, only: Collection[uuid.UUID] | None = None) -> tuple[object, ...]:
        """What changes whenever an account is added, removed or commanded (cheap)."""
        statement = select(
            func.count(), func.max(Account.updated_at), func.sum(Account.restart_seq)
        )
        if only is not None:
            statement = statement.where(Account.id.in_(list(only)))
        result = await self.session.execute(statement)
        return tuple(result.one())

    async def set_identities(self, identities: Mapping[uuid.UUID, tuple[int, str | None]]) -> None:
        for account_id, (tg_user_id, username) in identities.items():
            await self.session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(tg_user_id=tg_user_id, username=username)
                .execution_options(synchronize_session=False)
            )

    async def user_ids(self) -> set[int]:
        result = await self.session.execute(
            select(Account.tg_user_id).where(Account.tg_user_id.is_not(None))
        )
        return {int(user_id) for user_id in result.scalars().all() if user_id is not None}

    async def user_ids_fingerprint(self) -> tuple[object, ...]:
        result = await self.session.execute(
            select(func.count(Account.tg_user_id), func.sum(Account.tg_user_id), func.count())
        )
        return tuple(result.one())

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

    async def for_accounts(
        self, account_ids: Collection[uuid.UUID], *, lock: bool = False
    ) -> list[AccountStatus]:
        """The status rows of these accounts; ``lock`` holds them until the transaction ends
        (PostgreSQL ``FOR UPDATE``, in id order so concurrent workers cannot deadlock), so a
        check made on them holds when the write commits."""
        if not account_ids:
            return []
        statement = select(AccountStatus).where(AccountStatus.account_id.in_(list(account_ids)))
        if lock:
            statement = statement.order_by(AccountStatus.account_id).with_for_update()
        return await self.all(statement)

    async def per_worker(self, live_states: Collection[str]) -> dict[str, dict[str, int]]:
        """Accounts in ``live_states`` by the worker that reports them, then by state."""
        statement = (
            select(AccountStatus.worker_id, AccountStatus.state, func.count())
            .where(AccountStatus.worker_id.is_not(None), AccountStatus.state.in_(live_states))
            .group_by(AccountStatus.worker_id, AccountStatus.state)
        )
        found: dict[str, dict[str, int]] = {}
        for worker_id, state, count in (await self.session.execute(statement)).all():
            found.setdefault(str(worker_id), {})[str(state)] = int(count)
        return found

    async def live_of_worker(
        self, worker_id: str, live_states: Collection[str]
    ) -> list[AccountStatus]:
        return await self.all(
            select(AccountStatus).where(
                AccountStatus.worker_id == worker_id, AccountStatus.state.in_(list(live_states))
            )
        )


class AccountEventRepository(RepositoryBase[AccountEvent]):
    model = AccountEvent

    async def add_events(self, events: Sequence[AccountEvent]) -> None:
        """Add ORM events to the session (written at the caller's flush)."""
        self.session.add_all(list(events))

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

    async def blank_messages(self, kind: str, before: datetime) -> int:
        """Set the ``message`` of ``kind`` events older than ``before`` to null; how many
        had one (a second run finds none: safe for several processes at once)."""
        result = await self.session.execute(
            update(AccountEvent)
            .where(
                AccountEvent.kind == kind,
                AccountEvent.at < before,
                AccountEvent.message.is_not(None),
            )
            .values(message=None)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result)

    async def latest(self, limit: int) -> list[tuple[AccountEvent, str]]:
        """The fleet's newest events, each with its account's label."""
        statement = (
            select(AccountEvent, Account.label)
            .join(Account, Account.id == AccountEvent.account_id)
            .order_by(AccountEvent.id.desc())
            .limit(limit)
        )
        result = await self.session.execute(statement)
        return [(event, label) for event, label in result.all()]

    async def tail(
        self, after: int, missing: Sequence[tuple[int, int]], limit: int
    ) -> list[tuple[AccountEvent, str, str | None]]:
        """Events with an id above ``after`` or inside one of the ``missing`` id ranges
        (inclusive), oldest id first, each with its account's label and current holder."""
        wanted = or_(
            AccountEvent.id > after, *(AccountEvent.id.between(lo, hi) for lo, hi in missing)
        )
        statement = (
            select(AccountEvent, Account.label, AccountStatus.worker_id)
            .join(Account, Account.id == AccountEvent.account_id)
            .outerjoin(AccountStatus, AccountStatus.account_id == AccountEvent.account_id)
            .where(wanted)
            .order_by(AccountEvent.id)
            .limit(limit)
        )
        rows = (await self.session.execute(statement)).all()
        return [(event, label, worker_id) for event, label, worker_id in rows]

    async def last_id(self) -> int:
        """The highest event id (0 for an empty timeline)."""
        return int(await self.session.scalar(select(func.max(AccountEvent.id))) or 0)
