"""Queries of the worker's side of the account domain (see ``tgfleet.account.runtime``)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from sqlalchemy import func, select, update

from tgfleet.kit.repository import RepositoryBase
from tgfleet.models import Account, AccountEvent, AccountGroup, AccountLease, AccountStatus


class StatusRepository(RepositoryBase[AccountStatus]):
    model = AccountStatus

    async def desired(
        self, only: Collection[uuid.UUID] | None = None
    ) -> list[tuple[Account, AccountStatus | None]]:
        statement = select(Account, AccountStatus).outerjoin(
            AccountStatus, AccountStatus.account_id == Account.id
        )
        if only is not None:
            statement = statement.where(Account.id.in_(list(only)))
        result = await self.session.execute(statement)
        return [(account, status) for account, status in result.all()]

    async def for_accounts(
        self, account_ids: Collection[uuid.UUID], *, lock: bool = False
    ) -> list[AccountStatus]:
        """The status rows of these accounts; ``lock`` holds them until the transaction ends
        (PostgreSQL ``FOR UPDATE``, in id order so concurrent workers cannot deadlock), so a
        check made on them holds when the write commits."""
        if not account_ids:
            return []
        statement = select(AccountStatus).where(AccountStatus.account_id.in_(list(account_ids)))
        if lock:
            statement = statement.order_by(AccountStatus.account_id).with_for_update()
        return await self.all(statement)

    async def live_of_worker(
        self, worker_id: str, live_states: Collection[str]
    ) -> list[AccountStatus]:
        return await self.all(
            select(AccountStatus).where(
                AccountStatus.worker_id == worker_id, AccountStatus.state.in_(list(live_states))
            )
        )

    async def leased_by(self, worker_id: str, account_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these accounts' leases ``worker_id`` holds (PostgreSQL leases)."""
        if not account_ids:
            return set()
        result = await self.session.execute(
            select(AccountLease.account_id).where(
                AccountLease.worker_id == worker_id,
                AccountLease.account_id.in_(list(account_ids)),
            )
        )
        return set(result.scalars().all())

    async def existing_ids(self, account_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
        if not account_ids:
            return set()
        result = await self.session.execute(
            select(Account.id).where(Account.id.in_(list(account_ids)))
        )
        return set(result.scalars().all())

    async def set_identities(self, identities: Mapping[uuid.UUID, tuple[int, str | None]]) -> None:
        for account_id, (tg_user_id, username) in identities.items():
            await self.session.execute(
                update(Account)
                .where(Account.id == account_id)
                .values(tg_user_id=tg_user_id, username=username)
                .execution_options(synchronize_session=False)
            )

    async def user_ids(self) -> set[int]:
        result = await self.session.execute(
            select(Account.tg_user_id).where(Account.tg_user_id.is_not(None))
        )
        return {int(user_id) for user_id in result.scalars().all() if user_id is not None}

    async def user_ids_fingerprint(self) -> tuple[object, ...]:
        result = await self.session.execute(
            select(func.count(Account.tg_user_id), func.sum(Account.tg_user_id), func.count())
        )
        return tuple(result.one())

    async def add_events(self, events: Sequence[AccountEvent]) -> None:
        self.session.add_all(list(events))

    async def fingerprint(self, only: Collection[uuid.UUID] | None = None) -> tuple[object, ...]:
        """What changes whenever an account is added, removed or commanded (cheap)."""
        statement = select(
            func.count(), func.max(Account.updated_at), func.sum(Account.restart_seq)
        )
        if only is not None:
            statement = statement.where(Account.id.in_(list(only)))
        result = await self.session.execute(statement)
        return tuple(result.one())


class GroupRepository(RepositoryBase[AccountGroup]):
    model = AccountGroup

    async def fingerprint(self) -> tuple[object, ...]:
        """What changes whenever a group setting is added, removed or edited (cheap)."""
        result = await self.session.execute(select(func.count(), func.max(AccountGroup.updated_at)))
        return tuple(result.one())

    async def for_accounts(self, account_ids: Collection[uuid.UUID]) -> list[AccountGroup]:
        if not account_ids:
            return []
        return await self.all(
            select(AccountGroup).where(AccountGroup.account_id.in_(list(account_ids)))
        )

    async def of_account(self, account_id: uuid.UUID) -> list[AccountGroup]:
        return await self.all(select(AccountGroup).where(AccountGroup.account_id == account_id))

    async def disable(
        self, account_id: uuid.UUID, chat_id: int, *, reason: str, at: datetime
    ) -> bool:
        result = await self.session.execute(
            update(AccountGroup)
            .where(AccountGroup.account_id == account_id, AccountGroup.chat_id == chat_id)
            .values(enabled=False, disabled_reason=reason, disabled_at=at, updated_at=at)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))
