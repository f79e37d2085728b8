"""What the account page shows, from the domains' services (never their repositories):
the observed state and its counters, the session's vault summary (never key material), the
timeline, the groups with their reply settings, and the replies sent recently."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account import activity
from tgfleet.account import groups as account_groups
from tgfleet.account import service as account_service
from tgfleet.account.exceptions import AccountNotFound
from tgfleet.account.schemas import AccountEventRead
from tgfleet.console.i18n import N_
from tgfleet.console.i18n import gettext as _
from tgfleet.kit.pagination import MAX_LIMIT
from tgfleet.lease import service as lease_service
from tgfleet.models import AccountEvent
from tgfleet.playbook import service as playbook_service
from tgfleet.vault import service as vault_service
from tgfleet.vault.formats import SessionFormat

#: The timeline's kinds a viewer can filter on (the API takes any kind as well).
EVENT_KINDS: dict[str, str] = {
    "state": N_("State changes"),
    "command": N_("Operator commands"),
    "group": N_("Group settings"),
    "group_disabled": N_("Groups switched off"),
    "reply": N_("Replies sent"),
    "llm_fallback": N_("LLM fallbacks"),
}
TIMELINE_PAGE = 50
RECENT_REPLIES = 20
GROUPS_PAGE = 100
#: The session formats an export offers, as the API names them.
EXPORT_FORMATS: tuple[str, ...] = tuple(fmt.value for fmt in SessionFormat)


def parse_id(raw: str) -> uuid.UUID:
    """An account id from a URL; anything else is an account that does not exist (the
    404 page, not a validation error: a mistyped link names no account)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        msg = _("No account with this id: check the link, or find the account in the list.")
        raise AccountNotFound(msg) from None


@dataclass(frozen=True, slots=True)
class AccountInfo:
    id: uuid.UUID
    label: str
    username: str | None
    tg_user_id: int | None
    dc_id: int | None
    desired: str
    restart_seq: int
    created_at: datetime
    state: str
    reason: str | None
    since: datetime | None
    holder: str | None
    last_error_code: str | None
    last_error_message: str | None
    last_error_at: datetime | None
    wait_until: datetime | None
    received: int
    sent: int
    suppressed: int
    reconnects: int
    #: The vault's summary of the session: never key material.
    session: vault_service.SecretSummary | None


@dataclass(frozen=True, slots=True)
class Timeline:
    account_id: uuid.UUID
    kind: str
    cursor: str | None
    next_cursor: str | None
    #: The API's own reading of each event (``GET /accounts/{id}/events``).
    events: list[AccountEventRead]
    kinds: dict[str, str] = field(default_factory=lambda: EVENT_KINDS)

    def url(self, **changes: str | None) -> str:
        """This timeline's address (with ``changes``), as links and the filter carry it."""
        values = {"kind": self.kind, "cursor": None} | changes
        query = urlencode({name: value for name, value in values.items() if value})
        return f"/accounts/{self.account_id}" + (f"?{query}" if query else "") + "#timeline"


@dataclass(frozen=True, slots=True)
class GroupRow:
    chat_id: int
    title: str | None
    enabled: bool
    playbook_id: uuid.UUID | None
    playbook_version: int | None
    disabled_reason: str | None
    disabled_at: datetime | None


@dataclass(frozen=True, slots=True)
class PlaybookChoice:
    id: uuid.UUID
    name: str
    latest_version: int


@dataclass(frozen=True, slots=True)
class ReplyRow:
    at: datetime
    text: str | None
    source: str | None
    chat_id: int | None
    chat_title: str | None
    rule: str | None
    truncated: bool


@dataclass(frozen=True, slots=True)
class AccountPage:
    account: AccountInfo
    timeline: Timeline
    groups: list[GroupRow]
    groups_next: str | None
    playbooks: list[PlaybookChoice]
    replies: list[ReplyRow]
    export_formats: tuple[str, ...] = EXPORT_FORMATS


async def account_label(session: AsyncSession, account_id: uuid.UUID) -> str:
    """The account's label (a form that confirms by the label compares with it)."""
    return (await account_service.get_account(session, account_id)).label


async def account_info(session: AsyncSession, account_id: uuid.UUID) -> AccountInfo:
    account = await account_service.get_account(session, account_id)
    status = (await account_service.statuses(session, [account.id])).get(account.id)
    secret = (await vault_service.summaries(session, [account.id])).get(account.id)
    holder = (await lease_service.holders(session, [account.id])).get(account.id)
    return AccountInfo(
        id=account.id,
        label=account.label,
        username=account.username,
        tg_user_id=account.tg_user_id,
        dc_id=account.dc_id,
        desired=str(account.desired_state),
        restart_seq=account.restart_seq,
        created_at=account.created_at,
        state=str(status.state) if status is not None else "stopped",
        reason=status.reason if status is not None else None,
        since=status.since if status is not None else None,
        holder=holder or (status.worker_id if status is not None else None),
        last_error_code=status.last_error_code if status is not None else None,
        last_error_message=status.last_error_message if status is not None else None,
        last_error_at=status.last_error_at if status is not None else None,
        wait_until=status.wait_until if status is not None else None,
        received=status.messages_received if status is not None else 0,
        sent=status.replies_sent if status is not None else 0,
        suppressed=status.replies_suppressed if status is not None else 0,
        reconnects=status.reconnects if status is not None else 0,
        session=secret,
    )


async def timeline(
    session: AsyncSession, account_id: uuid.UUID, *, kind: str, cursor: str | None
) -> Timeline:
    """One page of the timeline, newest first; ``kind`` ("" for every kind) keeps one."""
    found = await account_service.list_events(
        session, account_id, cursor=cursor, limit=TIMELINE_PAGE, kind=kind or None
    )
    return Timeline(
        account_id=account_id,
        kind=kind,
        cursor=cursor,
        next_cursor=found.next_cursor,
        events=[AccountEventRead.model_validate(event) for event in found.items],
    )


def _reply_row(event: AccountEvent) -> ReplyRow:
    details = event.details or {}
    chat_id = details.get("chat_id")
    title = details.get("chat_title")
    rule = details.get("rule")
    return ReplyRow(
        at=event.at,
        text=event.message,
        source=event.code,
        chat_id=chat_id if isinstance(chat_id, int) else None,
        chat_title=title if isinstance(title, str) else None,
        rule=rule if isinstance(rule, str) else None,
        truncated=bool(details.get("truncated")),
    )


async def playbook_choices(session: AsyncSession) -> list[PlaybookChoice]:
    """Every playbook by name (one page of the most the service gives)."""
    found = await playbook_service.list_playbooks(session, cursor=None, limit=MAX_LIMIT)
    return [
        PlaybookChoice(id=playbook.id, name=playbook.name, latest_version=playbook.latest_version)
        for playbook in found.items
    ]


async def account_page(
    session: AsyncSession,
    account_id: uuid.UUID,
    *,
    kind: str,
    cursor: str | None,
    groups_cursor: str | None,
) -> AccountPage:
    info = await account_info(session, account_id)
    groups = await account_groups.list_groups(
        session, account_id, cursor=groups_cursor, limit=GROUPS_PAGE
    )
    replies = await activity.recent_replies(session, account_id, limit=RECENT_REPLIES)
    return AccountPage(
        account=info,
        timeline=await timeline(session, account_id, kind=kind, cursor=cursor),
        groups=[
            GroupRow(
                chat_id=group.chat_id,
                title=group.title,
                enabled=group.enabled,
                playbook_id=group.playbook_id,
                playbook_version=group.playbook_version,
                disabled_reason=group.disabled_reason,
                disabled_at=group.disabled_at,
            )
            for group in groups.items
        ],
        groups_next=groups.next_cursor,
        playbooks=await playbook_choices(session),
        replies=[_reply_row(event) for event in replies.items],
    )
