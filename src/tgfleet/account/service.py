"""Account services. Accounts are created by the vault when a session is imported."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

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


async def list_accounts(
    session: AsyncSession, *, cursor: str | None, limit: int = DEFAULT_LIMIT, q: str | None = None
) -> Slice[Account]:
    key = decode_cursor(cursor)
    after = str(key["label"]) if key and "label" in key else None
    rows = await AccountRepository(session).page(after=after, limit=limit, q=q)
    return slice_rows(rows, limit, lambda account: {"label": account.label})
