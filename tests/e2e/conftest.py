"""The ``make_cluster`` fixture: real sandbox and worker processes (see ``harness.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from tests.conftest import TEST_AUDIT_KEY, TEST_VAULT_KEY, make_settings
from tests.e2e.harness import CONTEXT, PG_PORT, SILENT_PLAYBOOK, Cluster
from tests.fakes.tcp_proxy import TcpProxy
from tests.harness import Proc, control_url, free_port, sandbox_argv, seed_world, worker_env
from tgfleet.kit.db import create_engine
from tgfleet.sandbox.client import SandboxControl
from tgfleet.sandbox.mint import mint


async def _kill_quietly(procs: list[Proc]) -> None:
    for proc in procs:
        with contextlib.suppress(Exception):
            await proc.kill()


class ClusterFactory:
    """``await make_cluster(accounts=30, ttl=6.0)``: a sandbox subprocess serving a freshly
    minted world, the fleet seeded and started in the per-test database; workers are started
    by the test (``cluster.start_worker("w1")``). Teardown kills every process.

    Options (defaults: one group, two simulated members per group, the silent playbook):
    ``grace``/``release_step`` set the lease settings of that name, ``via_proxy`` routes the
    workers' database connections through a started `TcpProxy` (stopped at teardown),
    ``groups``/``members`` go to ``mint``, ``playbooks`` (name -> YAML) and ``assignment``
    (world group id -> playbook name) to ``seed_fleet``, ``extra_env`` is merged last into
    every worker's environment. One cluster per test (the world is minted into
    ``tmp_path / "world"``).
    """

    def __init__(self, db_url: str, tmp: Path, cleanup: contextlib.AsyncExitStack) -> None:
        self._db_url = db_url
        self._tmp = tmp
        self._cleanup = cleanup

    async def __call__(
        self,
        *,
        accounts: int,
        ttl: float,
        grace: float | None = None,
        release_step: int | None = None,
        via_proxy: TcpProxy | None = None,
        groups: int = 1,
        members: int = 2,
        playbooks: Mapping[str, str] | None = None,
        assignment: Mapping[int, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> Cluster:
        if via_proxy is not None:
            self._cleanup.push_async_callback(via_proxy.stop)
        port = free_port()
        world_dir = self._tmp / "world"
        world = await asyncio.to_thread(
            mint, world_dir, accounts=accounts, groups=groups, members=members, port=port
        )
        sandbox = Proc(
            "sandbox",
            sandbox_argv(world_dir / "world.yaml", port),
            os.environ,
            self._tmp / "sandbox.log",
        )
        self._cleanup.push_async_callback(_kill_quietly, [sandbox])
        await sandbox.start()
        engine = create_engine(self._db_url, pool_size=2, max_overflow=2)
        self._cleanup.push_async_callback(engine.dispose)
        data_dir = self._tmp / "data"
        data_dir.mkdir(mode=0o700, exist_ok=True)
        worker_url = self._db_url
        if via_proxy is not None:
            worker_url = self._db_url.replace(f"127.0.0.1:{PG_PORT}", f"127.0.0.1:{via_proxy.port}")
            assert worker_url != self._db_url, self._db_url
        env = worker_env(
            worker_url,
            TEST_VAULT_KEY,
            data_dir,
            TGFLEET_AUDIT_KEY=TEST_AUDIT_KEY,
            TGFLEET_LOG_LEVEL=os.environ.get("E2E_WORKER_LOG_LEVEL", "WARNING"),
            TGFLEET_LEASE_TTL_SECONDS=str(ttl),
            TGFLEET_WORKER_CONNECT_TIMEOUT_SECONDS="5",
        )
        if grace is not None:
            env["TGFLEET_LEASE_GRACE_SECONDS"] = str(grace)
        if release_step is not None:
            env["TGFLEET_LEASE_RELEASE_STEP"] = str(release_step)
        env.update(extra_env or {})
        control = SandboxControl(await control_url(sandbox, 30))
        self._cleanup.push_async_callback(control.aclose)
        cluster = Cluster(self._tmp, engine, control, sandbox, env, world, world_dir, {})
        # Workers are started later, by the test: kill whatever is in the dict by then.
        self._cleanup.push_async_callback(lambda: _kill_quietly([*cluster.workers.values()]))
        seeded = await seed_world(
            make_settings(self._db_url, data_dir),
            CONTEXT,
            world,
            world_dir,
            playbooks={"silent": SILENT_PLAYBOOK} if playbooks is None else playbooks,
            assignment=assignment,
        )
        cluster.account_ids = seeded.account_ids
        cluster.playbook_ids = seeded.playbook_ids
        cluster.chat_ids = seeded.chat_ids
        return cluster


@pytest.fixture
async def make_cluster(db_url: str, tmp_path: Path) -> AsyncIterator[ClusterFactory]:
    """A `ClusterFactory` on the per-test database; teardown kills every process."""
    async with contextlib.AsyncExitStack() as cleanup:
        yield ClusterFactory(db_url, tmp_path, cleanup)
