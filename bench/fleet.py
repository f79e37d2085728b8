"""Fleet benchmark (issue 5): 1,000 accounts in one worker against the sandbox, and the same
traffic answered by a minimal hand-written Telethon script as the baseline.

World: 1,000 fleet accounts, 1,000 basic groups, each holding exactly one fleet account and
three simulated members of its own, so every member message has exactly one fleet
recipient (the baseline has no "one responder" logic; this keeps the comparison fair).
Minted with ``mint(accounts=N, groups=0, members=3N)``, the groups added with
``dataclasses.replace`` and ``dump_world``; ``tgfleet sandbox run --no-traffic`` serves it
in a subprocess.

tgfleet side: this process migrates a fresh SQLite database in a temp data dir, imports the
world's session files through the vault and installs one playbook (``seed_fleet``), enables
each account's one group with it, and starts the accounts, all through the services. The
worker is ``tgfleet run`` (API and worker in one process) as a subprocess with that data
dir and vault key. Measured:

(a) a first ``tgfleet run`` with no account started gives the worker's RSS with 0
    accounts; after ``bulk_control(start)`` a second one is timed from its spawn until all
    accounts are ``online`` (read-only polls of ``account_status.state`` in the SQLite
    file), split at its first reconcile (the earliest ``starting`` state event the worker
    recorded); then its idle CPU over ``IDLE_SECONDS`` with no traffic and its RSS;
(b) simulated members post ``RATE`` messages/s for ``LOAD_SECONDS`` through the control
    API (``POST /groups/{id}/messages``; concurrent keep-alive posters, paced to a schedule,
    round-robin over the groups; each text unique, ``q-<n>``). Latency is the reply's
    ``at`` in ``GET /stats`` ``messages_sent`` (matched by text) minus the wall time just
    before that message's POST; replies/s counts the replies whose ``at`` falls in the load
    window. CPU of the worker, the sandbox and this (posting) process over the window.
(c) ``bench/_baseline_replier.py`` (one ``TelegramClient`` per account, ``event.reply``) in
    its own process against a fresh sandbox, the same world and traffic.

CPU is ``/proc/<pid>/stat`` utime+stime, RSS is ``/proc/<pid>/status`` VmRSS. Sizes via
``TGFLEET_BENCH_FLEET_ACCOUNTS`` (1000), ``TGFLEET_BENCH_FLEET_RATE`` (200 messages/s),
``TGFLEET_BENCH_FLEET_SECONDS`` (30) and ``TGFLEET_BENCH_FLEET_IDLE_SECONDS`` (25).
Targets: all online < 60 s; idle CPU < 5 % of a core; RSS < 300 MB; p99 < 100 ms;
throughput >= 0.8x the baseline. Run alone: `.venv/bin/python bench/run.py fleet`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import re
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from _common import backend, cpu_seconds, own_cpu, pct, raise_nofile, rss_mib, run_in_tempdir
from pydantic import SecretStr
from tests.harness import Proc, free_port, poll, seed_world, start_sandbox, tgfleet_env

from tgfleet import migrations
from tgfleet.account import commands as account_commands
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth import service as auth_service
from tgfleet.config import Environment, Settings
from tgfleet.kit.data_dir import ensure_data_dir
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.sandbox.mint import WORLD_FILE, mint
from tgfleet.sandbox.world import BASIC_GROUP_IDS, World, WorldGroup
from tgfleet.sandbox.world_file import dump_world

ACCOUNTS = int(os.environ.get("TGFLEET_BENCH_FLEET_ACCOUNTS", "1000"))
RATE = float(os.environ.get("TGFLEET_BENCH_FLEET_RATE", "200"))
LOAD_SECONDS = float(os.environ.get("TGFLEET_BENCH_FLEET_SECONDS", "30"))
IDLE_SECONDS = float(os.environ.get("TGFLEET_BENCH_FLEET_IDLE_SECONDS", "25"))
# A directory: each run's (message number, POST wall time, reply `at`) as JSON, to look at
# the latency over time.
DUMP = os.environ.get("TGFLEET_BENCH_FLEET_DUMP")
MEMBERS_PER_GROUP = 3
POSTERS = 32
BASELINE_CONNECT_CONCURRENCY = 50  # the worker's default start gate
EMPTY_WORKER_SETTLE = 5.0  # reconciles the 0-account worker runs before its RSS is read
SETTLE_AFTER_ONLINE = 3.0
READY_TIMEOUT = 60.0
ONLINE_TIMEOUT = 180.0
DRAIN_TIMEOUT = 60.0
BASELINE_READY = re.compile(r"baseline ready: (\d+) connected, (\d+) failed in ([\d.]+) s")
REPLY = re.compile(r"^ack q-(\d+)$")
CONTEXT = AuditContext(actor="cli:bench")
BASELINE_SCRIPT = Path(__file__).resolve().parent / "_baseline_replier.py"


def ack_playbook(description: str, probability: float) -> str:
    """Every message matched (``min_length: 1``) and answered ``ack <its text>`` with
    ``probability``; limits at the schema's maxima (1,000 per account-hour and chat-hour;
    a run stays far below: ~6 per account at 1,000 accounts); no typing; each group has
    one fleet account, so responders cannot suppress."""
    limits = "min_interval_seconds: 0, account_hourly: 1000, group_hourly: 1000"
    return f"""\
version: 1
description: {description}
defaults:
  limits: {{{limits}, probability: {probability}}}
  typing_seconds: 0
  responders: all
rules:
  - name: ack
    when: {{min_length: 1}}
    reply:
      templates: ["ack {{{{ message.text }}}}"]
"""


PLAYBOOK = ack_playbook("bench - answer every message", 1.0)


# ----------------------------------------------------------------------------- helpers


def mb(mib: float) -> float:
    return mib * 1024 * 1024 / 1e6


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


class Meter:
    """CPU % of one core of some processes (and of this one) over one interval."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.wall = time.perf_counter()
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.own = own_cpu()

    def read(self) -> tuple[float, dict[str, float]]:
        """(wall seconds, name -> CPU %; ``bench`` is this process) since construction."""
        wall = time.perf_counter() - self.wall
        cpu = {
            name: (cpu_seconds(pid) - self.start[name]) / wall * 100
            for name, pid in self.pids.items()
        }
        cpu["bench"] = (own_cpu() - self.own) / wall * 100
        return wall, cpu


# ----------------------------------------------------------------------------- processes


def worker_env(data_dir: Path, vault_key: str) -> dict[str, str]:
    """``tgfleet run``'s environment: SQLite in ``data_dir``."""
    return tgfleet_env(
        TGFLEET_DATA_DIR=str(data_dir),
        TGFLEET_ENV="test",
        TGFLEET_VAULT_KEY=vault_key,
        TGFLEET_LOG_LEVEL="WARNING",
        # The admin exists already (created in prepare()); cheap hashing anyway.
        TGFLEET_ARGON2_TIME_COST="1",
        TGFLEET_ARGON2_MEMORY_KIB="8",
        TGFLEET_ARGON2_PARALLELISM="1",
    )


async def start_run(
    name: str, log: Path, env: dict[str, str], *options: str
) -> tuple[Proc, str, int]:
    """``tgfleet run`` (with ``options``) on a free port, answering ``/livez``; (it, its URL,
    the port). Stopped if it never answers."""
    port = free_port()
    child = await Proc.spawn(
        name, [sys.executable, "-m", "tgfleet", "run", *options, "--port", str(port)], log, env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_live(child, url)
    except BaseException:
        await child.stop()
        raise
    return child, url, port


async def start_worker(data_dir: Path, vault_key: str, log: Path) -> tuple[Proc, float, float, str]:
    """``tgfleet run`` on a free port; (child, unix spawn time, seconds to /livez, API url)."""
    spawned = time.time()
    child, url, _ = await start_run("worker", log, worker_env(data_dir, vault_key))
    return child, spawned, time.time() - spawned, url


async def wait_live(child: Proc, url: str) -> None:
    """Until the API answers ``/livez`` (the lifespan, so the worker, has started)."""
    async with httpx.AsyncClient(timeout=2.0) as http, asyncio.timeout(READY_TIMEOUT):
        while True:
            if not child.alive():
                msg = f"tgfleet run exited ({child.returncode}):\n{child.tail()}"
                raise RuntimeError(msg)
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/livez")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


# ----------------------------------------------------------------------------- world + database


def build_world(world_dir: Path, port: int) -> World:
    """N accounts, N basic groups of one account and MEMBERS_PER_GROUP members each."""
    minted = mint(
        world_dir, accounts=ACCOUNTS, groups=0, members=MEMBERS_PER_GROUP * ACCOUNTS, port=port
    )
    groups = []
    for index, account in enumerate(minted.accounts):
        members = tuple(
            m.id
            for m in minted.members[index * MEMBERS_PER_GROUP : (index + 1) * MEMBERS_PER_GROUP]
        )
        groups.append(
            WorldGroup(
                id=BASIC_GROUP_IDS.start + index,
                kind="basic",
                title=f"Bench group {index + 1}",
                members=(account.id, *members),
                admins=members[:1],
            )
        )
    world = dataclasses.replace(minted, groups=tuple(groups))
    dump_world(world, world_dir / WORLD_FILE)
    return world


def bench_settings(data_dir: Path, vault_key: str, database_url: str | None = None) -> Settings:
    """This process's settings (None: SQLite in ``data_dir``)."""
    return Settings(
        env=Environment.TEST,
        data_dir=data_dir,
        database_url=database_url,
        vault_key=SecretStr(vault_key),
        vault_key_file=None,
        vault_passphrase=None,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        argon2_parallelism=1,
    )


async def prepare(
    settings: Settings,
    world: World,
    world_dir: Path,
    *,
    playbook: str | None = None,
    start: bool = False,
) -> list[uuid.UUID]:
    """Migrate, create the admin, import and configure the fleet with ``playbook`` (default
    PLAYBOOK) and, with ``start``, start it; the account ids."""
    ensure_data_dir(settings)
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url)
    engine = create_engine(settings.effective_database_url)
    try:
        # seed_fleet enables each group for the accounts in it: here one account per group.
        seeded = await seed_world(
            settings,
            CONTEXT,
            world,
            world_dir,
            playbooks={"bench": PLAYBOOK if playbook is None else playbook},
            start=start,
        )
        security = await asyncio.to_thread(auth_service.Security.from_settings, settings)
        async with unit_of_work(create_sessionmaker(engine)) as session:
            await auth_service.ensure_admin(session, security, CONTEXT)
        return list(seeded.account_ids.values())
    finally:
        await engine.dispose()


async def start_accounts(settings: Settings, ids: list[uuid.UUID]) -> None:
    engine = create_engine(settings.effective_database_url)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            await account_commands.bulk_control(session, CONTEXT, ids=ids, action="start")
    finally:
        await engine.dispose()


def query(database: Path, sql: str) -> list[tuple[Any, ...]]:
    """A read-only query of the worker's SQLite file (WAL: never blocks the worker)."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5.0)
    try:
        return list(connection.execute(sql).fetchall())
    finally:
        connection.close()


def unix_of(stamp: str | None) -> float | None:
    """A TZDateTime column as stored on SQLite (naive UTC text) -> Unix time."""
    if stamp is None:
        return None
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()


async def sandbox_stats(control_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=control_url, timeout=60.0) as http:
        response = await http.get("/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats


async def updates_running(control_url: str, at_least: int, *, dialogs: bool) -> bool:
    """Every client's update loop made its first getState/getDifference (and, for the
    worker, every runner its getDialogs)."""
    requests = (await sandbox_stats(control_url))["requests"]
    loops = requests.get("updates.GetDifferenceRequest", 0) + requests.get(
        "updates.GetStateRequest", 0
    )
    done = loops >= at_least
    if dialogs:
        done = done and requests.get("messages.GetDialogsRequest", 0) >= at_least
    return bool(done)


# ----------------------------------------------------------------------------- load


class Load(NamedTuple):
    posted: int
    post_seconds: float  # first POST start to last POST start
    max_lag: float  # worst POST start behind its schedule
    post_p50: float
    post_p99: float
    latencies: list[float]
    replies: int
    in_window: int
    window: float
    unmatched: int
    drained: bool
    drain_seconds: float
    cpu: dict[str, float]  # over the posting window

    @property
    def replies_per_second(self) -> float:
        return self.in_window / self.window if self.window > 0 else 0.0

    def latency(self, q: float) -> float:
        return pct(self.latencies, q) * 1000 if self.latencies else float("nan")


async def drive_load(world: World, control_url: str, pids: dict[str, int], label: str) -> Load:
    """Post RATE member messages/s for LOAD_SECONDS, then match the replies."""
    total = max(1, round(RATE * LOAD_SECONDS))
    groups = world.groups
    sent_at = [0.0] * total
    post_times: list[float] = []
    lags: list[float] = []
    numbers = itertools.count()
    limits = httpx.Limits(max_connections=POSTERS, max_keepalive_connections=POSTERS)
    async with httpx.AsyncClient(base_url=control_url, timeout=30.0, limits=limits) as http:
        begin = time.perf_counter() + 0.5

        async def poster() -> None:
            while (n := next(numbers)) < total:
                due = begin + n / RATE
                if (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                group = groups[n % len(groups)]
                sender = group.members[1 + (n // len(groups)) % MEMBERS_PER_GROUP]
                started = time.perf_counter()
                lags.append(started - due)
                sent_at[n] = time.time()
                response = await http.post(
                    f"/groups/{group.id}/messages", json={"sender": sender, "text": f"q-{n}"}
                )
                post_times.append(time.perf_counter() - started)
                if response.status_code != 201:
                    msg = f"POST {group.id}: {response.status_code} {response.text}"
                    raise RuntimeError(msg)

        meter = Meter(pids)
        await asyncio.gather(*(poster() for _ in range(POSTERS)))
        _, cpu = meter.read()
    first, last = min(sent_at), max(sent_at)

    drained_at = time.perf_counter()
    replies: list[tuple[int, float]] = []
    unmatched = 0

    async def all_replied() -> bool:
        nonlocal replies, unmatched
        stats = await sandbox_stats(control_url)
        replies, unmatched = [], 0
        for sent in stats["messages_sent"].values():
            for message in sent:
                if match := REPLY.match(message["text"]):
                    replies.append((int(match[1]), float(message["at"])))
                else:
                    unmatched += 1
        return len(replies) >= total

    drained = await poll(all_replied, DRAIN_TIMEOUT, 1.0)
    drain_seconds = time.perf_counter() - drained_at
    latencies = [at - sent_at[n] for n, at in replies if 0 <= n < total]
    if DUMP:
        rows = [(n, sent_at[n], at) for n, at in sorted(replies) if 0 <= n < total]
        await asyncio.to_thread(Path(DUMP, f"{label}.json").write_text, json.dumps(rows))
    window = last - first
    in_window = sum(1 for _, at in replies if first <= at <= last)
    return Load(
        posted=total,
        post_seconds=window,
        max_lag=max(lags),
        post_p50=pct(post_times, 0.5),
        post_p99=pct(post_times, 0.99),
        latencies=latencies,
        replies=len(replies),
        in_window=in_window,
        window=window,
        unmatched=unmatched,
        drained=drained,
        drain_seconds=drain_seconds,
        cpu=cpu,
    )


# ----------------------------------------------------------------------------- phases


class Idle(NamedTuple):
    seconds: float
    cpu: dict[str, float]
    rss: float  # MiB, at the end of the idle window


async def measure_idle(pids: dict[str, int], measured: int) -> Idle:
    meter = Meter(pids)
    await asyncio.sleep(IDLE_SECONDS)
    seconds, cpu = meter.read()
    return Idle(seconds, cpu, rss_mib(measured))


class Tgfleet(NamedTuple):
    rss_empty: float
    empty_cpu: float
    ready_seconds: float  # spawn -> /livez
    first_reconcile: float | None  # spawn -> earliest ``starting`` state event
    online_seconds: float | None  # spawn -> all online (polled); None: timeout
    online_count: int
    worker_online: float | None  # spawn -> last account's first ``online`` event
    connect_cpu: dict[str, float]
    connections: int
    idle: Idle
    load: Load
    rss_after_load: float
    counters: tuple[int, int, int, int]  # received, sent, suppressed, reconnects
    states: dict[str, int]
    stop_seconds: float


class Baseline(NamedTuple):
    connected: int
    failed: int
    connect_seconds: float  # its own measure: first connect() to all connected
    ready_seconds: float  # spawn -> ready line
    connect_cpu: dict[str, float]
    idle: Idle
    load: Load


async def run_tgfleet(
    workdir: Path, world: World, world_path: Path, port: int, vault_key: str
) -> Tgfleet:
    data_dir = workdir / "data"
    settings = bench_settings(data_dir, vault_key)
    database = data_dir / "tgfleet.db"
    ids = await prepare(settings, world, world_path.parent)

    sandbox, control_url = await start_sandbox(world_path, port, workdir / "sandbox-1.log")
    try:
        # (a0) the worker with every account desired stopped: its RSS with 0 accounts.
        empty, _, _, _ = await start_worker(data_dir, vault_key, workdir / "worker-0.log")
        try:
            meter = Meter({"worker": empty.pid})
            await asyncio.sleep(EMPTY_WORKER_SETTLE)
            _, empty_cpu = meter.read()
            rss_empty = rss_mib(empty.pid)
        finally:
            await empty.stop()

        # (a) start every account; a fresh worker process brings them online.
        await start_accounts(settings, ids)
        worker, spawned, ready_seconds, _ = await start_worker(
            data_dir, vault_key, workdir / "worker.log"
        )
        try:
            pids = {"worker": worker.pid, "sandbox": sandbox.pid}
            online_count = 0

            async def all_online() -> bool:
                nonlocal online_count
                rows = await asyncio.to_thread(
                    query, database, "SELECT count(*) FROM account_status WHERE state = 'online'"
                )
                online_count = int(rows[0][0])
                return online_count >= ACCOUNTS

            ok = await poll(all_online, ONLINE_TIMEOUT - ready_seconds, 0.2)
            online_seconds = time.time() - spawned if ok else None
            connect_cpu = {
                "worker": cpu_seconds(worker.pid) / (time.time() - spawned) * 100,
            }
            (first_starting,), (last_online,) = await asyncio.to_thread(
                lambda: [
                    query(
                        database,
                        "SELECT min(at) FROM account_event WHERE kind = 'state' "
                        "AND state = 'starting'",
                    )[0],
                    query(
                        database,
                        "SELECT max(first) FROM (SELECT min(at) AS first FROM account_event "
                        "WHERE kind = 'state' AND state = 'online' GROUP BY account_id)",
                    )[0],
                ]
            )
            starting_unix, online_unix = unix_of(first_starting), unix_of(last_online)
            await poll(lambda: updates_running(control_url, ACCOUNTS, dialogs=True), 60.0, 0.5)
            stats = await sandbox_stats(control_url)
            connections = sum(stats["connections"].values())
            await asyncio.sleep(SETTLE_AFTER_ONLINE)

            idle = await measure_idle(pids, worker.pid)
            load = await drive_load(world, control_url, pids, "tgfleet")
            await asyncio.sleep(1.0)  # one status flush after the last reply
            rss_after_load = rss_mib(worker.pid)
            (counters,) = await asyncio.to_thread(
                query,
                database,
                "SELECT sum(messages_received), sum(replies_sent), sum(replies_suppressed), "
                "sum(reconnects) FROM account_status",
            )
            states = dict(
                await asyncio.to_thread(
                    query, database, "SELECT state, count(*) FROM account_status GROUP BY state"
                )
            )
        finally:
            stop_seconds = await worker.stop()
    finally:
        await sandbox.stop()
    return Tgfleet(
        rss_empty=rss_empty,
        empty_cpu=empty_cpu["worker"],
        ready_seconds=ready_seconds,
        first_reconcile=starting_unix - spawned if starting_unix else None,
        online_seconds=online_seconds,
        online_count=online_count,
        worker_online=online_unix - spawned if online_unix else None,
        connect_cpu=connect_cpu,
        connections=connections,
        idle=idle,
        load=load,
        rss_after_load=rss_after_load,
        counters=tuple(int(v or 0) for v in counters),  # type: ignore[arg-type]
        states={str(k): int(v) for k, v in states.items()},
        stop_seconds=stop_seconds,
    )


async def run_baseline(workdir: Path, world: World, world_path: Path, port: int) -> Baseline:
    sandbox, control_url = await start_sandbox(world_path, port, workdir / "sandbox-2.log")
    try:
        spawned = time.perf_counter()
        replier = await Proc.spawn(
            "baseline",
            [
                sys.executable,
                str(BASELINE_SCRIPT),
                str(world_path),
                str(port),
                str(BASELINE_CONNECT_CONCURRENCY),
            ],
            workdir / "baseline.log",
        )
        try:
            pids = {"baseline": replier.pid, "sandbox": sandbox.pid}
            match = await replier.wait_line(BASELINE_READY, ONLINE_TIMEOUT)
            ready_seconds = time.perf_counter() - spawned
            connect_cpu = {"baseline": cpu_seconds(replier.pid) / ready_seconds * 100}
            await poll(
                lambda: updates_running(control_url, int(match[1]), dialogs=False), 60.0, 0.5
            )
            await asyncio.sleep(SETTLE_AFTER_ONLINE)
            idle = await measure_idle(pids, replier.pid)
            load = await drive_load(world, control_url, pids, "baseline")
        finally:
            await replier.stop()
    finally:
        await sandbox.stop()
    return Baseline(
        connected=int(match[1]),
        failed=int(match[2]),
        connect_seconds=float(match[3]),
        ready_seconds=ready_seconds,
        connect_cpu=connect_cpu,
        idle=idle,
        load=load,
    )


# ----------------------------------------------------------------------------- report


def limiting(load: Load, replier: str) -> str:
    """Which process held the load back, from its CPU over the posting window."""
    cores = len(os.sched_getaffinity(0))
    total = sum(load.cpu.values())
    busiest = max(load.cpu, key=lambda name: load.cpu[name])
    saturated = total >= 90 * cores
    parts = [
        f"{name} {value:.0f}%"
        for name, value in sorted(load.cpu.items(), key=lambda item: -item[1])
    ]
    text = f"CPU over the posting window: {', '.join(parts)} of one core"
    text += f" ({total:.0f}% of the {cores * 100}% the {cores} cores offer)"
    if load.cpu[busiest] >= 85:
        text += f"; {busiest} was the limit (one Python core, its event loop, saturated)"
    elif saturated:
        text += "; the cores were saturated between the processes"
    else:
        text += f"; no process was saturated: {replier} kept up with the offered rate"
    return text


def report(tg: Tgfleet, base: Baseline, nofile: int) -> list[str]:
    cores = len(os.sched_getaffinity(0))
    n = ACCOUNTS
    lines = [
        f"### Fleet: {n:,} accounts in one worker vs a hand-written Telethon replier",
        "",
        (
            f"World: {n:,} fleet accounts and {n:,} basic groups, each with exactly one fleet "
            f"account and {MEMBERS_PER_GROUP} simulated members, so each member message has one "
            "fleet recipient. Sandbox in a subprocess (`tgfleet sandbox run --no-traffic`); "
            "`tgfleet run` (API + worker, SQLite, default worker settings: start gate "
            "50, reconcile 0.5 s, status flush 0.2 s) as a second subprocess; accounts imported "
            "through the vault and started through the services; playbook: one rule answering "
            "every message with `ack {{ message.text }}`, limits at the schema maxima, typing "
            f"0. Load: {RATE:,.0f} member messages/s for {LOAD_SECONDS:.0f} s through "
            f"`POST /groups/{{id}}/messages` ({POSTERS} keep-alive posters paced to a schedule, "
            "round-robin over the groups, unique texts); latency = the reply's `at` in the "
            "sandbox's `/stats` minus the wall time before the POST. Baseline: "
            "`bench/_baseline_replier.py`, one `TelegramClient` per account (StringSession, "
            "`flood_sleep_threshold=0`) and `events.NewMessage(incoming=True)` -> `event.reply`, "
            f"one process, against a fresh sandbox with the same world and traffic. {cores} cores "
            f"shared by all processes; Telethon backend: {backend()}; RLIMIT_NOFILE {nofile:,}. "
            "Online = `account_status.state` polled read-only in the SQLite file every 0.2 s."
        ),
        "",
        "| measure | value | target | verdict |",
        "|---|---|---|---|",
    ]
    online = tg.online_seconds
    reconcile = tg.first_reconcile
    split = ""
    if reconcile is not None and online is not None:
        split = (
            f" (spawn -> API up {tg.ready_seconds:.1f} s, -> first reconcile {reconcile:.1f} s; "
            f"first reconcile -> all online {online - reconcile:.1f} s"
        )
        if tg.worker_online is not None:
            split += f"; last `online` event stamped at {tg.worker_online:.1f} s"
        split += ")"
    lines.append(
        f"| (a) worker process start -> all {n:,} `online` | "
        + (
            f"{online:.1f} s{split}"
            if online is not None
            else f"TIMEOUT: {tg.online_count:,} online after {ONLINE_TIMEOUT:.0f} s"
        )
        + f" | < 60 s | {verdict(online is not None and online < 60)} |"
    )
    lines.append(
        f"| CPU from spawn to all online: worker | {tg.connect_cpu['worker']:.0f}% of one "
        f"core; sandbox connections at the end {tg.connections:,} | - | - |"
    )
    idle = tg.idle
    lines.append(
        f"| idle CPU over {idle.seconds:.0f} s, all online, no traffic: worker (sandbox) | "
        f"{idle.cpu['worker']:.1f}% ({idle.cpu['sandbox']:.1f}%) of one core | < 5 % | "
        f"{verdict(idle.cpu['worker'] < 5)} |"
    )
    per_account = (idle.rss - tg.rss_empty) * 1024 / n
    lines.append(
        f"| worker RSS: 0 accounts started / {n:,} online (after idle) / after the load | "
        f"{tg.rss_empty:.0f} / {idle.rss:.0f} / {tg.rss_after_load:.0f} MiB "
        f"({mb(idle.rss):.0f} MB with {n:,} online; {per_account:.0f} KiB per account) | "
        f"< 300 MB | {verdict(mb(max(idle.rss, tg.rss_after_load)) < 300)} |"
    )
    lines.append(
        f"| worker idle CPU with {n:,} accounts desired stopped (0 started) | "
        f"{tg.empty_cpu:.1f}% of one core | - | - |"
    )
    load, bl = tg.load, base.load
    lines.extend(load_rows(load, "worker"))
    ratio_p99 = load.latency(0.99) / bl.latency(0.99) if bl.latencies else float("nan")
    lines.append(
        f"| (b) latency p99 | {load.latency(0.99):,.0f} ms ({ratio_p99:.1f}x the baseline) | "
        f"< 100 ms | {verdict(load.latency(0.99) < 100)} |"
    )
    ratio = load.replies_per_second / bl.replies_per_second if bl.replies_per_second else 0.0
    lines.append(
        f"| (b) sustained replies/s (replies stamped inside the load window) | "
        f"{load.replies_per_second:,.1f}/s = {ratio:.2f}x the baseline's "
        f"{bl.replies_per_second:,.1f}/s | >= 0.8x baseline | {verdict(ratio >= 0.8)} |"
    )
    received, sent, suppressed, reconnects = tg.counters
    lines.append(
        f"| worker counters after the load: messages received / replies sent / suppressed / "
        f"reconnects; final states | {received:,} / {sent:,} / {suppressed:,} / "
        f"{reconnects:,}; {', '.join(f'{k} {v:,}' for k, v in sorted(tg.states.items()))} "
        "| - | - |"
    )
    lines.append(
        f"| worker shutdown (SIGTERM -> exit, {n:,} clients disconnecting) | "
        f"{tg.stop_seconds:.1f} s | - | - |"
    )
    lines += [
        "",
        "Baseline (same world, same traffic, fresh sandbox):",
        "",
        "| measure | tgfleet worker | baseline replier | ratio tgfleet / baseline |",
        "|---|---|---|---|",
    ]
    base_online = (
        f"{base.ready_seconds:.1f} s ({base.connected:,} connected, {base.failed} failed; "
        f"`connect()` only)"
    )
    tg_online = f"{online:.1f} s (connect + getUsers + getDialogs)" if online else "timeout"
    lines.append(
        f"| process start -> all connected / online | {tg_online} | {base_online} | "
        + (f"{online / base.ready_seconds:.1f}x |" if online else "- |")
    )
    lines.append(
        f"| RSS, all connected, after idle | {idle.rss:.0f} MiB | {base.idle.rss:.0f} MiB | "
        f"{idle.rss / base.idle.rss:.2f}x |"
    )
    lines.append(
        f"| idle CPU over {IDLE_SECONDS:.0f} s | {idle.cpu['worker']:.1f}% | "
        f"{base.idle.cpu['baseline']:.1f}% | - |"
    )
    for label, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        ours, theirs = load.latency(q), bl.latency(q)
        lines.append(
            f"| latency {label} | {ours:,.1f} ms | {theirs:,.1f} ms | {ours / theirs:.2f}x |"
        )
    lines.append(
        f"| sustained replies/s | {load.replies_per_second:,.1f} | "
        f"{bl.replies_per_second:,.1f} | **{ratio:.2f}x** |"
    )
    lines.append(
        f"| replies / posted (drained within {DRAIN_TIMEOUT:.0f} s) | "
        f"{load.replies:,} / {load.posted:,} | {bl.replies:,} / {bl.posted:,} | - |"
    )
    lines.append(
        f"| CPU during the load: replier / sandbox / bench poster | "
        f"{load.cpu['worker']:.0f}% / {load.cpu['sandbox']:.0f}% / {load.cpu['bench']:.0f}% | "
        f"{bl.cpu['baseline']:.0f}% / {bl.cpu['sandbox']:.0f}% / {bl.cpu['bench']:.0f}% | "
        f"{load.cpu['worker'] / max(bl.cpu['baseline'], 0.1):.2f}x (replier) |"
    )
    ours_cpu = cpu_per_reply(load, "worker")
    theirs_cpu = cpu_per_reply(bl, "baseline")
    lines.append(
        f"| replier CPU per reply (posting window) | {ours_cpu:.2f} ms | {theirs_cpu:.2f} ms | "
        f"{ours_cpu / theirs_cpu:.2f}x |"
    )
    lines += [
        "",
        (
            f"Ratios: throughput tgfleet/baseline **{ratio:.2f}x** (target >= 0.8x); latency "
            f"tgfleet/baseline p50 **{load.latency(0.5) / bl.latency(0.5):.2f}x**, p99 "
            f"**{ratio_p99:.2f}x**."
        ),
        "",
        (
            f"Notes. tgfleet: {limiting(load, 'the worker')}. Baseline: "
            f"{limiting(bl, 'the baseline')}. The offered load was {load.posted:,} posts in "
            f"{load.post_seconds:.1f} s ({load.posted / max(load.post_seconds, 1e-9):,.0f}/s; "
            f"worst POST start {load.max_lag * 1000:.0f} ms behind schedule; POST p50/p99 "
            f"{load.post_p50 * 1000:.1f}/{load.post_p99 * 1000:.1f} ms) for tgfleet and "
            f"{bl.posted:,} in {bl.post_seconds:.1f} s (worst lag {bl.max_lag * 1000:.0f} ms) "
            "for the baseline. All processes share "
            f"{cores} cores: the sandbox's and the poster's CPU is taken from the replier's."
        ),
    ]
    return lines


def load_rows(load: Load, name: str) -> list[str]:
    return [
        (
            f"| (b) offered load: posts / seconds / achieved rate | {load.posted:,} / "
            f"{load.post_seconds:.1f} s / {load.posted / max(load.post_seconds, 1e-9):,.1f}/s | "
            f"{RATE:,.0f}/s for >= 30 s | - |"
        ),
        (
            f"| (b) latency p50 / p95 / max | {load.latency(0.5):,.1f} / {load.latency(0.95):,.1f}"
            f" / {load.latency(1.0):,.1f} ms | - | - |"
        ),
        (
            f"| (b) replies received / posted; unmatched | {load.replies:,} / {load.posted:,}"
            f"{'' if load.drained else ' (NOT all within the drain timeout)'}; "
            f"{load.unmatched} | - | - |"
        ),
        (
            f"| (b) CPU during the load: {name} / sandbox / bench poster | "
            f"{load.cpu[name]:.0f}% / {load.cpu['sandbox']:.0f}% / {load.cpu['bench']:.0f}% "
            "of one core | - | - |"
        ),
    ]


def cpu_per_reply(load: Load, name: str) -> float:
    """Replier CPU milliseconds per reply stamped in the posting window."""
    return load.cpu[name] / 100 * load.window / max(load.in_window, 1) * 1000


# ----------------------------------------------------------------------------- main


async def run(workdir: Path) -> list[str]:
    nofile = raise_nofile(4 * ACCOUNTS + 2048)  # inherited by every subprocess
    port = free_port()
    world_dir = workdir / "world"
    world = await asyncio.to_thread(build_world, world_dir, port)
    world_path = world_dir / WORLD_FILE
    vault_key = base64.b64encode(os.urandom(32)).decode()
    print(f"fleet: {ACCOUNTS} accounts minted; tgfleet run ...", flush=True)
    tg = await run_tgfleet(workdir, world, world_path, port, vault_key)
    print("fleet: baseline ...", flush=True)
    base = await run_baseline(workdir, world, world_path, port)
    return report(tg, base, nofile)


def main() -> str:
    return "\n".join(run_in_tempdir(run, "tgfleet-bench-fleet-"))


if __name__ == "__main__":
    print(main())
