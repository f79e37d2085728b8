"""Account test helpers: accounts through the real service, observed status rows as a worker
would write them, playbooks through the playbook service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import FACTORY_CONTEXT
from tgfleet.account import service as account_service
from tgfleet.kit.db import unit_of_work
from tgfleet.models import Account, AccountEvent, AccountStatus, AuditRecord
from tgfleet.playbook import service as playbook_service

PLAYBOOK_SOURCE = """\
rules:
  - name: greet
    when:
      keywords: [hello]
    reply:
      templates: ["hi there"]
"""


async def make_accounts(
    maker: async_sessionmaker[AsyncSession],
    labels: Sequence[str],
    *,
    usernames: Sequence[str | None] | None = None,
    phones: Sequence[str | None] | None = None,
) -> list[uuid.UUID]:
    """Accounts with exactly these labels (and optional usernames/phones), in order."""
    async with unit_of_work(maker) as session:
        accounts = await account_service.create_accounts(
            session,
            [account_service.NewAccount(label=label, tg_user_id=None, dc_id=2) for label in labels],
            exact_label=True,
        )
        for index, account in enumerate(accounts):
            if usernames is not None:
                account.username = usernames[index]
            if phones is not None:
                account.phone = phones[index]
        await session.flush()
        return [account.id for account in accounts]


async def observe(
    maker: async_sessionmaker[AsyncSession],
    account_id: uuid.UUID,
    state: str,
    **fields: Any,
) -> None:
    """Write the status row a worker would write for ``account_id``."""
    async with unit_of_work(maker) as session:
        row = await session.get(AccountStatus, account_id)
        if row is None:
            row = AccountStatus(account_id=account_id, state=state, **fields)
            session.add(row)
        else:
            row.state = state
            for name, value in fields.items():
                setattr(row, name, value)


async def account_row(maker: async_sessionmaker[AsyncSession], account_id: uuid.UUID) -> Account:
    async with unit_of_work(maker) as session:
        account = await session.get(Account, account_id)
        assert account is not None
        return account


async def events_of(
    maker: async_sessionmaker[AsyncSession], account_id: uuid.UUID
) -> list[AccountEvent]:
    async with unit_of_work(maker) as session:
        result = await session.execute(
            select(AccountEvent)
            .where(AccountEvent.account_id == account_id)
            .order_by(AccountEvent.id)
        )
        return list(result.scalars().all())


async def event_count(maker: async_sessionmaker[AsyncSession]) -> int:
    async with unit_of_work(maker) as session:
        return int((await session.execute(select(func.count(AccountEvent.id)))).scalar_one())


async def audits(maker: async_sessionmaker[AsyncSession], action: str) -> list[AuditRecord]:
    async with unit_of_work(maker) as session:
        result = await session.execute(
            select(AuditRecord).where(AuditRecord.action == action).order_by(AuditRecord.seq)
        )
        return list(result.scalars().all())


async def make_playbook(
    maker: async_sessionmaker[AsyncSession], name: str = "greeter"
) -> uuid.UUID:
    async with unit_of_work(maker) as session:
        playbook = await playbook_service.create(
            session, FACTORY_CONTEXT, name=name, source=PLAYBOOK_SOURCE
        )
        return playbook.id
