"""Account services: accounts (created by the vault when a session is imported), operator
commands, the listing with per-state counts, the timeline, and per-group reply settings.

Desired state lives in ``account`` (``desired_state``, ``restart_seq``); the worker
reconciles towards it and reports what it observes in ``account_status``. Every command
and every group change appends to the account's timeline (``account_event``) and to the
audit log, in the caller's unit of work.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account.exceptions import (
    AccountLabelTaken,
    AccountNotFound,
    AccountsNotFound,
    EmptyFilter,
    GroupNeedsPlaybook,
    GroupNotFound,
    InvalidBulkTarget,
    InvalidGroupSettings,
    UnknownCommand,
)
from tgfleet.account.repository import (
    AccountEventRepository,
    AccountGroupRepository,
    AccountRepository,
    AccountStatusRepository,
    StateRow,
)
from tgfleet.account.schemas import (
    BULK_MAX_CHAT_IDS,
    BULK_MAX_IDS,
    CHAT_ID_MAX,
    CHAT_ID_MIN,
    AccountFilter,
    AccountState,
    ControlAction,
    DesiredState,
)
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.clock import utcnow
from tgfleet.kit.names import sanitise_name
from tgfleet.kit.pagination import DEFAULT_LIMIT, Slice, decode_cursor, slice_rows
from tgfleet.lease import notify
from tgfleet.lease import service as lease_service
from tgfleet.models import Account, AccountEvent, AccountGroup, AccountStatus
from tgfleet.playbook import service as playbook_service

LABEL_MAX = 200


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
    with_counts: bool = False,
) -> AccountListing:
    """Accounts in label order, filtered by observed state, label prefix and text (label,
    username or phone), both case-insensitive. ``with_counts`` adds one GROUP BY query."""
    key = decode_cursor(cursor)
    after = str(key["label"]) if key and "label" in key else None
    wanted = AccountFilter(states=tuple(states), label=label, q=q)
    repository = AccountRepository(session)
    rows = await repository.page(after=after, limit=limit, wanted=wanted)
    page = slice_rows(rows, limit, lambda row: {"label": row[0].label})
    counts = await state_counts(session, label=label, q=q) if with_counts else None
    return AccountListing(
        items=[account for account, _ in page.items],
        statuses={account.id: status for account, status in page.items if status is not None},
        next_cursor=page.next_cursor,
        counts=counts,
    )


async def state_counts(
    session: AsyncSession, *, label: str | None = None, q: str | None = None
) -> dict[str, int]:
    """Accounts per observed state (every known state present, zero or not; an account
    without a status row counts as stopped)."""
    found = await AccountRepository(session).state_counts(AccountFilter(label=label, q=q))
    return {state.value: 0 for state in AccountState} | found


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """The fleet at a glance: accounts by observed and by desired state, and how many of
    those desired running are online (what the online ratio and the alerts are made of)."""

    states: dict[str, int]
    desired: dict[str, int]
    running_online: int

    @property
    def online_ratio(self) -> float:
        """Online / desired running; 1.0 when no account is desired running."""
        running = self.desired.get("running", 0)
        return self.running_online / running if running else 1.0


async def fleet_summary(session: AsyncSession) -> FleetSummary:
    """Counts over the whole fleet in one query."""
    counts = await AccountRepository(session).desired_state_counts()
    states = {state.value: 0 for state in AccountState}
    desired: dict[str, int] = {"running": 0, "stopped": 0}
    for (wanted, state), count in counts.items():
        states[state] = states.get(state, 0) + count
        desired[wanted] = desired.get(wanted, 0) + count
    online = counts.get(("running", AccountState.ONLINE.value), 0)
    return FleetSummary(states=states, desired=desired, running_online=online)


async def accounts_in_states(session: AsyncSession, states: Sequence[str]) -> list[StateRow]:
    """Accounts whose observed state is one of ``states`` (label, state, reason, last error
    code, since, wait_until)."""
    return await AccountRepository(session).in_states(states)


async def groups_switched_off(session: AsyncSession) -> list[tuple[Account, AccountGroup]]:
    """Group settings a group error switched off (``disabled_reason`` set), with accounts."""
    return await AccountGroupRepository(session).switched_off()


async def statuses(
    session: AsyncSession, account_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, AccountStatus]:
    """The status rows of ``account_ids`` (accounts no worker has run are left out)."""
    return await AccountStatusRepository(session).by_accounts(account_ids)


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkResult:
    action: ControlAction
    matched: int
    changed: int


async def control(
    session: AsyncSession, context: AuditContext, account_id: uuid.UUID, action: ControlAction | str
) -> Account:
    """Start, stop or restart one account by moving its desired state; the worker acts on
    it within a second.

    ``start`` sets ``desired_state`` to running and, when the worker observed the account
    ``quarantined`` or in ``error``, raises ``restart_seq`` as well: an operator's explicit
    start lifts a quarantine. ``restart`` always raises ``restart_seq``. A command that
    changes nothing (stopping a stopped account) still succeeds, is audited and appears on
    the timeline.
    """
    command = _command(action)
    account = await get_account(session, account_id)
    repository = AccountRepository(session)
    changed = await repository.apply_command([account.id], command) > 0
    await repository.refresh(account)
    details = {
        "actor": context.actor,
        "desired_state": account.desired_state,
        "restart_seq": account.restart_seq,
        "changed": changed,
    }
    await AccountEventRepository(session).append_many(
        [_command_event(account.id, command, context, details)]
    )
    await audit_service.record(
        session,
        context,
        action=f"account.{command.value}",
        target=f"account:{account.id}",
        details={"label": account.label} | details,
    )
    if account.desired_state == DesiredState.RUNNING.value:
        await lease_service.ensure_leases(session, [account.id])
    await notify.workers(session)
    return account


async def bulk_control(
    session: AsyncSession,
    context: AuditContext,
    *,
    ids: Sequence[uuid.UUID] | None = None,
    filter: AccountFilter | None = None,  # noqa: A002 - the name the API body uses
    action: ControlAction | str,
) -> BulkResult:
    """Start, stop or restart many accounts, chosen by ``ids`` or by ``filter`` (exactly
    one), with set-based UPDATEs (a few statements for 10,000 accounts).

    ``ids`` holds at most 10,000 ids, and every one must exist (else a 404 naming up to five
    unknown ids, and nothing changes). A filter must name at least one field; the whole
    fleet needs ``AccountFilter(everything=True)`` (``{"filter": {"all": true}}``) on its own.
    Each matched account gets a timeline event; one audit record describes the whole call
    (the filter or the number of ids, matched and changed).
    """
    command = _command(action)
    account_ids, selection = await _select_accounts(session, ids=ids, wanted=filter)
    changed = await AccountRepository(session).apply_command(account_ids, command)
    details: dict[str, Any] = {"actor": context.actor, "bulk": True}
    await AccountEventRepository(session).append_many(
        [_command_event(account_id, command, context, details) for account_id in account_ids]
    )
    await audit_service.record(
        session,
        context,
        action="account.bulk",
        target="accounts",
        details={
            "action": command.value,
            **selection,
            "matched": len(account_ids),
            "changed": changed,
        },
    )
    if command is not ControlAction.STOP:
        await lease_service.ensure_leases(session, account_ids)
    await notify.workers(session)
    return BulkResult(action=command, matched=len(account_ids), changed=changed)


def _command(action: ControlAction | str) -> ControlAction:
    try:
        return ControlAction(action)
    except ValueError:
        choices = ", ".join(a.value for a in ControlAction)
        msg = f"unknown command {action!r}; use one of {choices}"
        raise UnknownCommand(msg) from None


def _command_event(
    account_id: uuid.UUID, action: ControlAction, context: AuditContext, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "at": utcnow(),
        "kind": "command",
        "code": action.value,
        "message": f"{action.value} requested by {context.actor}"[:500],
        "details": details,
    }


async def _select_accounts(
    session: AsyncSession,
    *,
    ids: Sequence[uuid.UUID] | None,
    wanted: AccountFilter | None,
) -> tuple[list[uuid.UUID], dict[str, Any]]:
    """The ids a bulk request covers, and how it chose them (for the audit record)."""
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
    if wanted.everything and wanted.names_a_field:
        msg = "filter.all means every account; it cannot be combined with other fields"
        raise InvalidBulkTarget(msg)
    if not wanted.everything and not wanted.names_a_field:
        msg = "a filter must name at least one field; use ids or a filter"
        raise EmptyFilter(msg)
    return await repository.ids_matching(wanted), {"filter": wanted.describe()}


# --- timeline -----------------------------------------------------------------------------


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


# --- groups -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupBulkResult:
    matched: int
    groups: int
    created: int


#: Group rows one bulk call may create (accounts x chat ids).
BULK_MAX_CREATED_GROUPS = 100_000


def _check_chat_id(chat_id: int) -> None:
    if chat_id == 0 or not CHAT_ID_MIN <= chat_id <= CHAT_ID_MAX:
        msg = f"chat id {chat_id} is not a marked Telegram chat id (a non-zero 64-bit integer)"
        raise InvalidGroupSettings(msg)


async def _check_playbook(
    session: AsyncSession, *, enabled: bool, playbook_id: uuid.UUID | None, version: int | None
) -> None:
    if version is not None and playbook_id is None:
        msg = "playbook_version pins a version of a playbook; give playbook_id as well"
        raise InvalidGroupSettings(msg)
    if enabled and playbook_id is None:
        msg = "assign a playbook before enabling replies in a group"
        raise GroupNeedsPlaybook(msg)
    if playbook_id is not None:
        await playbook_service.ensure_version(session, playbook_id, version)


async def list_groups(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Slice[AccountGroup]:
    """The groups of an account (found by the worker or added by an operator), by chat id."""
    await get_account(session, account_id)
    key = decode_cursor(cursor)
    after = int(key["chat_id"]) if key and isinstance(key.get("chat_id"), int) else None
    rows = await AccountGroupRepository(session).page(account_id, after=after, limit=limit)
    return slice_rows(rows, limit, lambda group: {"chat_id": group.chat_id})


async def set_group(
    session: AsyncSession,
    context: AuditContext,
    account_id: uuid.UUID,
    chat_id: int,
    *,
    enabled: bool,
    playbook_id: uuid.UUID | None,
    playbook_version: int | None,
    title: str | None,
) -> AccountGroup:
    """Create or update an account's settings for one group (replies are opt-in).

    Enabling needs a playbook (422 otherwise), which must exist (404) in the pinned
    version if one is given (``playbook_version`` null follows the latest). Enabling
    clears a previous disabled reason; switching an enabled group off records the reason
    ``operator``. ``title`` null keeps the current title. Audited as
    ``account.group.update``, with a ``group`` event (enabled, disabled or updated).
    """
    _check_chat_id(chat_id)
    await _check_playbook(
        session, enabled=enabled, playbook_id=playbook_id, version=playbook_version
    )
    await get_account(session, account_id)
    repository = AccountGroupRepository(session)
    group = await repository.one(account_id, chat_id)
    created = False
    if group is None:
        group, created = await repository.add_or_get(
            AccountGroup(account_id=account_id, chat_id=chat_id, title=title, enabled=False)
        )
    was_enabled = group.enabled
    group.enabled = enabled
    group.playbook_id = playbook_id
    group.playbook_version = playbook_version
    if title is not None:
        group.title = title
    if enabled:
        group.disabled_reason = None
        group.disabled_at = None
    elif was_enabled:
        group.disabled_reason = "operator"
        group.disabled_at = utcnow()
    await session.flush()
    code = "updated"
    if enabled and not was_enabled:
        code = "enabled"
    elif was_enabled and not enabled:
        code = "disabled"
    details = {
        "actor": context.actor,
        "chat_id": chat_id,
        "enabled": enabled,
        "playbook_id": str(playbook_id) if playbook_id else None,
        "playbook_version": playbook_version,
        "created": created,
    }
    await AccountEventRepository(session).append_many(
        [_group_event(account_id, code, f"group {chat_id} {code} by {context.actor}", details)]
    )
    await audit_service.record(
        session,
        context,
        action="account.group.update",
        target=f"account:{account_id}",
        details=details | {"result": code},
    )
    await notify.workers(session)
    return group


async def delete_group(
    session: AsyncSession, context: AuditContext, account_id: uuid.UUID, chat_id: int
) -> None:
    """Forget an account's settings for one group (404 if there are none). A worker that
    still sees the group will list it again, disabled."""
    await get_account(session, account_id)
    repository = AccountGroupRepository(session)
    group = await repository.one(account_id, chat_id)
    if group is None:
        raise GroupNotFound(f"account {account_id} has no settings for chat {chat_id}")
    details = {"actor": context.actor, "chat_id": chat_id, "title": group.title}
    await repository.delete(group)
    await AccountEventRepository(session).append_many(
        [
            _group_event(
                account_id, "removed", f"group {chat_id} removed by {context.actor}", details
            )
        ]
    )
    await audit_service.record(
        session,
        context,
        action="account.group.delete",
        target=f"account:{account_id}",
        details=details,
    )
    await notify.workers(session)


async def bulk_set_groups(
    session: AsyncSession,
    context: AuditContext,
    *,
    ids: Sequence[uuid.UUID] | None = None,
    filter: AccountFilter | None = None,  # noqa: A002 - the name the API body uses
    chat_ids: Sequence[int] | None = None,
    all_groups: bool = False,
    enabled: bool,
    playbook_id: uuid.UUID | None = None,
    playbook_version: int | None = None,
    create: bool = False,
) -> GroupBulkResult:
    """Switch replies on or off in many groups of many accounts at once, set-based.

    Accounts: ``ids`` or ``filter``, exactly as for ``bulk_control``. Groups: ``chat_ids``
    (at most 1,000) or ``all_groups`` (every group row the accounts have), exactly one.
    ``enabled`` is set on every selected row; ``playbook_id`` (with an optional pinned
    ``playbook_version``) replaces each row's playbook when given and leaves it alone when
    null, and enabling requires it, so a bulk enable always names the playbook it turns on.
    Only rows that exist are written, unless ``create`` (with ``chat_ids`` only) adds the
    missing (account, chat) rows, at most 100,000 per call. One ``group`` event per account
    touched and one audit record (``account.group.bulk``).
    """
    if (chat_ids is None) == (not all_groups):
        msg = "give either chat_ids or all_groups (exactly one)"
        raise InvalidGroupSettings(msg)
    if create and chat_ids is None:
        msg = "create needs chat_ids: all_groups only covers groups that exist"
        raise InvalidGroupSettings(msg)
    chats = list(dict.fromkeys(chat_ids)) if chat_ids is not None else None
    if chats is not None:
        if not chats or len(chats) > BULK_MAX_CHAT_IDS:
            msg = f"give 1 to {BULK_MAX_CHAT_IDS} chat ids"
            raise InvalidGroupSettings(msg)
        for chat_id in chats:
            _check_chat_id(chat_id)
    await _check_playbook(
        session, enabled=enabled, playbook_id=playbook_id, version=playbook_version
    )
    account_ids, selection = await _select_accounts(session, ids=ids, wanted=filter)
    repository = AccountGroupRepository(session)
    now = utcnow()
    created = 0
    if create and chats is not None and account_ids:
        if len(account_ids) * len(chats) > BULK_MAX_CREATED_GROUPS:
            msg = (
                f"create may add at most {BULK_MAX_CREATED_GROUPS} group rows per call "
                f"({len(account_ids)} accounts x {len(chats)} chats); split the request"
            )
            raise InvalidGroupSettings(msg)
        existing = await repository.existing_pairs(account_ids, chats)
        missing = [
            {
                "account_id": account_id,
                "chat_id": chat_id,
                "enabled": False,
                "created_at": now,
                "updated_at": now,
            }
            for account_id in account_ids
            for chat_id in chats
            if (account_id, chat_id) not in existing
        ]
        await repository.insert_many(missing)
        created = len(missing)
    per_account = await repository.counts_by_account(account_ids, chats)
    playbook = (playbook_id, playbook_version) if playbook_id is not None else None
    written = await repository.set_many(
        account_ids, chats, enabled=enabled, playbook=playbook, now=now
    )
    code = "enabled" if enabled else "disabled"
    event_details: dict[str, Any] = {
        "actor": context.actor,
        "bulk": True,
        "enabled": enabled,
        "playbook_id": str(playbook_id) if playbook_id else None,
        "playbook_version": playbook_version,
    }
    await AccountEventRepository(session).append_many(
        [
            _group_event(
                account_id,
                code,
                f"{count} group(s) {code} by {context.actor}",
                event_details | {"groups": count},
            )
            for account_id, count in per_account.items()
        ]
    )
    await audit_service.record(
        session,
        context,
        action="account.group.bulk",
        target="accounts",
        details={
            **selection,
            "chat_ids": chats if chats is not None else "all",
            "enabled": enabled,
            "playbook_id": str(playbook_id) if playbook_id else None,
            "playbook_version": playbook_version,
            "create": create,
            "matched": len(account_ids),
            "groups": written,
            "created": created,
        },
    )
    await notify.workers(session)
    return GroupBulkResult(matched=len(account_ids), groups=written, created=created)


def _group_event(
    account_id: uuid.UUID, code: str, message: str, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "at": utcnow(),
        "kind": "group",
        "code": code,
        "message": message[:500],
        "details": details,
    }
