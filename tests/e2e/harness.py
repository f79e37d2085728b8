"""A multi-process fleet for end-to-end tests: a sandbox subprocess, ``tgfleet worker``
subprocesses on PostgreSQL, and what a test observes of them from outside.

The processes are ``tests/harness.py``'s `Proc`. `Cluster` is one fleet: the sandbox
(``tgfleet sandbox run --no-traffic``) serving a freshly minted `World`, the fleet seeded
into the per-test database through the services (vault import, playbooks, groups enabled,
every account started), and the workers a test starts by name. `Cluster.snapshot` looks at
both sides: valid lease holders (``account_lease`` joined with ``worker``, same epoch, not
expired), what ``account_status`` says runs online where, and the sandbox's ``/stats``
(live ``connections`` per account and ``duplicate_use``).

The ``make_cluster`` fixture (a `ClusterFactory`, ``tests/e2e/conftest.py``) builds clusters
and kills every process in its teardown; a module using it parametrizes ``backend`` to
``postgres``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.harness import Proc
from tgfleet.audit.schemas import AuditContext
from tgfleet.sandbox.client import SandboxControl
from tgfleet.sandbox.world import World

# These helpers poll other processes (PostgreSQL rows, the sandbox): nothing notifies them.

CONTEXT = AuditContext(actor="test:e2e")
PG_PORT = 5432
# A playbook that never answers: for tests about who runs a session, not replies.
SILENT_PLAYBOOK = """
rules:
  - name: never
    when: {keywords: [zz-never-matches-zz]}
    reply:
      templates: ["-"]
"""


@dataclass(frozen=True)
class Snapshot:
    """One look at the fleet from outside: the database and the sandbox."""

    holder: dict[uuid.UUID, str | None]  # account -> worker validly holding its lease
    online_on: dict[uuid.UUID, str | None]  # account -> worker its status says runs it online
    connections: dict[uuid.UUID, int]  # account -> live sandbox connections
    duplicate_use: dict[str, int]  # username -> the sandbox's counter (non-zero only)
    acquired_at: dict[uuid.UUID, dt.datetime | None]  # account -> its lease's last claim

    def held(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for worker in self.holder.values():
            if worker is not None:
                counts[worker] = counts.get(worker, 0) + 1
        return counts

    def served(self, account: uuid.UUID, *, not_by: str | None = None) -> bool:
        """Validly held by a worker, online there by its status, with one live connection."""
        worker = self.holder.get(account)
        return (
            worker is not None
            and worker != not_by
            and self.online_on.get(account) == worker
            and self.connections.get(account, 0) == 1
        )

    def all_served(self) -> bool:
        return all(self.served(account) for account in self.holder)

    def unassigned(self) -> list[uuid.UUID]:
        return [account for account, worker in self.holder.items() if worker is None]

    def fair(self, names: Sequence[str]) -> bool:
        """Every account served and every worker in ``names`` holding an even share (±5 %)."""
        share = len(self.holder) / len(names)
        held = self.held()
        return self.all_served() and all(
            abs(held.get(name, 0) - share) <= max(1.0, share * 0.05) for name in names
        )


FLEET_STATE = text(
    """
    SELECT a.id,
           CASE WHEN w.id IS NOT NULL THEN l.worker_id END AS holder,
           CASE WHEN s.state = 'online' THEN s.worker_id END AS online_on,
           l.acquired_at
    FROM account a
    LEFT JOIN account_lease l ON l.account_id = a.id
    LEFT JOIN worker w ON w.id = l.worker_id AND w.epoch = l.epoch AND w.expires_at > now()
    LEFT JOIN account_status s ON s.account_id = a.id
    WHERE a.desired_state = 'running'
    """
)


STATES = text(
    """
    SELECT s.state, s.worker_id, l.worker_id, s.reason, count(*)
    FROM account_status s JOIN account_lease l ON l.account_id = s.account_id
    GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC
    """
)


@dataclass
class Cluster:
    """One fleet: the sandbox process, the seeded database, and the workers started so far.

    ``world`` is the minted world (group, member and account ids as the sandbox knows
    them; ``world_dir`` holds its ``world.yaml`` and session files). ``account_ids``,
    ``playbook_ids`` and ``chat_ids`` are what seeding answered (``SeededFleet``): world
    username -> account id, playbook name -> id, world group id -> Telethon's marked chat
    id. Post as a simulated member with ``cluster.control.post_message(group, sender,
    text)``; ``/stats`` (``cluster.control.stats()``) shows what the fleet sent.
    """

    tmp: Path
    engine: AsyncEngine
    control: SandboxControl
    sandbox: Proc
    worker_env: dict[str, str]
    world: World
    world_dir: Path
    account_ids: dict[str, uuid.UUID]  # username -> account id
    playbook_ids: dict[str, uuid.UUID] = field(default_factory=dict)  # name -> playbook id
    chat_ids: dict[int, int] = field(default_factory=dict)  # world group id -> marked chat id
    workers: dict[str, Proc] = field(default_factory=dict)

    @property
    def usernames(self) -> dict[uuid.UUID, str]:
        return {v: k for k, v in self.account_ids.items()}

    async def start_worker(self, name: str) -> Proc:
        """Start ``tgfleet worker --id name`` (again, with the same log, if it ran before)."""
        proc = self.workers.get(name)
        if proc is None:
            proc = Proc(
                name,
                [sys.executable, "-m", "tgfleet", "worker", "--id", name],
                self.worker_env,
                self.tmp / f"{name}.log",
            )
            self.workers[name] = proc
        await proc.start()
        return proc

    async def snapshot(self) -> Snapshot:
        return await observe(self.engine, self.control, self.usernames)

    async def wait(
        self,
        predicate: Callable[[Snapshot], bool],
        within: float,
        what: str,
        step: float = 0.2,
    ) -> tuple[float, Snapshot]:
        """Poll until ``predicate(snapshot)``; (seconds it took, that snapshot). Every
        snapshot on the way must show no duplicate use."""

        async def look() -> Snapshot:
            snapshot = await self.snapshot()
            assert not snapshot.duplicate_use, snapshot.duplicate_use
            return snapshot

        try:
            return await settle(look, predicate, within, step)
        except NotYet as exc:
            async with self.engine.connect() as connection:
                states = (await connection.execute(STATES)).all()
            logs = "\n".join(f"[{n}] {p.tail(8)}" for n, p in self.workers.items())
            msg = (
                f"not {what} within {within} s: {exc}\n"
                f"(status state, status worker, lease worker, reason, count): {states}\n{logs}"
            )
            raise AssertionError(msg) from None

    async def wait_split(self, names: list[str], within: float) -> Snapshot:
        """Until every account is served and every worker holds an even share (±5 %)."""
        _, snapshot = await self.wait(lambda s: s.fair(names), within, "settled in fair shares")
        return snapshot


class NotYet(Exception):
    """`settle` ran out of time; ``last`` is the last snapshot it took (None: not one)."""

    def __init__(self, last: Snapshot | None) -> None:
        super().__init__("no snapshot" if last is None else describe(last))
        self.last = last


async def settle(
    look: Callable[[], Awaitable[Snapshot]],
    predicate: Callable[[Snapshot], bool],
    within: float,
    step: float,
) -> tuple[float, Snapshot]:
    """``look`` every ``step`` s until ``predicate`` holds of its snapshot; (seconds it took,
    that snapshot). `NotYet` after ``within`` s."""
    started = time.monotonic()
    last: Snapshot | None = None
    try:
        async with asyncio.timeout(within):
            while True:
                last = await look()
                if predicate(last):
                    return time.monotonic() - started, last
                await asyncio.sleep(step)
    except TimeoutError:
        raise NotYet(last) from None


async def observe(
    engine: AsyncEngine, control: SandboxControl, usernames: Mapping[uuid.UUID, str]
) -> Snapshot:
    """One `Snapshot` of the accounts desired running (``usernames``: id -> world name)."""
    async with engine.connect() as connection:
        rows = (await connection.execute(FLEET_STATE)).all()
    stats = await control.stats()
    by_name = {usernames[row[0]]: row[0] for row in rows}
    return Snapshot(
        holder={row[0]: row[1] for row in rows},
        online_on={row[0]: row[2] for row in rows},
        connections={
            by_name[name]: int(count)
            for name, count in stats["connections"].items()
            if name in by_name
        },
        duplicate_use={name: int(n) for name, n in stats["duplicate_use"].items() if n},
        acquired_at={row[0]: row[3] for row in rows},
    )


def describe(snapshot: Snapshot) -> str:
    """A one-line summary of a snapshot for assertion messages."""
    online: dict[str | None, int] = {}
    for worker in snapshot.online_on.values():
        online[worker] = online.get(worker, 0) + 1
    connections: dict[int, int] = {}
    for account in snapshot.holder:
        count = snapshot.connections.get(account, 0)
        connections[count] = connections.get(count, 0) + 1
    return (
        f"held {snapshot.held()}, unassigned {len(snapshot.unassigned())}, "
        f"online by status {online}, accounts by live connections {connections}, "
        f"duplicate use {snapshot.duplicate_use}"
    )
