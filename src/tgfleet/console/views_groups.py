"""What the groups page shows, from the account domain's services: every group the fleet's
accounts are in, by chat, each account's reply setting there, its playbook, its recent
replies and why a group was switched off; and the preview of a bulk change, pair by pair."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account import groups as account_groups
from tgfleet.account.schemas import MemberRow as GroupSetting
from tgfleet.account.schemas import ReplyCount
from tgfleet.console.i18n import gettext as _
from tgfleet.console.views_account import PlaybookChoice, playbook_choices
from tgfleet.exceptions import InvalidInput

#: Chats per page, and the accounts listed under each (the rest are counted).
GROUPS_PAGE = 50
ACCOUNTS_PER_CHAT = 50
#: The most (account, group) pairs one bulk change previews and applies.
BULK_MAX_PAIRS = 500
#: The enabled filter's values, as the URL carries them.
STATES = ("", "enabled", "disabled")

Pair = tuple[uuid.UUID, int]


@dataclass(frozen=True, slots=True)
class GroupFilters:
    """The groups page's filters, as the URL carries them."""

    q: str = ""
    state: str = ""

    @property
    def active(self) -> bool:
        return bool(self.q or self.state)

    @property
    def enabled(self) -> bool | None:
        return {"enabled": True, "disabled": False}.get(self.state)

    def query(self, **changes: str) -> str:
        values = {"q": self.q, "state": self.state} | changes
        return urlencode([(name, value) for name, value in values.items() if value])


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One account in one group: its setting there and its replies of the last 24 hours."""

    account_id: uuid.UUID
    label: str
    chat_id: int
    enabled: bool
    playbook: str | None
    playbook_id: uuid.UUID | None
    playbook_version: int | None
    disabled_reason: str | None
    disabled_at: datetime | None
    replies: int = 0
    last_reply_at: datetime | None = None
    title: str | None = None

    @property
    def pair(self) -> str:
        return f"{self.account_id}:{self.chat_id}"


@dataclass(frozen=True, slots=True)
class ChatGroup:
    chat_id: int
    title: str | None
    accounts: int
    enabled: int
    members: list[MemberRow]

    @property
    def more(self) -> int:
        return self.accounts - len(self.members)


@dataclass(frozen=True, slots=True)
class GroupsPage:
    filters: GroupFilters
    chats: list[ChatGroup]
    cursor: str | None
    next_cursor: str | None
    playbooks: list[PlaybookChoice]


def _playbook_names(playbooks: Iterable[PlaybookChoice]) -> dict[uuid.UUID, str]:
    return {playbook.id: playbook.name for playbook in playbooks}


def _member(
    row: GroupSetting,
    names: dict[uuid.UUID, str],
    replies: dict[Pair, ReplyCount],
) -> MemberRow:
    count = replies.get((row.account_id, row.chat_id))
    return MemberRow(
        account_id=row.account_id,
        label=row.label,
        chat_id=row.chat_id,
        enabled=row.enabled,
        playbook=names.get(row.playbook_id) if row.playbook_id is not None else None,
        playbook_id=row.playbook_id,
        playbook_version=row.playbook_version,
        disabled_reason=row.disabled_reason,
        disabled_at=row.disabled_at,
        replies=count.replies if count is not None else 0,
        last_reply_at=count.last_at if count is not None else None,
        title=row.title,
    )


async def groups_page(
    session: AsyncSession, filters: GroupFilters, cursor: str | None
) -> GroupsPage:
    found = await account_groups.fleet_groups(
        session,
        title=filters.q or None,
        enabled=filters.enabled,
        cursor=cursor,
        limit=GROUPS_PAGE,
        per_chat=ACCOUNTS_PER_CHAT,
    )
    rows = [member for members in found.members.values() for member in members]
    replies = await account_groups.recent_group_replies(
        session,
        sorted({row.account_id for row in rows}),
        [chat.chat_id for chat in found.chats],
    )
    playbooks = await playbook_choices(session)
    names = _playbook_names(playbooks)
    chats = [
        ChatGroup(
            chat_id=chat.chat_id,
            title=chat.title,
            accounts=chat.accounts,
            enabled=chat.enabled,
            members=[_member(row, names, replies) for row in found.members[chat.chat_id]],
        )
        for chat in found.chats
    ]
    return GroupsPage(
        filters=filters,
        chats=chats,
        cursor=cursor,
        next_cursor=found.next_cursor,
        playbooks=playbooks,
    )


def parse_pair(raw: str) -> Pair:
    """``<account id>:<chat id>`` as the page's checkboxes carry it."""
    account, _, chat = raw.partition(":")
    try:
        return uuid.UUID(account), int(chat)
    except ValueError:
        msg = f"not an (account, group) pair: {raw[:80]!r}"
        raise InvalidInput(msg) from None


@dataclass(frozen=True, slots=True)
class PairChange:
    """One (account, group) pair of a bulk preview: its setting now and what it becomes."""

    row: MemberRow
    #: "change", "same" (already so) or "no_playbook" (cannot be enabled: none to keep).
    outcome: str
    playbook_after: str | None
    version_after: int | None


@dataclass(frozen=True, slots=True)
class BulkPreview:
    enable: bool
    playbook: PlaybookChoice | None
    version: int | None
    changes: list[PairChange]
    too_many: bool

    @property
    def changing(self) -> list[PairChange]:
        return [change for change in self.changes if change.outcome == "change"]

    @property
    def unchanged(self) -> list[PairChange]:
        return [change for change in self.changes if change.outcome != "change"]


async def selected_pairs(
    session: AsyncSession,
    pairs: Sequence[Pair],
    chats: Sequence[int],
    enabled: bool | None,
) -> list[Pair]:
    """The pairs checked one by one, and every account (of the filter's ``enabled``) of the
    chats checked whole; at most ``BULK_MAX_PAIRS + 1`` (one more says "too many")."""
    found = dict.fromkeys(pairs)
    if chats:
        members = await account_groups.chat_members(
            session, chats, enabled=enabled, per_chat=BULK_MAX_PAIRS + 1
        )
        found.update(dict.fromkeys((row.account_id, row.chat_id) for row in members))
    return list(found)[: BULK_MAX_PAIRS + 1]


async def bulk_preview(
    session: AsyncSession,
    pairs: Sequence[Pair],
    *,
    enable: bool,
    playbook_id: uuid.UUID | None,
    version: int | None,
) -> BulkPreview:
    """What enabling or disabling these pairs does to each, as the database has them now.

    Disabling keeps each group's playbook; enabling without a playbook turns each group
    back on with the one it kept (a group with none cannot be enabled that way)."""
    playbooks = await playbook_choices(session)
    names = _playbook_names(playbooks)
    chosen = next((p for p in playbooks if p.id == playbook_id), None)
    if playbook_id is not None and chosen is None:
        msg = _("That playbook does not exist (any more): choose another.")
        raise InvalidInput(msg)
    too_many = len(pairs) > BULK_MAX_PAIRS
    rows = await account_groups.group_settings(session, set(pairs[:BULK_MAX_PAIRS]))
    changes = []
    for setting in rows:
        row = _member(setting, names, {})
        after_id, after_version = row.playbook_id, row.playbook_version
        if enable and chosen is not None:
            after_id, after_version = chosen.id, version
        if enable and after_id is None:
            outcome = "no_playbook"
        elif row.enabled == enable and (after_id, after_version) == (
            row.playbook_id,
            row.playbook_version,
        ):
            outcome = "same"
        else:
            outcome = "change"
        changes.append(
            PairChange(
                row=row,
                outcome=outcome,
                playbook_after=names.get(after_id) if after_id is not None else None,
                version_after=after_version,
            )
        )
    return BulkPreview(
        enable=enable, playbook=chosen, version=version, changes=changes, too_many=too_many
    )


def by_account_set(pairs: Iterable[Pair]) -> list[tuple[list[uuid.UUID], list[int]]]:
    """The pairs as (accounts, chats) blocks whose every combination is one of the pairs:
    the chats sharing the same set of accounts go together (one bulk call each, so the call
    writes exactly these pairs and nothing the preview did not show)."""
    accounts_of: dict[int, set[uuid.UUID]] = defaultdict(set)
    for account_id, chat_id in pairs:
        accounts_of[chat_id].add(account_id)
    chats_of: dict[frozenset[uuid.UUID], list[int]] = defaultdict(list)
    for chat_id, accounts in sorted(accounts_of.items()):
        chats_of[frozenset(accounts)].append(chat_id)
    return [(sorted(accounts), chats) for accounts, chats in chats_of.items()]
