"""Operator commands on accounts: start, stop or restart one account or many (by ids or by
a filter) by moving the desired state in ``account``; the worker reconciles towards it.
Every command appends to the timeline and to the audit log in the caller's unit of work,
and wakes the workers on commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account.exceptions import UnknownCommand
from tgfleet.account.repository import AccountEventRepository, AccountRepository
from tgfleet.account.schemas import AccountFilter, ControlAction
from tgfleet.account.service import choice, get_account, select_accounts, timeline_entry
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.lease import notify
from tgfleet.lease import service as lease_service
from tgfleet.models import Account, DesiredState


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
        "desired_state": account.desired_state.value,
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
    if account.desired_state is DesiredState.RUNNING:
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
    account_ids, selection = await select_accounts(session, ids=ids, wanted=filter)
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
    return choice(ControlAction, action, what="command", error=UnknownCommand)


def _command_event(
    account_id: uuid.UUID, action: ControlAction, context: AuditContext, details: dict[str, Any]
) -> dict[str, Any]:
    message = f"{action.value} requested by {context.actor}"
    return timeline_entry(account_id, "command", action.value, message, details)
