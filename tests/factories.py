"""Typed async factories for the tests, through the real services (or writing the rows a
worker would write): users (logged in through the API), accounts and the states a worker
reports for them, workers registered for leases, playbooks, Telethon sessions; and readers
for the rows they leave behind."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession, StringSession

from tgfleet.account import runtime as account_runtime
from tgfleet.account import service as account_service
from tgfleet.account.runtime import StateChange
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth import service as auth_service
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.lease import service as lease_service
from tgfleet.lease.service import Registration
from tgfleet.models import (
    Account,
    AccountEvent,
    AccountGroup,
    AccountState,
    AccountStatus,
    AuditRecord,
    DesiredState,
)
from tgfleet.playbook import service as playbook_service

FACTORY_CONTEXT = AuditContext(actor="cli:factory")
DEFAULT_PASSWORD = "correct horse battery staple"
PLAYBOOK_SOURCE = """\
rules:
  - name: greet
    when:
      keywords: [hello]
    reply:
      templates: ["hi there"]
"""


def help_playbook(
    reply: str = "Happy to help, {{ sender.first_name }}!",
    *,
    mention: str | None = None,
    account_hourly: int = 1000,
    group_hourly: int = 1000,
    responders: Literal["one", "all"] | None = None,
) -> str:
    """A playbook that answers "help" with ``reply`` and, given ``mention``, an @mention of
    the account with that; no pause between replies and hourly limits a test meets only where
    it sets them; ``responders`` written out when given (``one`` is the default)."""
    limits = (
        f"{{min_interval_seconds: 0, account_hourly: {account_hourly}, "
        f"group_hourly: {group_hourly}}}"
    )
    triggers = [("help", "{keywords: [help]}", reply)]
    if mention is not None:
        triggers.append(("mention", "{mention: true}", mention))
    lines = [f"defaults: {{responders: {responders}}}"] if responders else []
    lines.append("rules:")
    for name, when, template in triggers:
        lines += [
            f"  - name: {name}",
            f"    when: {when}",
            "    reply:",
            f"      templates: [{json.dumps(template)}]",
            f"    limits: {limits}",
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def create_user(
    sessionmaker: async_sessionmaker[AsyncSession],
    security: auth_service.Security,
    *,
    username: str,
    role: str,
    password: str = DEFAULT_PASSWORD,
) -> None:
    async with unit_of_work(sessionmaker) as session:
        await auth_service.create_user(
            session, security, FACTORY_CONTEXT, username=username, role=role, password=password
        )


async def login(client: httpx.AsyncClient, username: str, password: str) -> str:
    response = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def user_with_role(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: auth_service.Security,
    role: str,
    *,
    username: str | None = None,
    password: str = DEFAULT_PASSWORD,
) -> Credentials:
    """Create a user with ``role`` and return a logged-in credential for it."""
    name = username or f"{role}-user"
    await create_user(sessionmaker, security, username=name, role=role, password=password)
    return Credentials(name, password, await login(client, name, password))


def auth_key(seed: int) -> bytes:
    """A distinct, recognisable 256-byte auth key per seed (tests grep for these bytes)."""
    return hashlib.sha512(f"auth-key-{seed}".encode()).digest() * 4


def telethon_string(seed: int, *, dc_id: int = 2, address: str = "149.154.167.51") -> str:
    """A real Telethon StringSession, made by Telethon."""
    session = StringSession()
    session.set_dc(dc_id, address, 443)
    session.auth_key = AuthKey(data=auth_key(seed))
    return str(session.save())


def telethon_file(folder: Path, seed: int, *, name: str | None = None, dc_id: int = 2) -> Path:
    """A real Telethon SQLite .session file, written by Telethon's SQLiteSession."""
    path = folder / (name or f"acct{seed}.session")
    session = SQLiteSession(str(path))
    session.set_dc(dc_id, "149.154.167.51", 443)
    session.auth_key = AuthKey(data=auth_key(seed))
    session.save()
    session.close()
    return path


# ----------------------------------------------------------------------------- accounts


async def make_accounts(
    maker: async_sessionmaker[AsyncSession],
    labels: Sequence[str],
    *,
    running: bool | None = None,
    exact_label: bool = True,
    lease_rows: bool = False,
    usernames: Sequence[str | None] | None = None,
    phones: Sequence[str | None] | None = None,
) -> list[uuid.UUID]:
    """Accounts with these labels (and optional usernames/phones), in order, through the
    account service. ``running``: desired running (True) or stopped (False); None leaves the
    default. ``exact_label=False`` lets the service make a taken label unique (``-2``...).
    ``lease_rows``: their lease rows, as start commands create them (PostgreSQL only)."""
    async with unit_of_work(maker) as session:
        accounts = await account_service.create_accounts(
            session,
            [account_service.NewAccount(label=label, tg_user_id=None, dc_id=2) for label in labels],
            exact_label=exact_label,
        )
        for index, account in enumerate(accounts):
            if running is not None:
                account.desired_state = DesiredState.RUNNING if running else DesiredState.STOPPED
            if usernames is not None:
                account.username = usernames[index]
            if phones is not None:
                account.phone = phones[index]
        await session.flush()
        if lease_rows and lease_service.supports_leases(session):
            await lease_service.sweep(session)
        return [account.id for account in accounts]


async def make_fleet(
    maker: async_sessionmaker[AsyncSession],
    count: int,
    *,
    running: bool = True,
    exact_label: bool = True,
    lease_rows: bool = False,
) -> list[uuid.UUID]:
    """``count`` accounts ``acc000``, ``acc001``, ... desired running (or stopped); the rest
    as `make_accounts`."""
    return await make_accounts(
        maker,
        [f"acc{i:03d}" for i in range(count)],
        running=running,
        exact_label=exact_label,
        lease_rows=lease_rows,
    )


async def report_states(
    maker: async_sessionmaker[AsyncSession],
    ids: Sequence[uuid.UUID],
    state: str,
    *,
    previous: str = AccountState.ONLINE,
    reason: str | None = None,
    worker: str | None = None,
) -> None:
    """Record ``previous -> state`` for these accounts through ``account.runtime.apply``,
    as ``worker`` (or no worker) reports it."""
    async with unit_of_work(maker) as session:
        await account_runtime.apply(
            session,
            [
                StateChange(
                    account_id=account,
                    state=AccountState(state),
                    previous=AccountState(previous),
                    at=utcnow(),
                    worker_id=worker,
                    reason=reason,
                    source=worker,
                )
                for account in ids
            ],
        )


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
            row = AccountStatus(account_id=account_id, state=AccountState(state), **fields)
            session.add(row)
        else:
            row.state = AccountState(state)
            for name, value in fields.items():
                setattr(row, name, value)


async def join_groups(
    maker: async_sessionmaker[AsyncSession], account_id: uuid.UUID, chat_ids: Sequence[int]
) -> None:
    """Group rows (replies off) for ``account_id`` in these chats, as a worker finds them."""
    async with unit_of_work(maker) as session:
        session.add_all(
            AccountGroup(account_id=account_id, chat_id=chat_id, enabled=False)
            for chat_id in chat_ids
        )


async def register_worker(
    maker: async_sessionmaker[AsyncSession], name: str, *, ttl: float, capacity: int = 1000
) -> Registration:
    """Worker ``name`` registered for leases (host ``h``, pid 1)."""
    async with unit_of_work(maker) as session:
        return await lease_service.register(
            session, worker_id=name, host="h", pid=1, version="t", capacity=capacity, ttl=ttl
        )


async def make_playbook(
    maker: async_sessionmaker[AsyncSession], name: str = "greeter"
) -> uuid.UUID:
    async with unit_of_work(maker) as session:
        playbook = await playbook_service.create(
            session, FACTORY_CONTEXT, name=name, source=PLAYBOOK_SOURCE
        )
        return playbook.id


# ----------------------------------------------------------------------------- reading back


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
