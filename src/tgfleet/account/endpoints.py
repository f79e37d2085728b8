"""HTTP API for accounts: listing and detail with observed status, operator commands, the
timeline, and per-group reply settings (import and session routes live in the vault)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from tgfleet.account import commands as account_commands
from tgfleet.account import groups as account_groups
from tgfleet.account import service as account_service
from tgfleet.account.schemas import (
    CHAT_ID_MAX,
    CHAT_ID_MIN,
    AccountBulkCommand,
    AccountEventRead,
    AccountGroupRead,
    AccountGroupUpdate,
    AccountMatchRead,
    AccountPage,
    AccountQuery,
    AccountRead,
    AccountStatusRead,
    BulkResultRead,
    ControlAction,
    GroupBulkResultRead,
    GroupBulkUpdate,
    GroupPlaybookRead,
    GroupQuery,
    GroupRead,
    SessionSummary,
)
from tgfleet.auth.dependencies import Requires, audit_context
from tgfleet.auth.permissions import Permission
from tgfleet.auth.schemas import Principal
from tgfleet.kit.http import DbSession, Meta
from tgfleet.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, to_page
from tgfleet.lease import service as lease_service
from tgfleet.models import Account, AccountState, AccountStatus
from tgfleet.vault import service as vault_service

router = APIRouter(prefix="/api/v1/accounts", tags=["accounts"])
#: The fleet-wide view of the groups (chats) the accounts are in.
groups_router = APIRouter(prefix="/api/v1/groups", tags=["groups"])

AccountReader = Annotated[Principal, Requires(Permission.ACCOUNT_READ)]
AccountController = Annotated[Principal, Requires(Permission.ACCOUNT_CONTROL)]
AccountWriter = Annotated[Principal, Requires(Permission.ACCOUNT_WRITE)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
ChatIdPath = Annotated[
    int, Path(ge=CHAT_ID_MIN, le=CHAT_ID_MAX, description="Telethon's marked chat id")
]

NO_STATUS = AccountStatusRead(state=AccountState.STOPPED.value)


def account_read(
    account: Account,
    account_status: AccountStatus | None,
    secret: vault_service.SecretSummary | None,
    holder: str | None = None,
) -> AccountRead:
    summary = (
        SessionSummary(
            state=secret.state,
            source_format=secret.source_format,
            version=secret.version,
            kek_id=secret.kek_id,
            updated_at=secret.updated_at,
        )
        if secret is not None
        else None
    )
    return AccountRead(
        id=account.id,
        label=account.label,
        tg_user_id=account.tg_user_id,
        username=account.username,
        dc_id=account.dc_id,
        desired_state=account.desired_state,
        restart_seq=account.restart_seq,
        created_at=account.created_at,
        updated_at=account.updated_at,
        status=(
            AccountStatusRead.model_validate(account_status)
            if account_status is not None
            else NO_STATUS
        ),
        holder=holder,
        session=summary,
    )


def _matches(sample: list[tuple[uuid.UUID, str, str]]) -> list[AccountMatchRead]:
    return [AccountMatchRead(id=i, label=label, state=state) for i, label, state in sample]


async def _one(session: DbSession, account: Account) -> AccountRead:
    statuses = await account_service.statuses(session, [account.id])
    secrets = await vault_service.summaries(session, [account.id])
    holders = await lease_service.holders(session, [account.id])
    return account_read(
        account, statuses.get(account.id), secrets.get(account.id), holders.get(account.id)
    )


@router.get("", response_model=AccountPage)
async def list_accounts(
    _principal: AccountReader,
    session: DbSession,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    *,
    query: Annotated[AccountQuery, Query()],
) -> AccountPage:
    """Accounts with their observed status and session state (never key material), in
    ``sort``'s order with the label breaking ties. ``label`` and ``q`` are
    case-insensitive; ``id_prefix`` names accounts by the start of their id (as a CLI
    takes a short id); every filter given must hold, any value of a repeated one (at most
    50 each). An account no worker has run counts as stopped, since its creation, with no
    worker. ``counts`` gives the number of accounts per state over the other filters,
    ignoring ``state``, so a console can show one tab per state. A ``cursor`` continues
    only the sort it was made for."""
    wanted = query.to_filter()
    result = await account_service.list_accounts(
        session,
        cursor=cursor,
        limit=limit,
        q=wanted.q,
        label=wanted.label,
        states=wanted.states,
        workers=wanted.workers,
        groups=wanted.groups,
        sort=query.sort,
        with_counts=True,
        id_prefix=wanted.id_prefix,
    )
    ids = [a.id for a in result.items]
    secrets = await vault_service.summaries(session, ids)
    holders = await lease_service.holders(session, ids)
    return AccountPage(
        items=[
            account_read(a, result.statuses.get(a.id), secrets.get(a.id), holders.get(a.id))
            for a in result.items
        ],
        next_cursor=result.next_cursor,
        counts=result.counts or {},
    )


@router.post("/bulk", response_model=BulkResultRead)
async def bulk_control(
    body: AccountBulkCommand, principal: AccountController, session: DbSession, meta: Meta
) -> BulkResultRead:
    """Start, stop or restart many accounts: ``ids`` (at most 10,000, all must exist) or a
    ``filter`` on state, label prefix, text, worker and group. An empty filter is refused;
    give ``{"filter": {"all": true}}`` to mean every account. ``matched`` counts the
    accounts selected, ``changed`` those whose desired state or restart_seq moved.
    ``dry_run`` answers ``matched`` and a ``sample`` of the first accounts by label, and
    changes nothing: no desired state, no timeline event, no audit record."""
    wanted = body.filter.to_filter() if body.filter is not None else None
    if body.dry_run:
        preview = await account_service.preview_selection(session, ids=body.ids, wanted=wanted)
        return BulkResultRead(
            action=body.action,
            matched=preview.count,
            changed=0,
            dry_run=True,
            sample=_matches(preview.sample),
        )
    result = await account_commands.bulk_control(
        session,
        audit_context(principal, meta),
        ids=body.ids,
        filter=wanted,
        action=body.action,
    )
    return BulkResultRead(action=result.action, matched=result.matched, changed=result.changed)


@router.post("/groups/bulk", response_model=GroupBulkResultRead)
async def bulk_set_groups(
    body: GroupBulkUpdate, principal: AccountWriter, session: DbSession, meta: Meta
) -> GroupBulkResultRead:
    """Switch replies on or off in many groups of many accounts at once.

    Accounts by ``ids`` or ``filter`` (as for ``/accounts/bulk``); groups by ``chat_ids`` or
    ``all_groups: true``. ``enabled`` is written to every selected group; ``playbook_id``
    (and an optional pinned ``playbook_version``) replaces their playbook when given and is
    kept when null: disabling keeps it, and an enable without ``playbook_id`` re-enables each
    group with the playbook it had (422 when a selected or created group has none). Only
    existing group rows are written unless ``create: true`` (with ``chat_ids``) adds the
    missing ones. ``dry_run`` checks and counts the same, names the
    first accounts in ``sample`` and changes nothing (no row, no event, no audit record)."""
    result = await account_groups.bulk_set_groups(
        session,
        audit_context(principal, meta),
        ids=body.ids,
        filter=body.filter.to_filter() if body.filter is not None else None,
        chat_ids=body.chat_ids,
        all_groups=body.all_groups,
        enabled=body.enabled,
        playbook_id=body.playbook_id,
        playbook_version=body.playbook_version,
        create=body.create,
        dry_run=body.dry_run,
    )
    return GroupBulkResultRead(
        matched=result.matched,
        groups=result.groups,
        created=result.created,
        dry_run=body.dry_run,
        sample=_matches(result.sample) if result.sample is not None else None,
    )


@router.get("/{account_id}", response_model=AccountRead)
async def get_account(
    account_id: uuid.UUID, _principal: AccountReader, session: DbSession
) -> AccountRead:
    """One account, with its observed status and session state."""
    return await _one(session, await account_service.get_account(session, account_id))


async def _control(
    session: DbSession,
    principal: Principal,
    meta: Meta,
    account_id: uuid.UUID,
    action: ControlAction,
) -> AccountRead:
    account = await account_commands.control(
        session, audit_context(principal, meta), account_id, action
    )
    return await _one(session, account)


@router.post("/{account_id}/start", response_model=AccountRead)
async def start_account(
    account_id: uuid.UUID, principal: AccountController, session: DbSession, meta: Meta
) -> AccountRead:
    """Ask the worker to run the account. Out of ``quarantined`` or ``error`` this also
    raises ``restart_seq``: an operator's explicit start lifts a quarantine."""
    return await _control(session, principal, meta, account_id, ControlAction.START)


@router.post("/{account_id}/stop", response_model=AccountRead)
async def stop_account(
    account_id: uuid.UUID, principal: AccountController, session: DbSession, meta: Meta
) -> AccountRead:
    """Ask the worker to stop the account."""
    return await _control(session, principal, meta, account_id, ControlAction.STOP)


@router.post("/{account_id}/restart", response_model=AccountRead)
async def restart_account(
    account_id: uuid.UUID, principal: AccountController, session: DbSession, meta: Meta
) -> AccountRead:
    """Ask the worker to (re)start the account's client, whatever its state."""
    return await _control(session, principal, meta, account_id, ControlAction.RESTART)


@router.get("/{account_id}/events", response_model=Page[AccountEventRead])
async def list_events(
    account_id: uuid.UUID,
    _principal: AccountReader,
    session: DbSession,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    kind: Annotated[
        str | None,
        Query(max_length=32, description="only this kind (state, command, group...)"),
    ] = None,
) -> Page[AccountEventRead]:
    """The account's timeline, newest first: state changes, errors, flood waits, groups
    disabled, operator commands."""
    result = await account_service.list_events(
        session, account_id, cursor=cursor, limit=limit, kind=kind or None
    )
    return to_page(result, AccountEventRead)


@router.get("/{account_id}/groups", response_model=Page[AccountGroupRead])
async def list_groups(
    account_id: uuid.UUID,
    _principal: AccountReader,
    session: DbSession,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[AccountGroupRead]:
    """The account's groups (found by the worker or added by an operator) and whether it
    replies in each, with which playbook."""
    result = await account_groups.list_groups(session, account_id, cursor=cursor, limit=limit)
    return to_page(result, AccountGroupRead)


@router.put("/{account_id}/groups/{chat_id}", response_model=AccountGroupRead)
async def set_group(
    account_id: uuid.UUID,
    chat_id: ChatIdPath,
    body: AccountGroupUpdate,
    principal: AccountWriter,
    session: DbSession,
    meta: Meta,
) -> AccountGroupRead:
    """Create or update the account's settings for one group. Enabling replies needs a
    playbook; ``playbook_version`` pins a version (null follows the latest); ``title`` null
    keeps the current title."""
    group = await account_groups.set_group(
        session,
        audit_context(principal, meta),
        account_id,
        chat_id,
        enabled=body.enabled,
        playbook_id=body.playbook_id,
        playbook_version=body.playbook_version,
        title=body.title,
    )
    return AccountGroupRead.model_validate(group)


@router.delete("/{account_id}/groups/{chat_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_group(
    account_id: uuid.UUID,
    chat_id: ChatIdPath,
    principal: AccountWriter,
    session: DbSession,
    meta: Meta,
) -> Response:
    """Forget the account's settings for one group."""
    await account_groups.delete_group(session, audit_context(principal, meta), account_id, chat_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@groups_router.get("", response_model=Page[GroupRead])
async def list_fleet_groups(
    _principal: AccountReader,
    session: DbSession,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
    *,
    query: Annotated[GroupQuery, Query()],
) -> Page[GroupRead]:
    """Every group (chat) the fleet's accounts are in, by chat id: its title, how many
    accounts are in it, how many of them reply there, and the playbooks they are set to.
    ``q`` (a part of the title), ``enabled`` and ``label`` (an account label prefix) keep
    the settings that match; a group is listed when one does, counted over those only.
    Each account's own settings are at ``/accounts/{id}/groups``."""
    result = await account_groups.chat_summaries(
        session,
        title=query.q or None,
        enabled=query.enabled,
        label=query.label or None,
        cursor=cursor,
        limit=limit,
    )
    return Page[GroupRead](
        items=[
            GroupRead(
                chat_id=chat.chat_id,
                title=chat.title,
                accounts=chat.accounts,
                enabled=chat.enabled,
                playbooks=[
                    GroupPlaybookRead(id=p.id, name=p.name, accounts=p.accounts)
                    for p in chat.playbooks
                ],
            )
            for chat in result.items
        ],
        next_cursor=result.next_cursor,
    )
