"""Account services. Accounts are created by the vault when a session is imported."""

from __future__ import annotations

import re
import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.account.exceptions import AccountLabelTaken, AccountNotFound
from tgfleet.account.repository import AccountRepository
from tgfleet.kit.pagination import DEFAULT_LIMIT, Slice, decode_cursor, slice_rows
from tgfleet.models import Account

LABEL_MAX = 200
_UNSAFE_LABEL = re.compile(r"[\x00-\x1f\x7f]")


def clean_label(raw: str) -> str:
    """A printable label of at most 200 characters (control characters become '_')."""
    label = _UNSAFE_LABEL.sub("_", raw).strip()[:LABEL_MAX]
    return label or "account"


async def free_label(session: AsyncSession, wanted: str) -> str:
    """``wanted``, or ``wanted-2``, ``wanted-3``... whichever is free."""
    stem = clean_label(wanted)[: LABEL_MAX - 8]
    taken = await AccountRepository(session).labels_like(stem)
    if stem not in taken:
        return stem
    number = 2
    while f"{stem}-{number}" in taken:
        number += 1
    return f"{stem}-{number}"


async def create_account(
    session: AsyncSession,
    *,
    label: str,
    tg_user_id: int | None,
    dc_id: int | None,
    exact_label: bool,
) -> Account:
    """Create an account. With ``exact_label`` a taken label is a 409; otherwise a free
    variant of it is chosen."""
    repository = AccountRepository(session)
    chosen = clean_label(label) if exact_label else await free_label(session, label)
    if exact_label and await repository.by_label(chosen) is not None:
        raise AccountLabelTaken(f"an account labelled {chosen!r} already exists")
    account = Account(label=chosen, tg_user_id=tg_user_id, dc_id=dc_id)
    try:
        async with session.begin_nested():
            await repository.add(account)
    except IntegrityError as exc:
        raise AccountLabelTaken(f"an account labelled {chosen!r} already exists") from exc
    return account


async def get_account(session: AsyncSession, account_id: uuid.UUID) -> Account:
    account = await AccountRepository(session).get(account_id)
    if account is None:
        raise AccountNotFound(f"no account with id {account_id}")
    return account


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


async def list_accounts(
    session: AsyncSession, *, cursor: str | None, limit: int = DEFAULT_LIMIT, q: str | None = None
) -> Slice[Account]:
    key = decode_cursor(cursor)
    after = str(key["label"]) if key and "label" in key else None
    rows = await AccountRepository(session).page(after=after, limit=limit, q=q)
    return slice_rows(rows, limit, lambda account: {"label": account.label})
