"""Account services: accounts (created by the vault when a session is imported), the
listing with per-state counts, the fleet summary, the choice of accounts a bulk call covers,
and the timeline. Operator commands are in ``tgfleet.account.commands``, per-group reply
settings in ``tgfleet.account.groups``; the worker's side in ``tgfleet.account.runtime``.

Desired state lives in ``account`` (``desired_state``, ``restart_seq``); the worker
reconciles towards it and reports what it observes in ``account_status``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account.exceptions import (
    AccountLabelTaken,
    AccountNotFound,
    AccountsNotFound,
    CursorSortMismatch,
    EmptyFilter,
    InvalidBulkTarget,
    UnknownSort,
)
from tgfleet.account.repository import (
    AccountEventRepository,
    AccountRepository,
    AccountStatusRepository,
    StateRow,
)
from tgfleet.account.schemas import (
    BULK_MAX_IDS,
    PREVIEW_SAMPLE,
    AccountFilter,
    AccountSort,
    MatchPreview,
)
from tgfleet.exceptions import AppError, InvalidInput
from tgfleet.kit.clock import utcnow
from tgfleet.kit.names import sanitise_name
from tgfleet.kit.pagination import DEFAULT_LIMIT, Slice, decode_cursor, slice_rows
from tgfleet.models import Account, AccountEvent, AccountState, AccountStatus, DesiredState

LABEL_MAX = 200

E = TypeVar("E", bound=StrEnum)


def clean_label(raw: str) -> str:
    """A visible label of at most 200 characters: NFKC, and every control, bidi or
    invisible character replaced with '_' (labels come from file names, too)."""
    return sanitise_name(raw, max_length=LABEL_MAX) or "account"


@dataclass(frozen=True, slots=True)
class NewAccount:
    label: str
    tg_user_id: int | None
    dc_id: int | None


async def create_accounts(
    session: AsyncSession, wanted: list[NewAccount], *, exact_label: bool = False
) -> list[Account]:
    """Create many accounts with one flush. Labels are made unique (``name-2``...) unless
    ``exact_label``, where a taken label is a 409."""
    repository = AccountRepository(session)
    stems = [clean_label(spec.label)[: LABEL_MAX - 8] for spec in wanted]
    taken = await repository.labels_in(set(stems))
    if exact_label and taken:
        raise AccountLabelTaken(f"an account labelled {min(taken)!r} already exists")
    variants_loaded: set[str] = set()
    chosen: list[str] = []
    for stem in stems:
        label = stem
        if label in taken:
            if exact_label:
                raise AccountLabelTaken(f"the label {stem!r} is given twice")
            if stem not in variants_loaded:  # only colliding stems cost a query
                taken |= await repository.labels_like(stem)
                variants_loaded.add(stem)
            number = 2
            while label in taken:
                label = f"{stem}-{number}"
                number += 1
        taken.add(label)
        chosen.append(label)
    accounts = [
        Account(id=uuid.uuid4(), label=label, tg_user_id=spec.tg_user_id, dc_id=spec.dc_id)
        for label, spec in zip(chosen, wanted, strict=True)
    ]
    return await repository.add_all(accounts)


async def get_account(session: AsyncSession, account_id: uuid.UUID) -> Account:
    account = await AccountRepository(session).get(account_id)
    if account is None:
        raise AccountNotFound(f"no account with id {account_id}")
    return account


async def get_accounts(session: AsyncSession, account_ids: list[uuid.UUID]) -> list[Account]:
    return await AccountRepository(session).by_ids(account_ids)


async def resolve(session: AsyncSession, ref: str) -> Account:
    """An account by id, or by its (unique) label."""
    try:
        return await get_account(session, uuid.UUID(ref))
    except ValueError:
        pass
    except AccountNotFound:
        if not ref:
            raise
    account = await AccountRepository(session).by_label(ref)
    if account is None:
        raise AccountNotFound(f"no account with id or label {ref!r}")
    return account


# --- listing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountListing:
    """One page of accounts, their observed status (absent: never run, i.e. stopped) and,
    when asked for, the number of accounts per state over the filter without its states."""

    items: list[Account]
    statuses: dict[uuid.UUID, AccountStatus]
    next_cursor: str | None
    counts: dict[str, int] | None = None


async def list_accounts(
    session: AsyncSession,
    *,
    cursor: str | None,
    limit: int = DEFAULT_LIMIT,
    q: str | None = None,
    label: str | None = None,
    states: Sequence[str] = (),
    workers: Sequence[str] = (),
    groups: Sequence[int] = (),
    sort: AccountSort | str = AccountSort.LABEL,
    with_counts: bool = False,
    id_prefix: str | None = None,
) -> AccountListing:
    """Accounts in ``sort``'s order (label by default; see ``AccountSort``), filtered by
    observed state, label prefix and text (label, username or phone; both
    case-insensitive), worker, group and id prefix (a valid ``AccountQuery.id_prefix``).
    ``cursor`` continues a listing in the same sort (one made for another sort is
    refused). ``with_counts`` adds one GROUP BY query."""
    order = sort_of(sort)
    after = _cursor_position(decode_cursor(cursor), order)
    wanted = AccountFilter(
        states=tuple(states),
        label=label,
        q=q,
        workers=tuple(workers),
        groups=tuple(groups),
        id_prefix=id_prefix,
    )
    rows = await AccountRepository(session).page(
        after=after, limit=limit, wanted=wanted, sort=order
    )
    page = slice_rows(rows, limit, lambda row: _cursor_key(order, row[2], row[0].label))
    counts = (
        await state_counts(
            session, label=label, q=q, workers=workers, groups=groups, id_prefix=id_prefix
        )
        if with_counts
        else None
    )
    return AccountListing(
        items=[account for account, _, _ in page.items],
        statuses={account.id: status for account, status, _ in page.items if status is not None},
        next_cursor=page.next_cursor,
        counts=counts,
    )


def choice(kind: type[E], value: E | str, *, what: str, error: type[AppError]) -> E:
    """``value`` as a member of the string enum ``kind``; anything else raises ``error``
    naming ``what`` was unknown and the allowed values."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        msg = f"unknown {what} {value!r}; use one of {allowed}"
        raise error(msg) from None


def sort_of(sort: AccountSort | str) -> AccountSort:
    """``sort`` as an ``AccountSort``; an unknown one is refused naming the allowed."""
    return choice(AccountSort, sort, what="sort", error=UnknownSort)


def _cursor_key(sort: AccountSort, key: Any, label: str) -> dict[str, Any]:
    if sort.key == "label":
        return {"sort": sort.value, "label": label}
    value = key.isoformat() if isinstance(key, datetime) else str(key)
    return {"sort": sort.value, "key": value, "label": label}


def _cursor_position(key: dict[str, Any] | None, sort: AccountSort) -> tuple[Any, str] | None:
    """(sort key, label) of the last row a cursor saw. A cursor without a sort is one from
    before sorting (label order)."""
    if key is None:
        return None
    made_for = key.get("sort", AccountSort.LABEL.value)
    known = isinstance(made_for, str) and made_for in set(AccountSort)
    if known and made_for != sort.value:
        msg = (
            f"the cursor continues a listing sorted by {made_for!r}, not {sort.value!r}; "
            "start again without a cursor"
        )
        raise CursorSortMismatch(msg)
    label, value = key.get("label"), key.get("key")
    position = _sort_key(sort, value) if made_for == sort.value else None
    if not isinstance(label, str) or "\x00" in label or position is None:
        msg = "cursor is not one this API returned"
        raise InvalidInput(msg)
    return position[0], label


def _sort_key(sort: AccountSort, value: object) -> tuple[Any] | None:
    """A cursor's sort key as the listing compares it, or None when it cannot be one."""
    if sort.key == "label":
        return (None,)
    if not isinstance(value, str):
        return None
    if sort.key == "state":
        return (AccountState(value),) if value in set(AccountState) else None
    if sort.key == "worker":
        return (value,) if "\x00" not in value else None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return (moment,) if moment.tzinfo is not None else None


async def state_counts(
    session: AsyncSession,
    *,
    label: str | None = None,
    q: str | None = None,
    workers: Sequence[str] = (),
    groups: Sequence[int] = (),
    id_prefix: str | None = None,
) -> dict[str, int]:
    """Accounts per observed state over the other filters (every known state present, zero
    or not; an account without a status row counts as stopped)."""
    wanted = AccountFilter(
        label=label, q=q, workers=tuple(workers), groups=tuple(groups), id_prefix=id_prefix
    )
    found = await AccountRepository(session).state_counts(wanted)
    return {state.value: 0 for state in AccountState} | found


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """The fleet at a glance: accounts by observed and by desired state, and how many of
    those desired running are online (what the online ratio and the alerts are made of)."""

    states: dict[str, int]
    desired: dict[str, int]
    running_online: int

    @property
    def desired_running(self) -> int:
        return self.desired.get(DesiredState.RUNNING, 0)

    @property
    def online_ratio(self) -> float:
        """Online / desired running; 1.0 when no account is desired running."""
        running = self.desired_running
        return self.running_online / running if running else 1.0


async def fleet_summary(session: AsyncSession) -> FleetSummary:
    """Counts over the whole fleet in one query."""
    counts = await AccountRepository(session).desired_state_counts()
    states = {state.value: 0 for state in AccountState}
    desired = {state.value: 0 for state in DesiredState}
    for (wanted, state), count in counts.items():
        states[state] = states.get(state, 0) + count
        desired[wanted] = desired.get(wanted, 0) + count
    online = counts.get((DesiredState.RUNNING.value, AccountState.ONLINE.value), 0)
    return FleetSummary(states=states, desired=desired, running_online=online)


async def accounts_in_states(session: AsyncSession, states: Sequence[str]) -> list[StateRow]:
    """Accounts whose observed state is one of ``states`` (label, state, reason, last error
    code, since, wait_until)."""
    return await AccountRepository(session).in_states(states)


async def statuses(
    session: AsyncSession, account_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, AccountStatus]:
    """The status rows of ``account_ids`` (accounts no worker has run are left out)."""
    return await AccountStatusRepository(session).by_accounts(account_ids)


async def select_accounts(
    session: AsyncSession,
    *,
    ids: Sequence[uuid.UUID] | None,
    wanted: AccountFilter | None,
) -> tuple[list[uuid.UUID], dict[str, Any]]:
    """The ids a bulk request (a command or a group change) covers, and how it chose them
    (for the audit record)."""
    if ids is not None and wanted is not None:
        msg = "give either ids or a filter, not both"
        raise InvalidBulkTarget(msg)
    repository = AccountRepository(session)
    if ids is not None:
        unique = list(dict.fromkeys(ids))
        if not unique:
            msg = "ids is empty; give at least one account id"
            raise InvalidBulkTarget(msg)
        if len(unique) > BULK_MAX_IDS:
            msg = f"at most {BULK_MAX_IDS} ids per call, got {len(unique)}"
            raise InvalidBulkTarget(msg)
        found = await repository.existing_ids(unique)
        missing = [i for i in unique if i not in found]
        if missing:
            named = ", ".join(str(i) for i in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            msg = f"no account with id {named}{more}; nothing was changed"
            raise AccountsNotFound(msg)
        return unique, {"ids": len(unique)}
    if wanted is None:
        msg = "give the accounts as ids or as a filter"
        raise InvalidBulkTarget(msg)
    _check_bulk_filter(wanted)
    return await repository.ids_matching(wanted), {"filter": wanted.describe()}


def _check_bulk_filter(wanted: AccountFilter) -> None:
    if wanted.everything and wanted.names_a_field:
        msg = "filter.all means every account; it cannot be combined with other fields"
        raise InvalidBulkTarget(msg)
    if not wanted.everything and not wanted.names_a_field:
        msg = "a filter must name at least one field; use ids or a filter"
        raise EmptyFilter(msg)


async def preview_matching(
    session: AsyncSession, wanted: AccountFilter, *, sample: int = PREVIEW_SAMPLE
) -> MatchPreview:
    """What a bulk action on every account ``wanted`` selects would touch: the count and
    the first ``sample`` accounts by label. The same selection (and the same refusals of an
    empty or mixed filter) as ``select_accounts``; reads only."""
    _check_bulk_filter(wanted)
    repository = AccountRepository(session)
    return MatchPreview(
        count=await repository.count_matching(wanted),
        sample=await repository.sample_matching(wanted, sample),
    )


async def preview_selection(
    session: AsyncSession,
    *,
    ids: Sequence[uuid.UUID] | None,
    wanted: AccountFilter | None,
    sample: int = PREVIEW_SAMPLE,
) -> MatchPreview:
    """``preview_matching`` for a bulk request's ids or filter (a dry run): the ids are
    checked as a real run checks them (all must exist)."""
    if ids is None and wanted is not None:
        return await preview_matching(session, wanted, sample=sample)
    account_ids, _ = await select_accounts(session, ids=ids, wanted=wanted)
    return MatchPreview(
        count=len(account_ids), sample=await sample_accounts(session, account_ids, sample)
    )


async def sample_accounts(
    session: AsyncSession, account_ids: Sequence[uuid.UUID], sample: int = PREVIEW_SAMPLE
) -> list[tuple[uuid.UUID, str, str]]:
    """The first ``sample`` of these accounts by label, as (id, label, observed state)."""
    return await AccountRepository(session).sample_of(account_ids, sample)


async def accounts_per_worker(session: AsyncSession) -> dict[str, dict[str, int]]:
    """The accounts each worker runs (every state but stopped), by state: read from the
    status rows, so the one process of a SQLite deployment shows too."""
    live = [state.value for state in AccountState if state is not AccountState.STOPPED]
    return await AccountStatusRepository(session).per_worker(live)


# --- timeline -----------------------------------------------------------------------------


async def latest_events(session: AsyncSession, limit: int = 20) -> list[tuple[AccountEvent, str]]:
    """The fleet's newest timeline events, newest first, each with its account's label."""
    return await AccountEventRepository(session).latest(limit)


async def list_events(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    kind: str | None = None,
) -> Slice[AccountEvent]:
    """An account's timeline, newest first; ``kind`` keeps one kind (command, state...)."""
    await get_account(session, account_id)
    key = decode_cursor(cursor)
    before = int(key["id"]) if key and isinstance(key.get("id"), int) else None
    rows = await AccountEventRepository(session).page(
        account_id, before=before, limit=limit, kind=kind
    )
    return slice_rows(rows, limit, lambda event: {"id": event.id})


def timeline_entry(
    account_id: uuid.UUID, kind: str, code: str, message: str, details: dict[str, Any]
) -> dict[str, Any]:
    """One timeline row for ``AccountEventRepository.append_many`` (a command, a group
    change), stamped now; the message is cut to its column's 500 characters."""
    return {
        "account_id": account_id,
        "at": utcnow(),
        "kind": kind,
        "code": code,
        "message": message[:500],
        "details": details,
    }


#: PostgreSQL channel announcing that account events were committed (payload unused); the
#: console's broadcaster listens on it, SQLite's one process polls instead.
EVENT_CHANNEL: Final = "tgfleet_account_events"


async def announce_events(session: AsyncSession, events: Sized) -> None:
    """Tell listeners (on commit) that this transaction appended ``events`` (nothing when
    there are none): one ``NOTIFY`` per transaction (PostgreSQL folds repeats), nothing on
    SQLite."""
    if events and session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": EVENT_CHANNEL})


@dataclass(frozen=True, slots=True)
class TailedEvent:
    """An account event read by the tail, with its account's label and current holder
    (the status row's worker: the event has no worker column)."""

    event: AccountEvent
    label: str
    worker_id: str | None


async def events_after(
    session: AsyncSession,
    after_id: int,
    limit: int,
    *,
    missing: Sequence[tuple[int, int]] = (),
) -> list[TailedEvent]:
    """Events with an id above ``after_id`` or inside the ``missing`` id ranges (ids not seen
    yet below it: PostgreSQL assigns ids at insert, not in commit order), oldest first, at
    most ``limit``: one query."""
    rows = await AccountEventRepository(session).tail(after_id, missing, limit)
    return [TailedEvent(event, label, worker_id) for event, label, worker_id in rows]


async def last_event_id(session: AsyncSession) -> int:
    """The newest event's id (0 when there is none)."""
    return await AccountEventRepository(session).last_id()
