"""A living fleet for runtime tests: a real sandbox, sessions imported through the vault, a
playbook, groups enabled, and a real ``Supervisor`` running Telethon clients."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import make_settings
from tests.factories import help_playbook
from tgfleet.app import create_app
from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings
from tgfleet.demo.seed import SeededFleet, seed_fleet
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AccountEvent, AccountStatus
from tgfleet.sandbox.client import SandboxControl
from tgfleet.sandbox.mint import mint
from tgfleet.sandbox.runner import Sandbox
from tgfleet.sandbox.world import World, WorldGroup, WorldMember
from tgfleet.worker.supervisor import Supervisor

CONTEXT = AuditContext(actor="test")

HELP_PLAYBOOK = help_playbook(mention="You called, {{ sender.first_name }}?")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fast_settings(db_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "worker_reconcile_seconds": 0.2,
        "worker_status_flush_seconds": 0.1,
        "worker_connect_timeout_seconds": 5.0,
        "worker_request_timeout_seconds": 5.0,
        "worker_handler_timeout_seconds": 10.0,
    }
    values.update(overrides)
    return make_settings(db_url, data_dir, **values)


@dataclass
class Fleet:
    world: World
    sandbox: Sandbox
    control: SandboxControl
    sessionmaker: async_sessionmaker[AsyncSession]
    seeded: SeededFleet
    app: FastAPI
    supervisor: Supervisor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def account_id(self, username: str) -> uuid.UUID:
        return self.seeded.account_ids[username]

    def chat_id(self, index: int) -> int:
        return self.seeded.chat_ids[self.world.groups[index].id]

    def member_of(self, group: WorldGroup) -> WorldMember:
        """The first of a group's members (people, not fleet accounts)."""
        return next(m for m in self.world.members if m.id in group.members)

    async def flood_wait_next_send(self, username: str, seconds: int, text: str) -> None:
        """Make ``username``'s next send meet a flood wait of ``seconds``, have a member post
        ``text`` in the first group, and wait until the account is in ``flood_wait``."""
        group = self.world.groups[0]
        await self.control.add_fault(
            "flood_wait", account=username, method="messages.sendMessage", seconds=seconds, count=1
        )
        await self.control.post_message(group.id, self.member_of(group).id, text)
        await self.wait_states({username: "flood_wait"}, within=5)

    async def status(self, username: str) -> AccountStatus | None:
        async with unit_of_work(self.sessionmaker, read_only=True) as session:
            return await session.get(AccountStatus, self.account_id(username))

    async def states(self) -> dict[str, str]:
        async with unit_of_work(self.sessionmaker, read_only=True) as session:
            rows = (await session.execute(select(AccountStatus))).scalars().all()
        by_id = {v: k for k, v in self.seeded.account_ids.items()}
        found = {by_id[row.account_id]: row.state for row in rows if row.account_id in by_id}
        return {name: found.get(name, "stopped") for name in self.seeded.account_ids}

    async def events(self, username: str, kind: str | None = None) -> list[AccountEvent]:
        async with unit_of_work(self.sessionmaker, read_only=True) as session:
            statement = (
                select(AccountEvent)
                .where(AccountEvent.account_id == self.account_id(username))
                .order_by(AccountEvent.id)
            )
            if kind is not None:
                statement = statement.where(AccountEvent.kind == kind)
            return list((await session.execute(statement)).scalars().all())

    async def wait_states(self, wanted: dict[str, str] | str, within: float = 15.0) -> float:
        """Wait until accounts are in the wanted states; returns the seconds it took."""
        started = time.monotonic()
        target = (
            dict.fromkeys(self.seeded.account_ids, wanted) if isinstance(wanted, str) else wanted
        )
        async with asyncio.timeout(within):
            while True:
                states = await self.states()
                if all(states[name] == state for name, state in target.items()):
                    return time.monotonic() - started
                await asyncio.sleep(0.05)

    async def sent(self, group_index: int | None = None) -> list[dict[str, Any]]:
        """Every message the fleet sent (with ``account``), optionally in one group."""
        stats = await self.control.stats()
        messages = [
            {**message, "account": name}
            for name, sent in stats["messages_sent"].items()
            for message in sent
        ]
        if group_index is not None:
            group_id = self.world.groups[group_index].id
            messages = [m for m in messages if m["group_id"] == group_id]
        return sorted(messages, key=lambda m: m["at"])


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], within: float = 10.0, step: float = 0.05
) -> float:
    started = time.monotonic()
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - polls the database and the sandbox
            await asyncio.sleep(step)
    return time.monotonic() - started


FleetFactory = Callable[..., Awaitable[Fleet]]


@pytest.fixture
async def make_fleet(db_url: str, tmp_path: Path) -> AsyncIterator[FleetFactory]:
    """Build a fleet: ``await make_fleet(accounts=3, groups=2, playbook=..., enable=[0])``."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def build(
        *,
        accounts: int = 3,
        groups: int = 2,
        members: int = 3,
        playbook: str = HELP_PLAYBOOK,
        enable: list[int] | None = None,
        start: bool = True,
        run_worker: bool = True,
        **overrides: Any,
    ) -> Fleet:
        port = free_port()
        world_dir = tmp_path / "world"
        world = await asyncio.to_thread(
            mint, world_dir, accounts=accounts, groups=groups, members=members, port=port
        )
        running = AsyncExitStack()
        sandbox = await running.enter_async_context(Sandbox(world, port=port, traffic=False))
        cleanups.append(running.aclose)
        control = SandboxControl(f"http://127.0.0.1:{sandbox.control_port}")
        cleanups.append(control.aclose)
        settings = fast_settings(db_url, tmp_path / "data", **overrides)
        app = create_app(settings)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()

        async def close_app() -> None:
            await lifespan.__aexit__(None, None, None)

        cleanups.append(close_app)
        sessionmaker = app.state.sessionmaker
        enabled = None if enable is None else [world.groups[i].id for i in enable]
        seeded = await seed_fleet(
            sessionmaker,
            app.state.vault,
            CONTEXT,
            world,
            world_dir,
            playbooks={"test": playbook},
            groups=enabled,
            start=start,
        )
        fleet = Fleet(world, sandbox, control, sessionmaker, seeded, app)
        fleet.extra["world_dir"] = world_dir
        if run_worker:
            supervisor = Supervisor(settings, sessionmaker, app.state.vault)
            await supervisor.start()
            fleet.supervisor = supervisor
            cleanups.append(supervisor.stop)
        return fleet

    yield build
    for cleanup in reversed(cleanups):
        async with asyncio.timeout(20):
            await cleanup()
