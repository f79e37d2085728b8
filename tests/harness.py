"""The process harness the end-to-end tests and the benchmarks share: subprocesses in their
own process group with their output in a log file, the sandbox as a subprocess, a
``tgfleet`` process's environment, a scratch PostgreSQL database, polling another process;
and the alerting configuration they hand tgfleet or Alertmanager.

`Proc` runs one process in its own process group (killed at exit if a teardown never ran);
``stop`` ends it with SIGTERM and, after a grace period, SIGKILL; ``kill`` SIGKILLs it at
once (a crash). ``tests/e2e/harness.py`` builds a fleet of them (`Cluster`).

bench/ imports this module too (``bench/_common.py`` puts the repository root on
``sys.path``), so nothing here imports pytest or a fixture.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from tgfleet.audit import keys as audit_keys
from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings
from tgfleet.demo.seed import SeededFleet, seed_fleet
from tgfleet.kit.db import create_engine, create_sessionmaker
from tgfleet.sandbox.world import World
from tgfleet.vault.service import Vault

#: The sandbox's line naming its MTProto and control ports.
READY = re.compile(r"sandbox ready on \S+:(\d+) \(control (\S+):(\d+)\)")
#: A worker's line naming its metrics and probes port.
PROBES = re.compile(r"/metrics and probes on \S+:(\d+)")

_LIVE_GROUPS: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:  # a last resort if a teardown never ran (e.g. a hard timeout)
    for pgid in list(_LIVE_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Proc:
    """A subprocess in its own process group, stdout and stderr into a log file.

    ``env`` None inherits this process's environment. Started again (``start``), it appends
    to the same log after a ``--- start N`` line."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None, log: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = None if env is None else dict(env)
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @classmethod
    async def spawn(
        cls, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None
    ) -> Proc:
        """A started `Proc`."""
        proc = cls(name, argv, env, log)
        await proc.start()
        return proc

    async def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as handle:  # the child keeps its own descriptor
            handle.write(f"--- start {self.starts}\n".encode())
            handle.flush()
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=handle,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        _LIVE_GROUPS.add(self.process.pid)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    async def wait_line(self, pattern: re.Pattern[str], within: float) -> re.Match[str]:
        """The first match of ``pattern`` in the log; fails if the process exits first."""
        async with asyncio.timeout(within):
            while True:
                if match := pattern.search(self.output()):
                    return match
                if not self.alive():
                    msg = f"{self.name} exited ({self.returncode}):\n{self.tail()}"
                    raise RuntimeError(msg)
                await asyncio.sleep(0.05)

    async def wait(self) -> int:
        """Until the process exits by itself; its exit status."""
        assert self.process is not None
        return await self.process.wait()

    def signal(self, signum: int) -> None:
        os.killpg(self.pid, signum)

    async def kill(self) -> None:
        """SIGKILL the whole group (nothing runs a handler) and reap it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        async with asyncio.timeout(10):
            await self.process.wait()
        _LIVE_GROUPS.discard(self.process.pid)

    async def terminate(self, within: float = 15.0) -> int:
        """SIGTERM and wait for the exit status (SIGKILL after ``within``, which fails)."""
        assert self.process is not None
        self.signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(within):
                return await self.process.wait()
        finally:
            await self.kill()

    async def stop(self, within: float = 30.0) -> float:
        """SIGTERM the group, wait up to ``within``, then SIGKILL; the seconds it took."""
        started = time.perf_counter()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await self.wait()
        await self.kill()  # anything the child left in its group
        return time.perf_counter() - started


@contextlib.asynccontextmanager
async def stopping(proc: Proc, within: float = 30.0) -> AsyncIterator[Proc]:
    """``proc``, stopped (`Proc.stop`) when the block ends."""
    try:
        yield proc
    finally:
        await proc.stop(within)


async def stop_process(process: asyncio.subprocess.Process, within: float) -> None:
    """SIGTERM a plain child (not a `Proc`), SIGKILL after ``within``; reaped."""
    if process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(within):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


async def poll(predicate: Callable[[], Awaitable[bool]], timeout: float, step: float) -> bool:  # noqa: ASYNC109
    """Until ``predicate()`` (every ``step`` s); False if ``timeout`` s passed first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while not await predicate():  # noqa: ASYNC110 - polls another process
                await asyncio.sleep(step)
            return True
    return False


# ----------------------------------------------------------------------------- tgfleet


def sandbox_argv(world: Path, port: int) -> list[str]:
    """``tgfleet sandbox run`` serving the world file ``world`` on ``port`` (0: any), its
    control API on any port, no simulated traffic."""
    return [
        sys.executable,
        "-m",
        "tgfleet",
        "sandbox",
        "run",
        "--world",
        str(world),
        "--port",
        str(port),
        "--control-port",
        "0",
        "--no-traffic",
    ]


async def control_url(sandbox: Proc, within: float) -> str:
    """The started sandbox's control API URL, from its ready line."""
    match = await sandbox.wait_line(READY, within)
    return f"http://{match[2]}:{match[3]}"


async def start_sandbox(
    world: Path, port: int, log: Path, within: float = 60.0
) -> tuple[Proc, str]:
    """The sandbox process, ready; (it, its control API URL). Stopped if it never gets ready."""
    sandbox = await Proc.spawn("sandbox", sandbox_argv(world, port), log)
    try:
        return sandbox, await control_url(sandbox, within)
    except BaseException:
        await sandbox.stop()
        raise


def tgfleet_env(**settings: str) -> dict[str, str]:
    """This process's environment without its ``TGFLEET_`` variables, with ``settings``
    (full variable names) on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TGFLEET_")}
    env.update(settings)
    return env


def worker_env(
    database_url: str, vault_key: str, data_dir: Path, **settings: str
) -> dict[str, str]:
    """The environment of ``tgfleet worker`` processes sharing one host and one database."""
    env = tgfleet_env(
        TGFLEET_ENV="test",
        TGFLEET_DATABASE_URL=database_url,
        TGFLEET_VAULT_KEY=vault_key,
        TGFLEET_DATA_DIR=str(data_dir),
        TGFLEET_LOG_LEVEL="WARNING",
        TGFLEET_WORKER_METRICS_PORT="0",  # several workers on one host
        TGFLEET_TELEGRAM_DCS="",  # no probe leaves loopback
    )
    env.update(settings)
    return env


async def seed_world(
    settings: Settings, context: AuditContext, world: World, world_dir: Path, **options: Any
) -> SeededFleet:
    """The minted ``world``'s accounts imported through the vault, playbooks installed and
    its groups enabled: ``seed_fleet`` with ``options`` (``playbooks``, ``assignment``,
    ``start``), audited with ``settings``' audit key as a command would (a key file in the
    data dir, where the processes started later find it). Fails unless every account was
    imported."""
    audit_keys.configure(settings)
    vault = await asyncio.to_thread(Vault.load, settings)
    engine = create_engine(settings.effective_database_url, pool_size=2, max_overflow=2)
    try:
        maker = create_sessionmaker(engine)
        seeded = await seed_fleet(maker, vault, context, world, world_dir, **options)
    finally:
        await engine.dispose()
    if seeded.failed or len(seeded.account_ids) != len(world.accounts):
        msg = f"seeding failed for {len(seeded.failed)} accounts: {seeded.failed[:5]}"
        raise RuntimeError(msg)
    return seeded


def telegram_alerting(
    api_url: str,
    token: str,
    chat: int,
    *,
    group_wait: str = "1s",
    group_interval: str = "2s",
    extra: Sequence[str] = (),
) -> str:
    """An alerting configuration (tgfleet's or Alertmanager's: the same keys) with one route,
    grouped by alert name, to one Telegram receiver; ``extra`` lines go into the receiver
    (``send_resolved: true``, ``parse_mode: HTML``)."""
    receiver = "".join(f"\n        {line}" for line in extra)
    return f"""
route:
  receiver: ops
  group_by: [alertname]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: 1h
receivers:
  - name: ops
    telegram_configs:
      - api_url: {api_url}
        bot_token: "{token}"
        chat_id: {chat}{receiver}
"""


# ----------------------------------------------------------------------------- PostgreSQL


def database_url(server: str, name: str) -> str:
    """``server``'s URL naming the database ``name`` instead."""
    return make_url(server).set(database=name).render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def scratch_database(server: str, name: str) -> AsyncIterator[str]:
    """A fresh, empty database ``name`` on ``server`` (dropped first if a run left it, and
    at the end); its URL."""
    admin = create_engine(server, pool_size=1, max_overflow=0)

    async def execute(*statements: str) -> None:
        async with admin.connect() as raw:
            conn = await raw.execution_options(isolation_level="AUTOCOMMIT")
            for statement in statements:
                await conn.execute(text(statement))

    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    try:
        await execute(drop, f'CREATE DATABASE "{name}"')
        try:
            yield database_url(server, name)
        finally:
            await execute(drop)
    finally:
        await admin.dispose()
