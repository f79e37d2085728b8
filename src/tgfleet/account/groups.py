"""Per-group reply settings of accounts: listing, one group's settings, set-based bulk
changes over many accounts, and the groups a group error switched off. Replies are opt-in;
every change appends a ``group`` event to the timeline and an audit record, and wakes the
workers on commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account.exceptions import GroupNeedsPlaybook, GroupNotFound, InvalidGroupSettings
from tgfleet.account.group_repository import AccountGroupRepository
from tgfleet.account.repository import AccountEventRepository
from tgfleet.account.runtime import REPLY
from tgfleet.account.schemas import (
    BULK_MAX_CHAT_IDS,
    CHAT_ID_MAX,
    CHAT_ID_MIN,
    AccountFilter,
    ChatRow,
    MemberRow,
    ReplyCount,
)
from tgfleet.account.service import (
    get_account,
    sample_accounts,
    select_accounts,
    timeline_entry,
)
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.clock import utcnow
from tgfleet.kit.pagination import DEFAULT_LIMIT, Slice, decode_cursor, slice_rows
from tgfleet.lease import notify
from tgfleet.models import Account, AccountGroup
from tgfleet.playbook import service as playbook_service


async def groups_switched_off(session: AsyncSession) -> list[tuple[Account, AccountGroup]]:
    """Group settings a group error switched off (``disabled_reason`` set), with accounts."""
    return await AccountGroupRepository(session).switched_off()


@dataclass(frozen=True, slots=True)
class FleetGroups:
    """One page of the chats the fleet's accounts are in (by chat id), the first accounts of
    each (by label) with their settings, and the cursor of the next page."""

    chats: list[ChatRow]
    members: dict[int, list[MemberRow]]
    next_cursor: str | None


async def fleet_groups(
    session: AsyncSession,
    *,
    title: str | None = None,
    enabled: bool | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    per_chat: int = 50,
) -> FleetGroups:
    """Every group the fleet's accounts are in, grouped by chat and paged by chat id.

    ``title`` keeps the settings whose title contains it (any case), ``enabled`` those with
    replies on (True) or off (False); a chat is listed when one of its settings is kept,
    with the kept ones only (its first ``per_chat`` accounts by label; ``accounts`` counts
    them all)."""
    key = decode_cursor(cursor)
    after = int(key["chat_id"]) if key and isinstance(key.get("chat_id"), int) else None
    repository = AccountGroupRepository(session)
    rows = await repository.chats(title=title, enabled=enabled, after=after, limit=limit)
    page = slice_rows(rows, limit, lambda chat: {"chat_id": chat.chat_id})
    members: dict[int, list[MemberRow]] = {chat.chat_id: [] for chat in page.items}
    for member in await repository.members(
        list(members), title=title, enabled=enabled, per_chat=per_chat
    ):
        members[member.chat_id].append(member)
    return FleetGroups(chats=page.items, members=members, next_cursor=page.next_cursor)


@dataclass(frozen=True, slots=True)
class ChatPlaybook:
    """A playbook the accounts of a chat are set to, and how many of them."""

    id: uuid.UUID
    name: str
    accounts: int


@dataclass(frozen=True, slots=True)
class ChatSummary:
    """One chat across the fleet (the API's group listing): its title, how many accounts
    (of the filter) are in it, how many of those reply, and their playbooks by name."""

    chat_id: int
    title: str | None
    accounts: int
    enabled: int
    playbooks: list[ChatPlaybook]


async def chat_summaries(
    session: AsyncSession,
    *,
    title: str | None = None,
    enabled: bool | None = None,
    label: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Slice[ChatSummary]:
    """Every group the fleet's accounts are in, by chat id, without the accounts: the
    counts and playbooks over the settings that match ``title`` (a part of it, any case),
    ``enabled`` and the account ``label`` prefix (any case); a chat with none is left out."""
    key = decode_cursor(cursor)
    after = int(key["chat_id"]) if key and isinstance(key.get("chat_id"), int) else None
    repository = AccountGroupRepository(session)
    rows = await repository.chats(
        title=title, enabled=enabled, after=after, limit=limit, label=label
    )
    page = slice_rows(rows, limit, lambda chat: {"chat_id": chat.chat_id})
    used = await repository.chat_playbooks(
        [chat.chat_id for chat in page.items], title=title, enabled=enabled, label=label
    )
    names = await playbook_service.names(session, {playbook_id for _, playbook_id, _ in used})
    playbooks: dict[int, list[ChatPlaybook]] = {}
    for chat_id, playbook_id, accounts in used:
        name = names.get(playbook_id, str(playbook_id))
        playbooks.setdefault(chat_id, []).append(ChatPlaybook(playbook_id, name, accounts))
    return Slice(
        items=[
            ChatSummary(
                chat_id=chat.chat_id,
                title=chat.title,
                accounts=chat.accounts,
                enabled=chat.enabled,
                playbooks=sorted(
                    playbooks.get(chat.chat_id, []), key=lambda p: (-p.accounts, p.name)
                ),
            )
            for chat in page.items
        ],
        next_cursor=page.next_cursor,
    )


async def chat_members(
    session: AsyncSession, chat_ids: Sequence[int], *, enabled: bool | None, per_chat: int
) -> list[MemberRow]:
    """The first ``per_chat`` accounts (by label) of each of these chats, with their
    settings (``enabled``: only those with replies on or off)."""
    return await AccountGroupRepository(session).members(
        chat_ids, title=None, enabled=enabled, per_chat=per_chat
    )


async def group_settings(
    session: AsyncSession, pairs: Collection[tuple[uuid.UUID, int]]
) -> list[MemberRow]:
    """The current settings of these (account, chat) pairs (those that exist)."""
    return await AccountGroupRepository(session).pairs(pairs)


#: What "recent replies" covers on the groups page.
RECENT_REPLIES_WINDOW = timedelta(hours=24)


async def recent_group_replies(
    session: AsyncSession,
    account_ids: Sequence[uuid.UUID],
    chat_ids: Sequence[int],
    *,
    since: datetime | None = None,
) -> dict[tuple[uuid.UUID, int], ReplyCount]:
    """Replies each account sent in each of these chats since ``since`` (default: the
    last :data:`RECENT_REPLIES_WINDOW`): how many and the last one's time, from the
    ``reply`` timeline events the workers record."""
    since = since or utcnow() - RECENT_REPLIES_WINDOW
    counts = await AccountGroupRepository(session).reply_counts(
        account_ids, chat_ids, kind=REPLY, since=since
    )
    return {(count.account_id, count.chat_id): count for count in counts}


@dataclass(frozen=True, slots=True)
class GroupBulkResult:
    """What a bulk group change did, or on a dry run would do (``sample``: the first
    matched accounts by label as (id, label, observed state); None when it ran)."""

    matched: int
    groups: int
    created: int
    sample: list[tuple[uuid.UUID, str, str]] | None = None


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
        [
            timeline_entry(
                account_id, "group", code, f"group {chat_id} {code} by {context.actor}", details
            )
        ]
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
            timeline_entry(
                account_id,
                "group",
                "removed",
                f"group {chat_id} removed by {context.actor}",
                details,
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


async def _missing_groups(
    repository: AccountGroupRepository,
    account_ids: Sequence[uuid.UUID],
    chats: Sequence[int] | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """The (account, chat) group rows ``create`` adds: those of ``chats`` an account lacks."""
    if chats is None or not account_ids:
        return []
    if len(account_ids) * len(chats) > BULK_MAX_CREATED_GROUPS:
        msg = (
            f"create may add at most {BULK_MAX_CREATED_GROUPS} group rows per call "
            f"({len(account_ids)} accounts x {len(chats)} chats); split the request"
        )
        raise InvalidGroupSettings(msg)
    existing = await repository.existing_pairs(account_ids, chats)
    return [
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
    dry_run: bool = False,
) -> GroupBulkResult:
    """Switch replies on or off in many groups of many accounts at once, set-based.

    Accounts: ``ids`` or ``filter``, exactly as for ``bulk_control``. Groups: ``chat_ids``
    (at most 1,000) or ``all_groups`` (every group row the accounts have), exactly one.
    ``enabled`` is set on every selected row; ``playbook_id`` (with an optional pinned
    ``playbook_version``) replaces each row's playbook when given and leaves it alone when
    null. Disabling keeps each row's playbook, so an enable without ``playbook_id``
    re-enables every group with the playbook (and pinned version) it had; it is refused
    (422, nothing written) when any selected or created row has none.
    Only rows that exist are written, unless ``create`` (with ``chat_ids`` only) adds the
    missing (account, chat) rows, at most 100,000 per call. One ``group`` event per account
    touched and one audit record (``account.group.bulk``). ``dry_run`` checks and counts
    the same (and names the first accounts) but writes nothing: no row, event or audit.
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
    restoring = enabled and playbook_id is None
    await _check_playbook(
        session,
        enabled=enabled and not restoring,
        playbook_id=playbook_id,
        version=playbook_version,
    )
    account_ids, selection = await select_accounts(session, ids=ids, wanted=filter)
    repository = AccountGroupRepository(session)
    now = utcnow()
    missing = await _missing_groups(repository, account_ids, chats, now) if create else []
    created = len(missing)
    if restoring:
        lacking = len(missing) + await repository.count_without_playbook(account_ids, chats)
        if lacking:
            msg = (
                f"{lacking} of the selected groups have no playbook to re-enable with; "
                "assign a playbook before enabling replies in a group"
            )
            raise GroupNeedsPlaybook(msg)
    if dry_run:
        existing_rows = await repository.counts_by_account(account_ids, chats)
        return GroupBulkResult(
            matched=len(account_ids),
            groups=sum(existing_rows.values()) + created,
            created=created,
            sample=await sample_accounts(session, account_ids),
        )
    await repository.insert_many(missing)
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
            timeline_entry(
                account_id,
                "group",
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


# --- The groups that use a playbook (the console's playbook pages) -----------------------


@dataclass(frozen=True, slots=True)
class PlaybookUsage:
    """How many groups use a playbook, and the first of them (with their accounts)."""

    count: int
    first: list[tuple[Account, AccountGroup]]


async def playbook_usage(
    session: AsyncSession, playbook_ids: Sequence[uuid.UUID], *, first: int = 5
) -> dict[uuid.UUID, PlaybookUsage]:
    """For each of ``playbook_ids``: the number of groups set to it and the first ``first``
    of them by account label (a playbook no group uses is not in the result)."""
    repository = AccountGroupRepository(session)
    counts = await repository.usage_counts(playbook_ids)
    listed: dict[uuid.UUID, list[tuple[Account, AccountGroup]]] = {}
    for account, group in await repository.first_using(list(counts), first):
        if group.playbook_id is not None:
            listed.setdefault(group.playbook_id, []).append((account, group))
    return {
        playbook_id: PlaybookUsage(count=count, first=listed.get(playbook_id, []))
        for playbook_id, count in counts.items()
    }


async def groups_using_playbook(
    session: AsyncSession,
    playbook_id: uuid.UUID,
    *,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Slice[tuple[Account, AccountGroup]]:
    """The groups set to ``playbook_id`` (pinned or following the latest), with their
    accounts, by account label; ``cursor`` continues the order."""
    key = decode_cursor(cursor) or {}
    after = None
    if isinstance(key.get("label"), str) and isinstance(key.get("chat_id"), int):
        try:
            after = (str(key["label"]), uuid.UUID(str(key.get("account_id"))), int(key["chat_id"]))
        except ValueError:
            after = None
    rows = await AccountGroupRepository(session).using_playbook(
        playbook_id, after=after, limit=limit
    )
    return slice_rows(
        rows,
        limit,
        lambda row: {
            "label": row[0].label,
            "account_id": str(row[0].id),
            "chat_id": row[1].chat_id,
        },
    )


async def get_group(session: AsyncSession, account_id: uuid.UUID, chat_id: int) -> AccountGroup:
    """One account's settings for one group; 404 when the account is not in it."""
    group = await AccountGroupRepository(session).one(account_id, chat_id)
    if group is None:
        msg = f"account {account_id} has no settings for group {chat_id}"
        raise GroupNotFound(msg)
    return group
