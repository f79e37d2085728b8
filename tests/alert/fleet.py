"""Accounts in given states, written through the services, for the alerting tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.account import runtime as account_runtime
from tgfleet.account import service as account_service
from tgfleet.account.runtime import StateChange
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work


async def make_accounts(
    maker: async_sessionmaker[AsyncSession], count: int, *, running: bool = True
) -> list[uuid.UUID]:
    """``acc000``, ``acc001``, ... desired running (or stopped)."""
    async with unit_of_work(maker) as session:
        created = await account_service.create_accounts(
            session,
            [
                account_service.NewAccount(label=f"acc{i:03d}", tg_user_id=None, dc_id=2)
                for i in range(count)
            ],
        )
        for account in created:
            account.desired_state = "running" if running else "stopped"
    return [a.id for a in created]


async def set_state(
    maker: async_sessionmaker[AsyncSession], ids: Sequence[uuid.UUID], state: str, reason: str
) -> None:
    """Record ``state`` for these accounts as a worker would."""
    async with unit_of_work(maker) as session:
        await account_runtime.apply(
            session,
            [
                StateChange(
                    account_id=a,
                    state=state,
                    previous="online",
                    at=utcnow(),
                    worker_id=None,
                    reason=reason,
                )
                for a in ids
            ],
        )
