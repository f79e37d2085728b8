"""Multi-worker fleet benchmark (issue 13): three ``tgfleet worker`` processes on PostgreSQL
sharing 1,000 accounts under member traffic, side by side with one ``tgfleet run`` process
on SQLite, on the same world and the same traffic in the same run.

World: ``ACCOUNTS`` fleet accounts in basic groups of ``GROUP_SIZE`` fleet accounts
(``TGFLEET_BENCH_MULTI_GROUP_SIZE``, default 2: 500 groups for 1,000 accounts) and three
simulated members of their own, minted with ``mint(accounts=N, groups=0, members=...)``, the
groups added with ``dataclasses.replace`` and ``dump_world``. Each member message therefore
reaches ``GROUP_SIZE`` candidate accounts, which the lease split spreads over the workers.
One playbook (``seed_fleet``, every group enabled): one rule on the keyword ``help``
(member texts are ``q-<n> help``), ``responders: one``, no interval, 1,000 per
account-hour and group-hour, no typing, reply ``ok {{ sender.name }} q-<n>`` (the keyword
removed, so a reply can never trigger a rule).

PostgreSQL side: a scratch database on the local server (created, migrated, seeded, dropped
at the end); three ``python -m tgfleet worker --id wN`` subprocesses with the environment of
``tests/e2e/test_workers.py`` (``TGFLEET_WORKER_METRICS_PORT=0``, the port read from each
worker's "/metrics and probes on" line, ``TGFLEET_TELEGRAM_DCS=""``, WARNING logs), against
``tgfleet sandbox run --no-traffic``. The bench waits until every account is validly held
(``account_lease`` x ``worker``), ``online`` on its holder (``account_status``) with one
live sandbox connection, no lease has moved for ``STABLE_SECONDS`` (10 s) and every
client's update loop ran; then it closes its own connections to the database and idles
``SETTLE_SECONDS``. The workers' ``worker.self_fenced`` and ``worker.reaped`` log events
over the run are counted.
SQLite side: ``tgfleet run`` (API and worker in one process) over a migrated, seeded SQLite
file in a temp data dir, against a fresh sandbox with the same world; it waits until every
account is ``online`` (read-only polls of the file) and the update loops ran.

Each side then gets the same two windows of equal length ``WINDOW`` (``SECONDS`` + 15 s):
an idle window (no traffic), then the load window, which starts with ``RATE`` member
messages/s for ``SECONDS`` through ``POST /groups/{id}/messages`` (round-robin over the
groups, senders in turn) and ends ``WINDOW`` after its start, or ``TAIL`` after the last
reply if that is later. The poster is ``POSTER_PROCESSES`` subprocesses of this file,
open-loop: a clock queues every message at its due time and ``POSTER_CONNECTIONS`` raw
keep-alive HTTP/1.1 connections per process send them as they come, so a slow answer never
holds the clock back (waiting for a free connection shows as lag); the achieved rate, the
worst lag behind the schedule and the posters' own CPU are reported. The sandbox and the
posters run at nice -5 (the load generator shares the cores with the fleet and must not be
what limits; without CAP_SYS_NICE they stay at the default and the report says so).

Measured: latency = the first reply's ``at`` in ``GET /stats`` ``messages_sent`` minus the
wall time just before the POST of that message (replies matched to messages by
``reply_to_origin`` against the ``origin_id`` the POST answered, when the sandbox reports
them, else by the ``q-<n>`` token echoed in the reply); replies/s = replies stamped between
the first and the last POST over that time; replies per member message (0, 1, more than
1); replies whose replied-to message was sent by a fleet account (``reply_to_sender``);
database statements per reply: ``tgfleet_db_query_duration_seconds_count`` summed over every
operation label from each process's ``/metrics`` (the statements SQLAlchemy issued), plus on
PostgreSQL the reply gate's questions (asked through asyncpg, outside that count), and, on
PostgreSQL, ``xact_commit + xact_rollback`` of the scratch database in ``pg_stat_database``
(read from another database; a transaction or an autocommit statement counts one). For
each counter the idle window's rate times the load window's length is subtracted from the
load window's count, leaving the traffic's cost, which is divided by the replies sent. The
load window's ``TAIL`` (12 s) covers PostgreSQL's statistics flush (a backend that turns
idle reports within 10 s). The statements are also split by the metric's ``operation``;
the load window's reply admissions asked of PostgreSQL (``tgfleet_reply_gate_questions_total``
by verdict, ``tgfleet_reply_gate_failures_total``) and messages not answered
(``tgfleet_replies_suppressed_total`` by reason) are reported as counted.
CPU is ``/proc/<pid>/stat`` utime+stime over the posting time (``postgres``: the server
backends connected to the bench database); "anything else" is the machine's busy time
(``/proc/stat``) less every process named, i.e. whatever else ran on the host meanwhile.

Sizes via ``TGFLEET_BENCH_MULTI_ACCOUNTS`` (1000, a multiple of the group size),
``TGFLEET_BENCH_MULTI_RATE`` (200 messages/s), ``TGFLEET_BENCH_MULTI_SECONDS`` (30); the
server via ``TGFLEET_BENCH_MULTI_SERVER``
(``postgresql+asyncpg://postgres@127.0.0.1:5432/test``: where to CREATE DATABASE).
Targets: p99 < 100 ms on the PostgreSQL side; every member message answered exactly once and
no reply to a fleet account, on both sides; PostgreSQL's statements per reply at most 2 above
SQLite's. Run alone: ``.venv/bin/python bench/run.py fleet_multi``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import CLK_TCK, backend, cpu_seconds, own_cpu, pct, raise_nofile, run_in_tempdir
from fleet import (
    bench_settings,
    prepare,
    query,
    sandbox_stats,
    start_run,
    updates_running,
    worker_env,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.e2e.harness import FLEET_STATE
from tests.harness import PROBES, Proc, free_port, poll, scratch_database, seed_world, start_sandbox
from tests.harness import worker_env as workers_env

from tgfleet import migrations
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.db import create_engine
from tgfleet.sandbox.mint import WORLD_FILE, mint
from tgfleet.sandbox.world import BASIC_GROUP_IDS, World, WorldGroup
from tgfleet.sandbox.world_file import dump_world

ACCOUNTS = int(os.environ.get("TGFLEET_BENCH_MULTI_ACCOUNTS", "1000"))
RATE = float(os.environ.get("TGFLEET_BENCH_MULTI_RATE", "200"))
SECONDS = float(os.environ.get("TGFLEET_BENCH_MULTI_SECONDS", "30"))
SERVER = os.environ.get(
    "TGFLEET_BENCH_MULTI_SERVER", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# Fleet accounts per group: the candidates for each member message. Two is the smallest
# group where ``responders: one`` is decided across workers; with 5, each of the 200
# messages/s reaches 1,000 accounts a second, which saturates 2 cores on either database.
GROUP_SIZE = int(os.environ.get("TGFLEET_BENCH_MULTI_GROUP_SIZE", "2"))
MEMBERS_PER_GROUP = 3
WORKERS = ("w1", "w2", "w3")
POSTER_PROCESSES = 2
POSTER_CONNECTIONS = 128  # keep-alive connections per poster process
FAVOURED_NICE = -5  # the sandbox and the posters (favour())
KEEP_WARM_SECONDS = 20.0  # the control API keeps an idle connection 75 s
SETTLE_SECONDS = 5.0  # idle after all online, before the idle window
TAIL = 12.0  # after the last reply: PostgreSQL's idle statistics flush (10 s) and more
WINDOW = SECONDS + 15.0  # the idle window and (at least) the load window
SETTLE_TIMEOUT = 600.0
LEASE_EVENTS = ("worker.self_fenced", "worker.reaped")
GATE_UNAVAILABLE = re.compile(r"worker\.reply_gate_unavailable.*?error=(\w+)")
STABLE_SECONDS = 10.0  # no lease moved for this long (two renewals at the default TTL)
DRAIN_TIMEOUT = 60.0
POSTER_READY_TIMEOUT = 60.0
TARGET_P99_MS = 100.0
TARGET_EXTRA_STATEMENTS = 2.0
CONTEXT = AuditContext(actor="cli:bench")
POSTER_READY = "poster ready"
TOKEN = re.compile(r"\bq-(\d+)$")
STATEMENTS = "tgfleet_db_query_duration_seconds_count"
SUPPRESSED = "tgfleet_replies_suppressed_total"
GATE_QUESTIONS = "tgfleet_reply_gate_questions_total"
GATE_FAILURES = "tgfleet_reply_gate_failures_total"
THIS_FILE = Path(__file__).resolve()  # the posters run it with --post

PLAYBOOK = """\
version: 1
description: bench - one fleet account answers each help request
defaults:
  limits: {min_interval_seconds: 0, account_hourly: 1000, group_hourly: 1000, probability: 1.0}
  typing_seconds: 0
  responders: one
rules:
  - name: help
    when: {keywords: [help]}
    reply:
      templates: ["ok {{ sender.name }} {{ message.text | replace(' help', '') }}"]
"""

STATUS_TOTALS = (
    "SELECT sum(messages_received), sum(replies_sent), sum(replies_suppressed) FROM account_status"
)


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


# ----------------------------------------------------------------------------- world


def build_world(world_dir: Path, port: int) -> World:
    """ACCOUNTS accounts in basic groups of GROUP_SIZE, each with MEMBERS_PER_GROUP members."""
    if ACCOUNTS % GROUP_SIZE:
        msg = f"TGFLEET_BENCH_MULTI_ACCOUNTS must be a multiple of {GROUP_SIZE}, got {ACCOUNTS}"
        raise ValueError(msg)
    count = ACCOUNTS // GROUP_SIZE
    minted = mint(
        world_dir, accounts=ACCOUNTS, groups=0, members=MEMBERS_PER_GROUP * count, port=port
    )
    groups = []
    for index in range(count):
        accounts = minted.accounts[index * GROUP_SIZE : (index + 1) * GROUP_SIZE]
        members = tuple(
            m.id
            for m in minted.members[index * MEMBERS_PER_GROUP : (index + 1) * MEMBERS_PER_GROUP]
        )
        groups.append(
            WorldGroup(
                id=BASIC_GROUP_IDS.start + index,
                kind="basic",
                title=f"Bench group {index + 1}",
                members=(*(a.id for a in accounts), *members),
                admins=members[:1],
            )
        )
    world = dataclasses.replace(minted, groups=tuple(groups))
    dump_world(world, world_dir / WORLD_FILE)
    return world


def member_ids(world: World) -> list[tuple[int, list[int]]]:
    """(group id, its simulated members) per group, in order."""
    fleet = {a.id for a in world.accounts}
    return [(g.id, [m for m in g.members if m not in fleet]) for g in world.groups]


# ----------------------------------------------------------------------------- poster


@dataclass(frozen=True)
class PosterSpec:
    control_url: str
    groups: list[tuple[int, list[int]]]
    total: int
    rate: float
    index: int  # this poster sends the messages n with n % processes == index
    processes: int
    go: str  # a file holding the start (unix time); the poster waits for it
    out: str  # where the poster writes its results (JSON)


class KeepAlive:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for the
    control API's JSON answers (with Content-Length). A pooled general client (httpx) was
    tried first: with thousands of requests queued for its pool it spent more CPU than the
    sandbox and the workers together, and so starved them (the poster became the limit)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        async with asyncio.timeout(10):
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            await self.open()
        assert self.reader is not None
        assert self.writer is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        async with asyncio.timeout(60):
            raw = await self.reader.readuntil(b"\r\n\r\n")
            status = int(raw[9:12])
            length = 0
            for line in raw.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value)
            payload = await self.reader.readexactly(length)
        return status, payload


async def post_slice(spec: PosterSpec) -> None:
    """One poster process: wait for the go file, then post its share of the schedule: a
    clock queues each message at its due time, POSTER_CONNECTIONS keep-alive connections
    send them as they come (so a slow answer on one never holds the clock back; if all are
    busy the wait shows as lag). Writes per message (n, wall time just before the POST,
    origin id, POST seconds, lag behind schedule, status) and its own CPU."""
    url = httpx.URL(spec.control_url)
    host, port = url.host, url.port or 80
    connections = [KeepAlive(host, port) for _ in range(POSTER_CONNECTIONS)]
    await asyncio.gather(*(c.open() for c in connections))
    for connection in connections:  # warm: one request each before the clock starts
        await connection.request("GET", "/health")
    print(POSTER_READY, flush=True)
    go = Path(spec.go)
    pinged = time.monotonic()
    async with asyncio.timeout(WINDOW + POSTER_READY_TIMEOUT):
        while not await asyncio.to_thread(go.exists):
            if time.monotonic() - pinged > KEEP_WARM_SECONDS:  # within the server's keep-alive
                for connection in connections:
                    await connection.request("GET", "/health")
                pinged = time.monotonic()
            await asyncio.sleep(0.02)
    start = float(await asyncio.to_thread(go.read_text))
    begin = time.perf_counter() + (start - time.time())
    cpu_start = own_cpu()
    groups = spec.groups
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    rows: list[tuple[int, float, int | None, float, float, int]] = []

    async def sender(connection: KeepAlive) -> None:
        while (item := await queue.get()) is not None:
            n, due = item
            group_id, members = groups[n % len(groups)]
            member = members[(n // len(groups)) % len(members)]
            body = json.dumps({"sender": member, "text": f"q-{n} help"}).encode()
            started = time.perf_counter()
            sent = time.time()
            status, origin = -1, None
            try:
                status, payload = await connection.request(
                    "POST", f"/groups/{group_id}/messages", body
                )
                if status == 201:
                    origin = json.loads(payload).get("origin_id")
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
                await connection.close()  # reopened by the next request
            rows.append((n, sent, origin, time.perf_counter() - started, started - due, status))

    async with asyncio.TaskGroup() as tasks:
        for connection in connections:
            tasks.create_task(sender(connection))
        for n in range(spec.index, spec.total, spec.processes):
            due = begin + n / spec.rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((n, due))
        for _ in connections:
            queue.put_nowait(None)
    cpu = own_cpu() - cpu_start
    for connection in connections:
        await connection.close()
    await asyncio.to_thread(Path(spec.out).write_text, json.dumps({"rows": rows, "cpu": cpu}))


def poster_main(spec_path: str) -> None:
    raw = json.loads(Path(spec_path).read_text())
    raw["groups"] = [(g, list(m)) for g, m in raw["groups"]]
    asyncio.run(post_slice(PosterSpec(**raw)))


class Posters:
    """POSTER_PROCESSES subprocesses of this file, started and ready before the clock."""

    def __init__(self, workdir: Path, label: str, world: World, control_url: str) -> None:
        self.workdir = workdir
        self.label = label
        self.go = workdir / f"{label}-go"
        self.outs = [workdir / f"{label}-poster-{i}.json" for i in range(POSTER_PROCESSES)]
        self.specs = [
            PosterSpec(
                control_url=control_url,
                groups=member_ids(world),
                total=max(1, round(RATE * SECONDS)),
                rate=RATE,
                index=i,
                processes=POSTER_PROCESSES,
                go=str(self.go),
                out=str(self.outs[i]),
            )
            for i in range(POSTER_PROCESSES)
        ]
        self.children: list[Proc] = []
        self.favour_errors: set[str] = set()

    async def start(self) -> None:
        for i, spec in enumerate(self.specs):
            spec_path = self.workdir / f"{self.label}-poster-{i}-spec.json"
            await asyncio.to_thread(spec_path.write_text, json.dumps(dataclasses.asdict(spec)))
            self.children.append(
                await Proc.spawn(
                    f"poster-{i}",
                    [sys.executable, str(THIS_FILE), "--post", str(spec_path)],
                    self.workdir / f"{self.label}-poster-{i}.log",
                )
            )
            self.favour_errors |= favour(self.children[-1].pid)
        for child in self.children:
            await child.wait_line(re.compile(POSTER_READY), POSTER_READY_TIMEOUT)

    async def fire(self, at: float) -> None:
        await asyncio.to_thread(self.go.write_text, repr(at))

    async def wait(self) -> None:
        async with asyncio.timeout(SECONDS + 120):
            for child in self.children:
                code = await child.wait()
                if code != 0:
                    msg = f"{child.name} exited {code}:\n{child.tail()}"
                    raise RuntimeError(msg)

    async def stop(self) -> None:
        for child in self.children:
            await child.stop()

    def results(self) -> tuple[list[tuple[int, float, int | None, float, float, int]], float]:
        rows: list[tuple[int, float, int | None, float, float, int]] = []
        cpu = 0.0
        for out in self.outs:
            data = json.loads(out.read_text())
            rows += [(int(n), s, o, d, lag, c) for n, s, o, d, lag, c in data["rows"]]
            cpu += float(data["cpu"])
        return sorted(rows), cpu


# ----------------------------------------------------------------------------- measuring


def favour(pgid: int) -> set[str]:
    """Run a process group of the load generator (the sandbox, a poster) at FAVOURED_NICE,
    every thread of it: on a machine whose cores are shared with the fleet (and whatever
    else runs there), the simulated Telegram and members must not be what limits. The
    error's name when that is not allowed (it needs CAP_SYS_NICE)."""
    try:
        os.setpriority(os.PRIO_PGRP, pgid, FAVOURED_NICE)
    except OSError as exc:
        return {type(exc).__name__}
    return set()


def machine_busy() -> float:
    """CPU seconds every core of this machine spent busy since boot (``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


class Meter:
    """CPU % of one core of named processes over one interval; a process that vanished in
    between counts what it used up to its last reading."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.wall = time.perf_counter()
        self.start = {name: [self._cpu(p) for p in group] for name, group in pids.items()}
        self.own = own_cpu()
        self.busy = machine_busy()

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            return cpu_seconds(pid)
        except OSError:
            return None

    def read(self) -> tuple[float, dict[str, float]]:
        wall = time.perf_counter() - self.wall
        cpu: dict[str, float] = {}
        for name, group in self.pids.items():
            used = 0.0
            for pid, before in zip(group, self.start[name], strict=True):
                after = self._cpu(pid)
                if before is not None and after is not None:
                    used += after - before
            cpu[name] = used / wall * 100
        cpu["bench"] = (own_cpu() - self.own) / wall * 100
        cpu["machine"] = (machine_busy() - self.busy) / wall * 100
        return wall, cpu


@dataclass(frozen=True)
class Cost:
    """A counter's traffic cost: the load window's count less the idle window's rate."""

    idle_count: float
    idle_seconds: float
    load_count: float
    load_seconds: float

    @property
    def idle_rate(self) -> float:
        return self.idle_count / self.idle_seconds if self.idle_seconds > 0 else 0.0

    @property
    def traffic(self) -> float:
        return self.load_count - self.idle_rate * self.load_seconds

    def per(self, replies: int) -> float:
        return self.traffic / replies if replies else float("nan")


@dataclass
class Load:
    posted: int  # POSTs answered 201
    failed_posts: int
    post_seconds: float  # first to last POST start (wall)
    max_lag: float
    post_p50: float
    post_p99: float
    poster_cpu: float  # % of one core, all poster processes, over their posting
    latencies: list[float]  # seconds, first reply of each answered message
    replies: int  # every message a fleet account sent
    answers: Counter[str]  # "0" / "1" / ">1" replies per member message
    to_fleet: int | None  # replies to a fleet account's message (None: not reported)
    unmatched: int
    disagree: int  # origin match and echoed token named different messages
    matched_by: str
    in_window: int
    drained: bool
    drain_seconds: float
    cpu: dict[str, float]  # over the posting time

    @property
    def replies_per_second(self) -> float:
        return self.in_window / self.post_seconds if self.post_seconds > 0 else 0.0

    def latency(self, q: float) -> float:
        return pct(self.latencies, q) * 1000 if self.latencies else float("nan")


@dataclass
class Side:
    name: str
    processes: list[str]
    settle_seconds: float = 0.0
    shares: dict[str, int] = field(default_factory=dict)
    spread: dict[int, int] = field(default_factory=dict)  # workers per group -> groups
    idle_cpu: dict[str, float] = field(default_factory=dict)
    load: Load | None = None
    costs: dict[str, Cost] = field(default_factory=dict)  # counter -> its cost

    @property
    def statements(self) -> Cost | None:
        return self.costs.get("statements")

    @property
    def transactions(self) -> Cost | None:
        return self.costs.get("transactions")

    status: tuple[int, int, int] = (0, 0, 0)  # received, sent, suppressed (account_status)
    lease_events: Counter[str] = field(default_factory=Counter)  # log event -> count
    lease_events_before: Counter[str] = field(default_factory=Counter)  # ... at the idle window
    gate_errors: set[str] = field(default_factory=set)  # why the reply gate could not ask
    favour_errors: set[str] = field(default_factory=set)  # why a renice failed


Counters = Callable[[], Awaitable[dict[str, float]]]


async def scrape(http: httpx.AsyncClient, urls: list[str]) -> dict[str, float]:
    """Counters so far, summed over the processes' /metrics: ``statements`` (SQLAlchemy's,
    all operations) and ``op:<operation>``, ``suppressed:<reason>`` (messages not
    answered), ``gate:<verdict>`` (reply admissions asked of PostgreSQL) and
    ``gate:failed``."""
    counts: dict[str, float] = {}

    def add(key: str, value: float) -> None:
        counts[key] = counts.get(key, 0.0) + value

    for url in urls:
        response = await http.get(f"{url}/metrics")
        response.raise_for_status()
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == STATEMENTS:
                    add("statements", sample.value)
                    add(f"op:{labels.get('operation', '?')}", sample.value)
                elif sample.name == SUPPRESSED:
                    add(f"suppressed:{labels.get('reason', '?')}", sample.value)
                elif sample.name == GATE_QUESTIONS:
                    add(f"gate:{labels.get('verdict', '?')}", sample.value)
                elif sample.name == GATE_FAILURES:
                    add("gate:failed", sample.value)
    return counts


@dataclass
class Matched:
    replies: dict[int, list[float]]  # message number -> `at` of each reply to it
    unmatched: int  # replies that answer no posted member message
    to_fleet: int | None  # replies to a fleet account's message (None: not reported)
    disagree: int  # matched by origin to another message than the echoed token says
    method: str


def match_replies(
    stats: dict[str, Any],
    rows: list[tuple[int, float, int | None, float, float, int]],
    fleet_ids: set[int],
) -> Matched:
    """Replies to posted messages: by ``reply_to_origin`` when every POST answered its
    ``origin_id``, else by the ``q-<n>`` token the template echoes."""
    origin_of = {origin: n for n, _, origin, _, _, status in rows if status == 201 and origin}
    by_origin = bool(origin_of) and len(origin_of) == sum(1 for r in rows if r[5] == 201)
    method = "`reply_to_origin` = the POST's `origin_id`" if by_origin else "the echoed `q-<n>`"
    matched = Matched({}, 0, 0, 0, method)
    for sent in stats["messages_sent"].values():
        for message in sent:
            if "reply_to_sender" not in message:
                matched.to_fleet = None
            elif matched.to_fleet is not None and message["reply_to_sender"] in fleet_ids:
                matched.to_fleet += 1
            token = TOKEN.search(message["text"])
            n: int | None = int(token[1]) if token else None
            if by_origin and "reply_to_origin" in message:
                by_reply = origin_of.get(message["reply_to_origin"])
                matched.disagree += n is not None and by_reply != n
                n = by_reply
            if n is None:
                matched.unmatched += 1
            else:
                matched.replies.setdefault(n, []).append(float(message["at"]))
    return matched


async def measure(
    side: Side,
    workdir: Path,
    world: World,
    control_url: str,
    pids: dict[str, list[int]],
    counters: Counters,
) -> None:
    """The idle window, then the load window: counters, CPU, latency, replies."""
    posters = Posters(workdir, side.name.split()[0].lower(), world, control_url)
    fleet_ids = {a.id for a in world.accounts}
    try:
        await posters.start()
        side.favour_errors |= posters.favour_errors
        c0, t0 = await counters(), time.monotonic()
        idle_meter = Meter(pids)
        await asyncio.sleep(WINDOW)
        _, side.idle_cpu = idle_meter.read()
        c1, t1 = await counters(), time.monotonic()

        await posters.fire(time.time() + 0.2)
        meter = Meter(pids)
        await posters.wait()
        _, cpu = meter.read()
        rows, poster_cpu = await asyncio.to_thread(posters.results)
    finally:
        await posters.stop()
    ok = [r for r in rows if r[5] == 201]
    sent_at = {r[0]: r[1] for r in ok}
    first = min(sent_at.values())
    last = max(sent_at.values())
    drained_at = time.monotonic()

    async def all_answered() -> bool:
        matched = match_replies(await sandbox_stats(control_url), rows, fleet_ids)
        return all(n in matched.replies for n in sent_at)

    drained = await poll(all_answered, DRAIN_TIMEOUT, 1.0)
    drain_seconds = time.monotonic() - drained_at
    end = max(t1 + WINDOW, time.monotonic() + TAIL)
    await asyncio.sleep(end - time.monotonic())
    c3, t3 = await counters(), time.monotonic()
    stats = await sandbox_stats(control_url)
    matched = match_replies(stats, rows, fleet_ids)
    replies = matched.replies

    answers: Counter[str] = Counter()
    for n in sent_at:
        got = len(replies.get(n, ()))
        answers["0" if got == 0 else "1" if got == 1 else ">1"] += 1
    every = [at for n, times in replies.items() if n in sent_at for at in times]
    post_times = [r[3] for r in ok]
    side.load = Load(
        posted=len(ok),
        failed_posts=len(rows) - len(ok),
        post_seconds=last - first,
        max_lag=max(r[4] for r in rows),
        post_p50=pct(post_times, 0.5),
        post_p99=pct(post_times, 0.99),
        poster_cpu=poster_cpu / max(last - first, 1e-9) * 100,
        latencies=[min(replies[n]) - sent_at[n] for n in sent_at if n in replies],
        replies=sum(len(v) for v in stats["messages_sent"].values()),
        answers=answers,
        to_fleet=matched.to_fleet,
        unmatched=matched.unmatched,
        disagree=matched.disagree,
        matched_by=matched.method,
        in_window=sum(1 for at in every if first <= at <= last),
        drained=drained,
        drain_seconds=drain_seconds,
        cpu=cpu,
    )
    side.costs = {
        key: Cost(c1.get(key, 0.0) - c0.get(key, 0.0), t1 - t0, c3[key] - c1.get(key, 0.0), t3 - t1)
        for key in c3
    }


# ----------------------------------------------------------------------------- PostgreSQL


async def pg_scalar(admin: AsyncEngine, sql: str, name: str) -> list[Any]:
    """One autocommit query on the admin connection (not the bench database): a fresh
    statistics snapshot each time."""
    async with admin.connect() as raw:
        conn = await raw.execution_options(isolation_level="AUTOCOMMIT")
        return list((await conn.execute(text(sql), {"name": name})).scalars())


async def run_postgres(workdir: Path, world: World, port: int, vault_key: str) -> Side:
    side = Side("PostgreSQL (3 workers)", list(WORKERS))
    world_dir = workdir / "world"
    data_dir = workdir / "pg-data"
    data_dir.mkdir(mode=0o700)
    name = f"tgfleet_bench_fleet_multi_{os.getpid()}"
    admin = create_engine(SERVER, pool_size=1, max_overflow=0)
    try:
        async with scratch_database(SERVER, name) as url:
            await asyncio.to_thread(migrations.upgrade, url)
            settings = bench_settings(data_dir, vault_key, url)
            seeded = await seed_world(
                settings, CONTEXT, world, world_dir, playbooks={"bench": PLAYBOOK}
            )
            env = workers_env(url, vault_key, data_dir)
            sandbox, control_url = await start_sandbox(
                world_dir / WORLD_FILE, port, workdir / "pg-sandbox.log"
            )
            side.favour_errors |= favour(sandbox.pid)
            workers: dict[str, Proc] = {}
            try:
                started = time.monotonic()
                for worker in WORKERS:
                    workers[worker] = await Proc.spawn(
                        worker,
                        [sys.executable, "-m", "tgfleet", "worker", "--id", worker],
                        workdir / f"pg-{worker}.log",
                        env,
                    )
                urls = [
                    f"http://127.0.0.1:{(await child.wait_line(PROBES, 120))[1]}"
                    for child in workers.values()
                ]
                await pg_settle(side, url, world, control_url, seeded.account_ids, workers)
                await poll(lambda: updates_running(control_url, ACCOUNTS, dialogs=True), 60, 0.5)
                side.settle_seconds = time.monotonic() - started
                print(f"fleet_multi: PostgreSQL settled: {side.shares}", flush=True)
                await asyncio.sleep(SETTLE_SECONDS)
                backends = [
                    int(p)
                    for p in await pg_scalar(
                        admin, "SELECT pid FROM pg_stat_activity WHERE datname = :name", name
                    )
                ]
                pids = {w: [c.pid] for w, c in workers.items()}
                pids |= {"sandbox": [sandbox.pid], "postgres": backends}

                async with httpx.AsyncClient(timeout=30.0) as http:

                    async def counters() -> dict[str, float]:
                        (xacts,) = await pg_scalar(
                            admin,
                            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                            "WHERE datname = :name",
                            name,
                        )
                        return {
                            **await scrape(http, urls),
                            "transactions": float(xacts),
                        }

                    for child in workers.values():
                        for event in LEASE_EVENTS:
                            side.lease_events_before[event] += child.output().count(event)
                    await measure(side, workdir, world, control_url, pids, counters)
                side.status = await pg_status(url)
            finally:
                for child in workers.values():
                    await child.stop()
                    output = child.output()
                    for event in LEASE_EVENTS:
                        side.lease_events[event] += output.count(event)
                    side.gate_errors.update(GATE_UNAVAILABLE.findall(output))
                await sandbox.stop()
    finally:
        await admin.dispose()
    return side


async def pg_settle(
    side: Side,
    url: str,
    world: World,
    control_url: str,
    account_ids: dict[str, uuid.UUID],
    workers: dict[str, Proc],
) -> None:
    """Until every account is served once on its valid holder and no lease has moved for
    STABLE_SECONDS (the workers' balance may rest a few percent off a third: a worker
    below its share claims only free accounts, and the others hand over only what exceeds
    their share by more than a 5 % slack)."""
    usernames = {v: k for k, v in account_ids.items()}
    engine = create_engine(url, pool_size=1, max_overflow=0)
    holder: dict[uuid.UUID, str | None] = {}
    stable_since = time.monotonic()
    unserved = ACCOUNTS
    try:

        async def settled() -> bool:
            nonlocal holder, stable_since, unserved
            for child in workers.values():
                if not child.alive():
                    msg = f"{child.name} exited:\n{child.tail()}"
                    raise RuntimeError(msg)
            async with engine.connect() as connection:
                rows = (await connection.execute(FLEET_STATE)).all()
            connections = (await sandbox_stats(control_url))["connections"]
            unserved = ACCOUNTS - sum(
                1
                for r in rows
                if r[1] is not None and r[2] == r[1] and connections.get(usernames[r[0]], 0) == 1
            )
            now_holding = {r[0]: r[1] for r in rows}
            if now_holding != holder or unserved:
                holder, stable_since = now_holding, time.monotonic()
            side.shares = dict(sorted(Counter(w for w in holder.values() if w).items()))
            return not unserved and time.monotonic() - stable_since >= STABLE_SECONDS

        if not await poll(settled, SETTLE_TIMEOUT, 0.5):
            logs = "\n".join(f"[{n}] {c.tail(5)}" for n, c in workers.items())
            msg = (
                f"not settled within {SETTLE_TIMEOUT:.0f} s: held {side.shares}, "
                f"{unserved} accounts not served\n{logs}"
            )
            raise RuntimeError(msg)
    finally:
        await engine.dispose()
    by_user = {a.id: account_ids[a.username] for a in world.accounts}
    spread: Counter[int] = Counter()
    for group in world.groups:
        spread[len({holder.get(by_user[m]) for m in group.members if m in by_user})] += 1
    side.spread = dict(sorted(spread.items()))


async def pg_status(url: str) -> tuple[int, int, int]:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(text(STATUS_TOTALS))).one()
    finally:
        await engine.dispose()
    return (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))


# ----------------------------------------------------------------------------- SQLite


async def run_sqlite(workdir: Path, world: World, port: int, vault_key: str) -> Side:
    side = Side("SQLite (1 process)", ["run"])
    world_dir = workdir / "world"
    data_dir = workdir / "sqlite-data"
    settings = bench_settings(data_dir, vault_key)
    database = data_dir / "tgfleet.db"
    await prepare(settings, world, world_dir, playbook=PLAYBOOK, start=True)
    # fleet.py's environment, and no probe leaves loopback, as on the PostgreSQL side
    env = worker_env(data_dir, vault_key) | {"TGFLEET_TELEGRAM_DCS": ""}
    sandbox, control_url = await start_sandbox(
        world_dir / WORLD_FILE, port, workdir / "sqlite-sandbox.log"
    )
    side.favour_errors |= favour(sandbox.pid)
    try:
        started = time.monotonic()
        run, url, _ = await start_run("run", workdir / "sqlite-run.log", env)
        try:

            async def all_online() -> bool:
                if not run.alive():
                    msg = f"tgfleet run exited:\n{run.tail()}"
                    raise RuntimeError(msg)
                rows = await asyncio.to_thread(
                    query, database, "SELECT count(*) FROM account_status WHERE state = 'online'"
                )
                return int(rows[0][0]) >= ACCOUNTS

            if not await poll(all_online, SETTLE_TIMEOUT, 0.5):
                msg = f"not all online within {SETTLE_TIMEOUT:.0f} s:\n{run.tail()}"
                raise RuntimeError(msg)
            await poll(lambda: updates_running(control_url, ACCOUNTS, dialogs=True), 60, 0.5)
            side.settle_seconds = time.monotonic() - started
            side.shares = {"run": ACCOUNTS}
            side.spread = {1: len(world.groups)}
            print("fleet_multi: SQLite all online", flush=True)
            await asyncio.sleep(SETTLE_SECONDS)
            pids = {"run": [run.pid], "sandbox": [sandbox.pid]}
            async with httpx.AsyncClient(timeout=30.0) as http:

                async def counters() -> dict[str, float]:
                    return await scrape(http, [url])

                await measure(side, workdir, world, control_url, pids, counters)
            await asyncio.sleep(1.0)  # one status flush more
            (row,) = await asyncio.to_thread(query, database, STATUS_TOTALS)
            side.status = (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0))
        finally:
            await run.stop()
    finally:
        await sandbox.stop()
    return side


# ----------------------------------------------------------------------------- report


def favoured(pg: Side, lite: Side) -> str:
    errors = pg.favour_errors | lite.favour_errors
    if errors:
        why = ", ".join(sorted(errors))
        return f"The sandbox and the posters ran at the default priority (renice: {why})."
    return (
        f"The sandbox and the posters ran at nice {FAVOURED_NICE} (the load generator must not "
        "be what limits; the tgfleet processes and PostgreSQL at the default 0)."
    )


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"


def row(measure: str, pg: str, lite: str, target: str = "-", judged: bool | None = None) -> str:
    return (
        f"| {measure} | {pg} | {lite} | {target} | {'-' if judged is None else verdict(judged)} |"
    )


def achieved(load: Load) -> float:
    return load.posted / max(load.post_seconds, 1e-9)


def exactly_one(load: Load) -> bool:
    return load.answers["1"] == load.posted and load.failed_posts == 0


def shares_cell(side: Side) -> str:
    held = " / ".join(f"{w} {n:,}" for w, n in side.shares.items())
    spread = ", ".join(f"{k}: {v:,}" for k, v in side.spread.items())
    return f"{held}; groups by processes holding their {GROUP_SIZE} accounts: {spread}"


def offered_cell(load: Load) -> str:
    failed = f" ({load.failed_posts:,} POSTs failed)" if load.failed_posts else ""
    return (
        f"{load.posted:,} in {load.post_seconds:.1f} s = **{achieved(load):,.1f}/s**{failed}; "
        f"worst lag {load.max_lag * 1000:.0f} ms; POST p50/p99 {load.post_p50 * 1000:.1f}/"
        f"{load.post_p99 * 1000:.1f} ms; posters' CPU {load.poster_cpu:.0f}% of one core"
    )


def latency_cell(load: Load) -> str:
    return " / ".join(f"{load.latency(q):,.1f}" for q in (0.5, 0.95, 0.99, 1.0)) + " ms"


def answers_cell(load: Load) -> str:
    cell = f"{load.answers['0']:,} / {load.answers['1']:,} / {load.answers['>1']:,}"
    if not load.drained:
        cell += f" (not all answered within {DRAIN_TIMEOUT:.0f} s)"
    if load.unmatched:
        cell += f"; {load.unmatched:,} replies matched no member message"
    if load.disagree:
        cell += f"; {load.disagree:,} replies whose `reply_to_origin` and text disagree"
    return cell


def to_fleet_cell(load: Load) -> str:
    return (
        "n/a (no `reply_to_sender` in `/stats`)" if load.to_fleet is None else f"{load.to_fleet:,}"
    )


def cost_cell(cost: Cost | None, replies: int) -> str:
    if cost is None:
        return "-"
    return (
        f"idle {cost.idle_rate:,.1f}/s; load window {cost.load_count:,.0f} in "
        f"{cost.load_seconds:.0f} s; traffic {cost.traffic:,.0f} = "
        f"**{cost.per(replies):.2f} per reply**"
    )


def operations_cell(costs: dict[str, Cost], replies: int) -> str:
    return ", ".join(
        f"{key.removeprefix('op:')} {cost.per(replies):.2f}"
        for key, cost in sorted(costs.items())
        if key.startswith("op:")
    )


def gate_errors_cell(errors: set[str]) -> str:
    if not errors:
        return ""
    return f" (`worker.reply_gate_unavailable` logged with {', '.join(sorted(errors))})"


def counted_cell(costs: dict[str, Cost], prefix: str) -> str:
    """The load window's count of each counter under ``prefix`` (none of them moves idle)."""
    cells = [
        f"{key.removeprefix(prefix)} {cost.load_count:,.0f}"
        for key, cost in sorted(costs.items())
        if key.startswith(prefix) and cost.load_count
    ]
    return ", ".join(cells) or "none"


def cpu_cell(side: Side, cpu: dict[str, float], posters: float = 0.0, digits: int = 0) -> str:
    """Each process, then whatever else ran on the machine (other processes, the rest of
    the PostgreSQL server), out of the machine's busy time."""
    names = [n for n in [*side.processes, "sandbox", "postgres", "bench"] if n in cpu]
    cell = " / ".join(f"{n} {cpu[n]:.{digits}f}%" for n in names)
    if posters:
        cell += f" / posters {posters:.{digits}f}%"
    machine = cpu["machine"]
    other = max(machine - sum(cpu[n] for n in names) - posters, 0.0)
    return f"{cell}; anything else {other:.{digits}f}% (machine {machine:.{digits}f}%)"


def report(pg: Side, lite: Side, nofile: int) -> list[str]:
    assert pg.load is not None
    assert lite.load is not None
    assert pg.statements is not None
    assert lite.statements is not None
    pl, ll = pg.load, lite.load
    # The reply gate asks through asyncpg, outside SQLAlchemy's count: its questions are
    # statements too (one round trip each).
    gate_per = sum(
        cost.per(pl.replies)
        for key, cost in pg.costs.items()
        if key.startswith("gate:") and key != "gate:failed"
    )
    pg_per = pg.statements.per(pl.replies) + gate_per
    lite_per = lite.statements.per(ll.replies)
    extra = pg_per - lite_per
    p99 = pl.latency(0.99)
    pg_xacts = pg.transactions.per(pl.replies) if pg.transactions else float("nan")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    checks = {
        "p99": p99 < TARGET_P99_MS,
        "extra": extra <= TARGET_EXTRA_STATEMENTS,
        "pg_one": exactly_one(pl),
        "lite_one": exactly_one(ll),
        "pg_fleet": pl.to_fleet == 0,
        "lite_fleet": ll.to_fleet == 0,
    }
    return [
        (
            f"### Fleet on 3 PostgreSQL workers vs 1 SQLite process: {ACCOUNTS:,} accounts, "
            f"{RATE:,.0f} member messages/s"
        ),
        "",
        (
            f"Measured {stamp} on {machine()}, every process sharing these cores; Telethon "
            f"backend {backend()}; RLIMIT_NOFILE {nofile:,}. World: {ACCOUNTS:,} fleet accounts "
            f"in {ACCOUNTS // GROUP_SIZE:,} basic groups of {GROUP_SIZE} fleet accounts and "
            f"{MEMBERS_PER_GROUP} simulated members each, served by `tgfleet sandbox run "
            "--no-traffic` (a fresh one per side). Playbook: one rule on the keyword `help`, "
            "`responders: one`, no interval, 1,000 per account-hour and group-hour, no typing, "
            "reply `ok {{ sender.name }} q-<n>`. PostgreSQL: three `tgfleet worker` processes "
            "on a scratch database of the local server, measured once every account was "
            "validly held, online on its holder with one sandbox connection and no lease had "
            f"moved for {STABLE_SECONDS:.0f} s; SQLite: `tgfleet run` (API and worker in one "
            "process). Per side, after "
            f"{SETTLE_SECONDS:.0f} s of quiet: an idle window of {WINDOW:.0f} s, then a load "
            f"window (at least {WINDOW:.0f} s, and until {TAIL:.0f} s after the last reply) "
            f"starting with {RATE:,.0f} messages/s for {SECONDS:.0f} s (`POST "
            "/groups/{id}/messages`, texts `q-<n> help`, round-robin over the groups; "
            f"{POSTER_PROCESSES} open-loop poster processes, {POSTER_CONNECTIONS} keep-alive "
            "connections each). Latency = the first reply's `at` in the sandbox's `/stats` "
            f"minus the wall time just before the POST; replies matched by {pl.matched_by}. "
            "Database statements: `tgfleet_db_query_duration_seconds_count` (all operations) "
            "from each process's `/metrics`, and on PostgreSQL `xact_commit + xact_rollback` of "
            "the database in `pg_stat_database`; the idle window's rate times the load "
            "window's length is subtracted from the load window's count and the rest divided "
            "by the replies sent. CPU in % of one core (`postgres`: the server backends of "
            "the bench database). " + favoured(pg, lite)
        ),
        "",
        f"| measure | {pg.name} | {lite.name} | target | verdict |",
        "|---|---|---|---|---|",
        row("accounts held per process", shares_cell(pg), shares_cell(lite)),
        row(
            f"process start -> all online (PostgreSQL: and no lease moved for "
            f"{STABLE_SECONDS:.0f} s)",
            f"{pg.settle_seconds:.1f} s",
            f"{lite.settle_seconds:.1f} s",
        ),
        row(
            "lease log events (`worker.self_fenced` / `worker.reaped`) from start to stop",
            " / ".join(f"{pg.lease_events[e]:,}" for e in LEASE_EVENTS)
            + " (of which during the measured windows: "
            + " / ".join(
                f"{pg.lease_events[e] - pg.lease_events_before[e]:,}" for e in LEASE_EVENTS
            )
            + ")",
            "-",
        ),
        row(
            "offered load: posts, achieved rate, schedule lag, POST time, poster CPU",
            offered_cell(pl),
            offered_cell(ll),
            f">= 97 % of {RATE:,.0f}/s",
            achieved(pl) >= 0.97 * RATE and achieved(ll) >= 0.97 * RATE,
        ),
        row("latency p50 / p95 / p99 / max", latency_cell(pl), latency_cell(ll)),
        row(
            "latency p99",
            f"**{p99:,.1f} ms**",
            f"{ll.latency(0.99):,.1f} ms",
            f"PostgreSQL < {TARGET_P99_MS:.0f} ms",
            checks["p99"],
        ),
        row(
            "replies/s (stamped between the first and the last POST)",
            f"{pl.replies_per_second:,.1f}/s",
            f"{ll.replies_per_second:,.1f}/s",
        ),
        row(
            "replies sent / member messages posted",
            f"{pl.replies:,} / {pl.posted:,}",
            f"{ll.replies:,} / {ll.posted:,}",
        ),
        row(
            "member messages that got 0 / 1 / >1 replies",
            answers_cell(pl),
            answers_cell(ll),
            "all exactly 1",
            checks["pg_one"] and checks["lite_one"],
        ),
        row(
            "replies to a fleet account's message",
            to_fleet_cell(pl),
            to_fleet_cell(ll),
            "0",
            checks["pg_fleet"] and checks["lite_fleet"],
        ),
        row(
            "SQLAlchemy statements (`/metrics`, every process)",
            cost_cell(pg.statements, pl.replies),
            cost_cell(lite.statements, ll.replies),
        ),
        row(
            "of these per reply, by operation",
            operations_cell(pg.costs, pl.replies),
            operations_cell(lite.costs, ll.replies),
        ),
        row("transactions (`pg_stat_database`)", cost_cell(pg.transactions, pl.replies), "-"),
        row(
            "statements per reply (SQLAlchemy + reply gate), PostgreSQL - SQLite",
            f"**{extra:+.2f}** ({pg_per:.2f}, of which {gate_per:.2f} gate questions, "
            f"- {lite_per:.2f})",
            "",
            f"<= {TARGET_EXTRA_STATEMENTS:g}",
            checks["extra"],
        ),
        row(
            "reply admissions asked of PostgreSQL in the load window, by verdict",
            counted_cell(pg.costs, "gate:") + gate_errors_cell(pg.gate_errors),
            counted_cell(lite.costs, "gate:"),
        ),
        row(
            "messages not answered in the load window, by reason (every account's view)",
            counted_cell(pg.costs, "suppressed:"),
            counted_cell(lite.costs, "suppressed:"),
        ),
        row(
            "CPU while posting",
            cpu_cell(pg, pl.cpu, pl.poster_cpu),
            cpu_cell(lite, ll.cpu, ll.poster_cpu),
        ),
        row(
            "CPU over the idle window",
            cpu_cell(pg, pg.idle_cpu, digits=1),
            cpu_cell(lite, lite.idle_cpu, digits=1),
        ),
        row(
            "`account_status` after the load: received / replies sent / suppressed",
            " / ".join(f"{v:,}" for v in pg.status),
            " / ".join(f"{v:,}" for v in lite.status),
        ),
        "",
        f"- p99 < {TARGET_P99_MS:.0f} ms on PostgreSQL: {verdict(checks['p99'])} ({p99:,.1f} ms)",
        (
            f"- at most {TARGET_EXTRA_STATEMENTS:g} extra database statements per reply on "
            f"PostgreSQL: {verdict(checks['extra'])} ({extra:+.2f}: {pg_per:.2f} vs "
            f"{lite_per:.2f}; PostgreSQL also counted {pg_xacts:.2f} transactions per reply)"
        ),
        (
            f"- exactly one reply per member message: PostgreSQL {verdict(checks['pg_one'])}, "
            f"SQLite {verdict(checks['lite_one'])}"
        ),
        (
            f"- no reply to a fleet account: PostgreSQL {verdict(checks['pg_fleet'])}, "
            f"SQLite {verdict(checks['lite_fleet'])}"
        ),
        "",
        f"Verdict: {verdict(all(checks.values()))}.",
        *notes(pg, lite),
    ]


def notes(pg: Side, lite: Side) -> list[str]:
    """What the numbers above depend on, said when it happened in this run."""
    said = []
    cores = len(os.sched_getaffinity(0))
    for side in (pg, lite):
        assert side.load is not None
        machine = side.load.cpu["machine"]
        if machine >= 90 * cores:
            other = (
                machine
                - sum(v for k, v in side.load.cpu.items() if k != "machine")
                - side.load.poster_cpu
            )
            said.append(
                f"{side.name}: the machine's {cores} cores were saturated while posting "
                f"({machine:.0f}% busy, {max(other, 0):.0f}% of it outside this benchmark), so "
                "its latencies include waiting for a CPU."
            )
        cost = side.statements
        if cost is not None and cost.traffic <= 0.1 * cost.load_count:
            predicted = cost.idle_rate * cost.load_seconds
            said.append(
                f"{side.name}: the load window counted about as many statements as the idle "
                f"rate predicts ({cost.load_count:,.0f} vs {predicted:,.0f}): its statements "
                "follow time (batched periodic flushes and chores), not "
                "replies, and a busy process runs its periodic work less often, so the "
                "per-reply figure is close to 0 or slightly negative."
            )
    return ["", "Notes: " + " ".join(said)] if said else []


# ----------------------------------------------------------------------------- main


async def run(workdir: Path) -> list[str]:
    nofile = raise_nofile(4 * ACCOUNTS + 2048)  # inherited by every subprocess
    port = free_port()
    world = await asyncio.to_thread(build_world, workdir / "world", port)
    vault_key = base64.b64encode(os.urandom(32)).decode()
    print(f"fleet_multi: {ACCOUNTS} accounts minted; PostgreSQL ...", flush=True)
    pg = await run_postgres(workdir, world, port, vault_key)
    print("fleet_multi: SQLite ...", flush=True)
    lite = await run_sqlite(workdir, world, port, vault_key)
    return report(pg, lite, nofile)


def main() -> str:
    return "\n".join(run_in_tempdir(run, "tgfleet-bench-fleet-multi-"))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--post":
        poster_main(sys.argv[2])
    else:
        print(main())
