"""Failover benchmark (issue 6): kill -9 one of 3 ``tgfleet worker`` processes holding 300
accounts, 20 times, and time until its accounts run on the survivors.

Setup: a scratch PostgreSQL database on the local server (created, migrated with
``tgfleet.migrations.upgrade``, dropped at the end); a world of ``ACCOUNTS`` fleet accounts
in one supergroup (``mint``), served by ``tgfleet sandbox run --no-traffic`` in a
subprocess; the sessions imported through the vault (a random key), a playbook that never
answers, every account started (``seed_fleet``). Three ``tgfleet worker --id wN``
subprocesses (own process groups, WARNING logs) with ``TGFLEET_LEASE_TTL_SECONDS=TTL``
and the default grace (2 s), renewal (TTL/3), fencing (TTL/2) and release step.

Per kill (victims in turn w1, w2, w3, w1, ...): once the fleet is settled (every account
validly held, ``online`` by its status on its holder, one live sandbox connection; each
worker within 5 % of a third) and a random part of a renewal interval later (uniform in
0..TTL/3: a crash comes at any phase of the renewal cycle, while settling ends right after
a tick), the victim's accounts are read from ``account_lease`` (valid = the worker's epoch,
not expired) and the victim's group is sent SIGKILL. Failover time =
from the kill to the first poll (every 0.2 s: one SQL query and ``GET /stats``) at which
every one of those accounts is validly held by a survivor, ``online`` there by
``account_status`` and has exactly one live sandbox connection. Also recorded: when the
victim's worker lease expired (its ``expires_at`` at the kill), the first survivor claim
(its ``acquired_at``) and the last. Then the victim is restarted with the same id and the
fleet settles again before the next kill. ``duplicate_use`` from ``/stats`` is checked at
every poll. CPU is ``/proc/<pid>/stat`` utime+stime of each process over its lifetime,
summed over the run.

Knobs: ``TGFLEET_BENCH_FAILOVER_KILLS`` (20), ``TGFLEET_BENCH_FAILOVER_ACCOUNTS`` (300),
``TGFLEET_BENCH_FAILOVER_TTL`` (15), ``TGFLEET_BENCH_FAILOVER_GRACE`` (default: the
setting's default, 2 s), ``TGFLEET_BENCH_FAILOVER_SERVER``
(``postgresql+asyncpg://postgres@127.0.0.1:5432/test``: where to CREATE DATABASE).
Target: p99 < 20 s. Run alone: ``.venv/bin/python bench/run.py failover``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import cpu_seconds, own_cpu, pct, run_in_tempdir
from fleet import bench_settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.e2e.harness import SILENT_PLAYBOOK, NotYet, Snapshot, observe, settle
from tests.harness import Proc, free_port, scratch_database, seed_world, start_sandbox, worker_env

from tgfleet import migrations
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.db import create_engine
from tgfleet.sandbox.client import SandboxControl
from tgfleet.sandbox.mint import WORLD_FILE, mint
from tgfleet.worker.leases import DEFAULT_GRACE

KILLS = int(os.environ.get("TGFLEET_BENCH_FAILOVER_KILLS", "20"))
ACCOUNTS = int(os.environ.get("TGFLEET_BENCH_FAILOVER_ACCOUNTS", "300"))
TTL = float(os.environ.get("TGFLEET_BENCH_FAILOVER_TTL", "15"))
GRACE_SETTING = os.environ.get("TGFLEET_BENCH_FAILOVER_GRACE")
SERVER = os.environ.get(
    "TGFLEET_BENCH_FAILOVER_SERVER", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
WORKERS = ("w1", "w2", "w3")
TARGET_P99 = 20.0
STEP = 0.2
SETTLE_TIMEOUT = 180.0
FAILOVER_TIMEOUT = 120.0
CONTEXT = AuditContext(actor="cli:bench")
WORKER_LEASE = text("SELECT expires_at, heartbeat_at, now() FROM worker WHERE id = :id")


@dataclass
class Kill:
    victim: str
    accounts: int
    failover: float  # kill -> every account served by a survivor
    lease_left: float  # kill -> the victim's worker lease expired
    first_claim: float  # kill -> first survivor claim of one of its accounts
    last_claim: float  # kill -> last such claim
    settle: float  # restart -> fair shares again


@dataclass
class Fleet:
    engine: AsyncEngine
    control: SandboxControl
    usernames: dict[uuid.UUID, str]
    env: dict[str, str]
    workdir: Path
    workers: dict[str, Proc] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # name -> CPU s of ended processes
    duplicate_use: int = 0
    polls: int = 0

    async def start(self, name: str) -> None:
        self.workers[name] = await Proc.spawn(
            name,
            [sys.executable, "-m", "tgfleet", "worker", "--id", name],
            self.workdir / f"{name}.log",
            self.env,
        )

    async def kill(self, name: str) -> None:
        child = self.workers[name]
        with contextlib.suppress(OSError):
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu_seconds(child.pid)
        await child.kill()

    async def snapshot(self) -> Snapshot:
        snapshot = await observe(self.engine, self.control, self.usernames)
        self.polls += 1
        self.duplicate_use = max(self.duplicate_use, sum(snapshot.duplicate_use.values()))
        return snapshot

    def settled(self, snapshot: Snapshot) -> bool:
        return snapshot.fair(WORKERS)

    async def until(self, predicate: Any, timeout: float, what: str) -> tuple[float, Snapshot]:  # noqa: ASYNC109
        try:
            return await settle(self.snapshot, predicate, timeout, STEP)
        except NotYet as exc:
            logs = "\n".join(f"[{n}] {c.tail(5)}" for n, c in self.workers.items())
            msg = f"not {what} within {timeout} s: {exc}\n{logs}"
            raise RuntimeError(msg) from None


def seconds_between(later: dt.datetime, earlier: dt.datetime) -> float:
    return (later - earlier).total_seconds()


async def measure_kill(fleet: Fleet, victim: str, phase: float) -> Kill:
    # Settling completes right after a renewal tick; a crash comes at any point of the
    # renewal interval: wait a random part of it first.
    await asyncio.sleep(phase)
    before = await fleet.snapshot()
    accounts = [a for a, w in before.holder.items() if w == victim]
    async with fleet.engine.connect() as connection:
        expires_at, _, db_now = (await connection.execute(WORKER_LEASE, {"id": victim})).one()
    lease_left = seconds_between(expires_at, db_now)
    killed_db = db_now
    await fleet.kill(victim)
    failover, after = await fleet.until(
        lambda s: all(s.served(a, not_by=victim) for a in accounts),
        FAILOVER_TIMEOUT,
        f"failed over from {victim}",
    )
    claims = [c for a in accounts if (c := after.acquired_at.get(a)) is not None]
    first = min(seconds_between(c, killed_db) for c in claims) if claims else float("nan")
    last = max(seconds_between(c, killed_db) for c in claims) if claims else float("nan")
    restarted = time.monotonic()
    await fleet.start(victim)
    await fleet.until(fleet.settled, SETTLE_TIMEOUT, "settled after the restart")
    return Kill(
        victim=victim,
        accounts=len(accounts),
        failover=failover,
        lease_left=lease_left,
        first_claim=first,
        last_claim=last,
        settle=time.monotonic() - restarted,
    )


async def run(workdir: Path) -> list[str]:
    port = free_port()
    world_dir = workdir / "world"
    world = await asyncio.to_thread(
        mint, world_dir, accounts=ACCOUNTS, groups=1, members=2, port=port
    )
    vault_key = base64.b64encode(os.urandom(32)).decode()
    data_dir = workdir / "data"
    data_dir.mkdir(mode=0o700)
    wall_started = time.monotonic()
    own_started = own_cpu()
    async with scratch_database(SERVER, f"tgfleet_bench_failover_{os.getpid()}") as url:
        await asyncio.to_thread(migrations.upgrade, url)
        settings = bench_settings(data_dir, vault_key, url)
        engine = create_engine(url, pool_size=2, max_overflow=2)
        sandbox, control_url = await start_sandbox(
            world_dir / WORLD_FILE, port, workdir / "sandbox.log"
        )
        control = SandboxControl(control_url, timeout=60.0)
        env = worker_env(url, vault_key, data_dir, TGFLEET_LEASE_TTL_SECONDS=str(TTL))
        if GRACE_SETTING is not None:
            env["TGFLEET_LEASE_GRACE_SECONDS"] = GRACE_SETTING
        fleet: Fleet | None = None
        try:
            seeded = await seed_world(
                settings,
                CONTEXT,
                world,
                world_dir,
                playbooks={"silent": SILENT_PLAYBOOK},
            )
            usernames = {v: k for k, v in seeded.account_ids.items()}
            fleet = Fleet(engine, control, usernames, env, workdir)
            started = time.monotonic()
            await asyncio.gather(*(fleet.start(name) for name in WORKERS))
            await fleet.until(fleet.settled, SETTLE_TIMEOUT, "settled")
            first_settle = time.monotonic() - started
            kills: list[Kill] = []
            phases = random.Random(6)  # noqa: S311 - reproducible choreography, not security
            for index in range(KILLS):
                victim = WORKERS[index % len(WORKERS)]
                kill = await measure_kill(fleet, victim, phases.uniform(0, TTL / 3))
                kills.append(kill)
                print(
                    f"  kill {index + 1}/{KILLS} {victim}: {kill.accounts} accounts back in "
                    f"{kill.failover:.1f} s (lease left {kill.lease_left:.1f} s, claims "
                    f"{kill.first_claim:.1f}-{kill.last_claim:.1f} s); settled "
                    f"{kill.settle:.1f} s after the restart",
                    flush=True,
                )
            wall = time.monotonic() - wall_started
            cpu = dict(fleet.cpu)
            for name, child in fleet.workers.items():
                cpu[name] = cpu.get(name, 0.0) + cpu_seconds(child.pid)
            cpu["sandbox"] = cpu_seconds(sandbox.pid)
            cpu["bench"] = own_cpu() - own_started
            return report(kills, first_settle, wall, cpu, fleet)
        finally:
            if fleet is not None:
                for child in fleet.workers.values():
                    await child.stop()
            await control.aclose()
            await sandbox.stop()
            await engine.dispose()


def report(
    kills: list[Kill], first_settle: float, wall: float, cpu: dict[str, float], fleet: Fleet
) -> list[str]:
    times = [k.failover for k in kills]
    p50, p99, worst = pct(times, 0.5), pct(times, 0.99), max(times)
    grace = float(GRACE_SETTING) if GRACE_SETTING is not None else DEFAULT_GRACE
    ok = p99 < TARGET_P99 and fleet.duplicate_use == 0
    lower, upper = TTL * 2 / 3 + grace, TTL + grace
    return [
        f"### Failover: kill -9 one of 3 workers x {ACCOUNTS} accounts, {len(kills)} kills",
        "",
        (
            f"Three `tgfleet worker` processes on a scratch PostgreSQL database (local server), "
            f"{ACCOUNTS} accounts in one supergroup served by `tgfleet sandbox run --no-traffic`, "
            f"a playbook that never answers. Lease settings: TTL {TTL:g} s, renewal every "
            f"{TTL / 3:g} s, self-fencing at {TTL / 2:g} s, grace {grace:g} s"
            f"{' (the default)' if GRACE_SETTING is None else ''}, release step 50. "
            "Victims in turn w1, w2, w3, ..., each killed at a random point (uniform 0..TTL/3) "
            "after the fleet settled; failover time = from SIGKILL of the victim's process "
            "group to the first 0.2 s poll at which every account it held is validly held by a "
            "survivor (`account_lease` x `worker`: same epoch, not expired), `online` there by "
            "`account_status`, with exactly one live connection in the sandbox's `/stats`. After "
            "each measurement the victim restarts with the same id and the fleet settles (every "
            "account served, each worker within 5 % of a third) before the next kill."
        ),
        "",
        "| measure | value | target | verdict |",
        "|---|---|---|---|",
        (
            f"| failover p50 / p99 / max over {len(kills)} kills | {p50:.1f} / {p99:.1f} / "
            f"{worst:.1f} s | p99 < {TARGET_P99:g} s | "
            f"{'**PASS**' if p99 < TARGET_P99 else '**FAIL**'} |"
        ),
        f"| failover min / mean | {min(times):.1f} / {sum(times) / len(times):.1f} s | - | - |",
        (
            f"| duplicate use (sandbox, max over {fleet.polls} polls) | {fleet.duplicate_use} | 0 "
            f"| {'**PASS**' if fleet.duplicate_use == 0 else '**FAIL**'} |"
        ),
        (
            f"| accounts per kill | {min(k.accounts for k in kills)}-"
            f"{max(k.accounts for k in kills)} | - | - |"
        ),
        (
            f"| kill -> the victim's worker lease expired (what was left of the TTL) | "
            f"{pct([k.lease_left for k in kills], 0.5):.1f} s median "
            f"({min(k.lease_left for k in kills):.1f}-{max(k.lease_left for k in kills):.1f}) "
            "| - | - |"
        ),
        (
            f"| kill -> first / last survivor claim (median) | "
            f"{pct([k.first_claim for k in kills], 0.5):.1f} / "
            f"{pct([k.last_claim for k in kills], 0.5):.1f} s | - | - |"
        ),
        (
            f"| last claim -> all online (median) | "
            f"{pct([k.failover - k.last_claim for k in kills], 0.5):.1f} s | - | - |"
        ),
        (
            f"| restart -> settled in fair shares (median / max) | "
            f"{pct([k.settle for k in kills], 0.5):.1f} / {max(k.settle for k in kills):.1f} s "
            "| - | - |"
        ),
        f"| first start of 3 workers -> settled | {first_settle:.1f} s | - | - |",
        f"| CPU over the run ({wall:.0f} s wall): w1 / w2 / w3 / sandbox / bench | "
        + " / ".join(f"{cpu.get(n, 0.0) / wall * 100:.1f}%" for n in (*WORKERS, "sandbox", "bench"))
        + " of one core | - | - |",
        "",
        "Per kill (s): " + ", ".join(f"{k.victim} {k.failover:.1f}" for k in kills) + ".",
        "",
        (
            f"Verdict: {'**PASS**' if ok else '**FAIL**'}. Arithmetic of the design: a dead "
            f"worker's lease expires TTL after its last renewal, i.e. {TTL * 2 / 3:g}-{TTL:g} s "
            f"after the kill (renewals every TTL/3); the leader frees its leases a grace "
            f"({grace:g} s) later and notifies the survivors, who claim at once; then the "
            f"clients connect. So failover lies in about {lower:g}-{upper:g} s plus the "
            f"connect time (mean about {TTL * 5 / 6 + grace:g} s plus the connect time)."
        ),
    ]


def main() -> str:
    return "\n".join(run_in_tempdir(run, "tgfleet-bench-failover-"))


if __name__ == "__main__":
    print(main())
