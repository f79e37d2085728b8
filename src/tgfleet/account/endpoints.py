"""HTTP API for accounts (read side; import and session routes live in the vault)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from tgfleet.account import service as account_service
from tgfleet.account.schemas import AccountRead, SessionSummary
from tgfleet.auth.dependencies import Requires
from tgfleet.auth.permissions import Permission
from tgfleet.auth.schemas import Principal
from tgfleet.kit.http import DbSession
from tgfleet.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from tgfleet.models import Account, SessionSecret
from tgfleet.vault import service as vault_service

router = APIRouter(prefix="/api/v1/accounts", tags=["accounts"])

AccountReader = Annotated[Principal, Requires(Permission.ACCOUNT_READ)]


def account_read(account: Account, secret: SessionSecret | None) -> AccountRead:
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
        created_at=account.created_at,
        updated_at=account.updated_at,
        session=summary,
    )


@router.get("", response_model=Page[AccountRead])
async def list_accounts(
    _principal: AccountReader,
    session: DbSession,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    q: Annotated[str | None, Query(max_length=200, description="part of the label")] = None,
) -> Page[AccountRead]:
    """Accounts in label order, with their session's state (never key material)."""
    result = await account_service.list_accounts(session, cursor=cursor, limit=limit, q=q)
    secrets = await vault_service.summaries(session, [a.id for a in result.items])
    return Page[AccountRead](
        items=[account_read(a, secrets.get(a.id)) for a in result.items],
        next_cursor=result.next_cursor,
    )


@router.get("/{account_id}", response_model=AccountRead)
async def get_account(
    account_id: uuid.UUID, _principal: AccountReader, session: DbSession
) -> AccountRead:
    """One account."""
    account = await account_service.get_account(session, account_id)
    secrets = await vault_service.summaries(session, [account.id])
    return account_read(account, secrets.get(account.id))
