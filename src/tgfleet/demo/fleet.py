"""``tgfleet run --demo``: a living fleet on this machine, against the built-in sandbox.

On first start a world is minted under ``<data dir>/demo`` (20 accounts, 5 groups, members
who chat and join), its sessions are imported through the vault, the example playbooks are
installed, replies are enabled in every group (support FAQ and community welcome in turn)
and every account is started. Later starts reuse the world and the accounts. Nothing here
reaches Telegram: the sessions point at the sandbox on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.audit.schemas import AuditContext
from tgfleet.demo.seed import SeededFleet, seed_fleet
from tgfleet.logging import get_logger
from tgfleet.sandbox.mint import mint
from tgfleet.sandbox.runner import Sandbox
from tgfleet.sandbox.world import TrafficSettings, World
from tgfleet.sandbox.world_file import load_world
from tgfleet.vault.service import Vault

log = get_logger(__name__)

DEMO_ACCOUNTS = 20
DEMO_GROUPS = 5
DEMO_MEMBERS = 8
EXAMPLES = ("support-faq", "community-welcome")
#: Members talk about what the example playbooks answer, a little faster than the default.
DEMO_TRAFFIC = TrafficSettings(
    seed=7,
    messages_per_minute=6.0,
    mention_ratio=0.08,
    reply_ratio=0.05,
    keyword_ratio=0.4,
    keywords=("price", "how much", "opening hours", "shipping", "rules", "thanks"),
    joins_per_hour=20.0,
)


def example_playbooks() -> dict[str, str]:
    """The example playbooks by name: packaged copies, or ``examples/`` of a checkout."""
    packaged = resources.files("tgfleet") / "examples"
    found: dict[str, str] = {}
    for name in EXAMPLES:
        candidate = packaged / f"{name}.yaml"
        if candidate.is_file():
            found[name] = candidate.read_text(encoding="utf-8")
            continue
        checkout = Path(__file__).resolve().parents[3] / "examples" / f"{name}.yaml"
        found[name] = checkout.read_text(encoding="utf-8")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Demo:
    sandbox: Sandbox
    world: World
    fleet: SeededFleet
    running: AsyncExitStack

    async def stop(self) -> None:
        await self.running.aclose()


async def prepare_world(folder: Path) -> World:
    """The demo world in ``folder``: minted once (on a free port), then reused."""
    world_file = folder / "world.yaml"
    if world_file.exists():
        world = await asyncio.to_thread(load_world, world_file)
    else:
        await asyncio.to_thread(folder.mkdir, mode=0o700, parents=True, exist_ok=True)
        world = await asyncio.to_thread(
            mint,
            folder,
            accounts=DEMO_ACCOUNTS,
            groups=DEMO_GROUPS,
            members=DEMO_MEMBERS,
            port=_free_port(),
        )
    return dataclasses.replace(world, traffic=DEMO_TRAFFIC)


async def start_demo(
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    context: AuditContext,
    folder: Path,
) -> Demo:
    """Serve the demo world and put its fleet under management (idempotent)."""
    world = await prepare_world(folder)
    running = AsyncExitStack()
    try:
        sandbox = await running.enter_async_context(Sandbox(world, port=world.port, traffic=True))
    except OSError as exc:
        msg = (
            f"the demo sandbox cannot listen on 127.0.0.1:{world.port} ({exc.strerror}); "
            f"stop what uses that port or delete {folder} to mint a new demo world"
        )
        raise RuntimeError(msg) from exc
    try:
        fleet = await seed_fleet(
            sessionmaker, vault, context, world, folder, playbooks=example_playbooks()
        )
    except BaseException:
        await running.aclose()
        raise
    log.info(
        "demo.ready",
        accounts=len(fleet.account_ids),
        groups=len(world.groups),
        sandbox_port=sandbox.port,
    )
    return Demo(sandbox=sandbox, world=world, fleet=fleet, running=running)
