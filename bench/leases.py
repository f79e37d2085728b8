"""Coordination load of the lease loop alone (issue 6): simulated workers, no Telegram clients.

For each scenario (accounts N, workers W) this module creates a scratch PostgreSQL database
on the local server, migrates it with ``tgfleet.migrations.upgrade``, inserts N accounts
desired ``running`` in bulk (``INSERT ... SELECT ... FROM generate_series``) with one active
session secret, one ``online`` status and one group setting each (so that the leader's
unassigned marks and the worker's reconcile queries read realistic tables), then creates
their lease rows as the start commands' background chore does: ``lease_service.sweep`` once.

W simulated workers run in this process: each a real ``tgfleet.worker.leases.LeaseLoop``
with its own worker id, a short TTL (``TTL``; renewals every TTL/3, the default grace of
2 s), capacity twice its share, ``stop_accounts`` and ``on_change`` no-ops. One real
``CommandListener`` stands in for the W workers' own: a notification (the leader's after a
reap, a worker's after a hand-over) pokes every live loop, as ``Supervisor._command`` does.
They share one engine of ``POOL`` connections: the local server allows 100, fewer than W
workers with a pool each (see ``pool_size``).

Measured, per scenario:

(a) cold start: every worker registers, then the loops start staggered over one renewal
    interval and claim from nothing; the time until every worker holds exactly its share
    (shares by rank add up to N), the claim statements it took, and self-fences. Should
    it not converge within ``CONVERGE_TIMEOUT``, the leases are handed out by rank in one
    UPDATE and the report says so.
(b) steady state: statements/s counted client-side on the engine
    (``before/after_cursor_execute``, classified by statement; BEGIN, COMMIT and the pool's
    pre-ping are not statements there), transactions/s and rows written/s
    (``tup_inserted + tup_updated + tup_deleted``) from PostgreSQL's ``pg_stat_database`` /
    ``pg_stat_user_tables`` over ``WINDOW`` seconds. (pg_stat_statements is installed but
    not in ``shared_preload_libraries`` on this server, so it cannot count.)
(c) absorption: a worker that is not the leader has its loop task cancelled (a crash: no
    drain, its worker row stays until it expires); from the cancel until the survivors
    hold every account (their ``held``; then ``unassigned`` is checked in the database):
    wall time, when the leader reaped, and the REAP_DEAD + REAP_SUPERSEDED + CLAIM
    statements in that interval: their client-side time (round trip, pool queueing and
    event-loop lag included: an upper bound of their database time) and a database
    estimate, each statement costed at the EXPLAIN (ANALYZE) time of its plan from (e); the
    same for every statement of the interval.
(d) the steady state after the absorption (W-1 workers).
(e) with the loops stopped and the survivors' rows kept alive: one claim of 1,000 accounts
    alone, and ``EXPLAIN (ANALYZE, BUFFERS)`` of each lease statement (rolled back), among
    them CLAIM with one survivor's part of an absorption, with 1,000 free rows and with
    none, REAP_DEAD for a dead worker holding its share and for one already reaped (what
    the leader repeats every tick for an hour), REAP_SUPERSEDED for one re-registered
    worker and for all of them (a rolling restart; also with a proposed index), and what
    autovacuum changes for the free-row index. With nobody due, the leader sends no reap
    statement at all (``FleetShape.reapable`` reads the worker table it already has).
(f) the worker's reconcile queries at this size (``tgfleet.account.runtime``,
    ``tgfleet.vault.service``, ``tgfleet.playbook.service``; median of ``REPEAT`` runs).

Knobs: ``TGFLEET_BENCH_LEASES_SCALE`` (``full``: 10,000 accounts on 10 workers and 100,000
on 100; ``small``: 1,000 on 2 and 5,000 on 10, with a 10 s window), ``TGFLEET_BENCH_LEASES_TTL``
(6 s), ``TGFLEET_BENCH_LEASES_WINDOW`` (30 s full, 10 s small), ``TGFLEET_BENCH_LEASES_SERVER``
(``postgresql+asyncpg://postgres@127.0.0.1:5432/test``: where to CREATE DATABASE).
Targets: per-worker statements/s equal across scenarios (within 25 %), no account, lease or
status row written at steady state, absorption of a dead worker's accounts < 2 s of
database time (judged on the EXPLAIN estimate; the client-side sum is the upper bound).
Run alone: ``.venv/bin/python bench/run.py leases``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from _common import cpu_seconds, own_cpu, pct
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import TextClause
from tests.harness import scratch_database

from tgfleet import migrations
from tgfleet.account import runtime
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.lease import notify
from tgfleet.lease import service as lease_service
from tgfleet.lease import statements as lease_sql
from tgfleet.lease.service import FleetShape, Registration, WorkerClock
from tgfleet.logging import configure_logging
from tgfleet.playbook import service as playbook_service
from tgfleet.vault import service as vault_service
from tgfleet.worker.leases import CHORES_EVERY, LeaseConfig, LeaseLoop
from tgfleet.worker.listener import CommandListener

SCALE = os.environ.get("TGFLEET_BENCH_LEASES_SCALE", "full")
SMALL = SCALE == "small"
SCENARIOS: list[tuple[int, int]] = (
    [(1_000, 2), (5_000, 10)] if SMALL else [(10_000, 10), (100_000, 100)]
)
TTL = float(os.environ.get("TGFLEET_BENCH_LEASES_TTL", "6"))
WINDOW = float(os.environ.get("TGFLEET_BENCH_LEASES_WINDOW", "10" if SMALL else "30"))
SERVER = os.environ.get(
    "TGFLEET_BENCH_LEASES_SERVER", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# Connections shared by the simulated workers. A tick holds one for a few milliseconds, so
# 100 loops at one tick per TTL/3 need about one at a time; the bursts (every survivor poked
# at once after a reap) queue for the pool rather than for the server's 100 connections,
# which the developers' test runs share. Plus the listener, the stats engine, the admin one.
POOL = 30
REPEAT = 15
REPEAT_BUDGET = 5.0  # seconds per reconcile query; at least 3 runs
CONVERGE_TIMEOUT = 180.0
ABSORB_TIMEOUT = 60.0
SOLO = "solo"
PER_WORKER_TOLERANCE = 0.25
ABSORB_DB_TARGET = 2.0


def _normalised(statement: str) -> str:
    """Statement text with whitespace collapsed and bind parameters (``:name`` in the
    repository, ``$1`` or ``%s`` on the wire) replaced, so the two compare equal."""
    flat = re.sub(r"\s+", " ", statement).strip()
    return re.sub(r"(?<!:):\w+|\$\d+|%s|%\(\w+\)s", "?", flat)


#: Every statement of the lease repository, by its normalised text -> its name.
LEASE_STATEMENTS: dict[str, str] = {
    _normalised(str(value.text)): name
    for name, value in vars(lease_sql).items()
    if name.isupper() and isinstance(value, TextClause)
}
#: The statements that move a dead worker's accounts: the leader's reap, the survivors' claims.
ABSORB_KINDS = ("REAP_DEAD", "REAP_SUPERSEDED", "CLAIM")


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def kind_of(statement: str) -> str:
    flat = _normalised(statement)
    if "pg_notify" in flat:
        return "NOTIFY"
    return LEASE_STATEMENTS.get(flat, "other")


# ----------------------------------------------------------------------------- meters


@dataclass
class Tally:
    count: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    commits: int = 0

    def copy(self) -> Tally:
        return Tally(Counter(self.count), defaultdict(float, self.seconds), self.commits)

    def minus(self, earlier: Tally) -> Tally:
        return Tally(
            self.count - earlier.count,
            defaultdict(float, {k: v - earlier.seconds[k] for k, v in self.seconds.items()}),
            self.commits - earlier.commits,
        )

    @property
    def statements(self) -> int:
        return sum(self.count.values())


class StatementMeter:
    """Counts and times every statement the engine sends, by kind; counts commits."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.tally = Tally()
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._before)
        event.listen(sync, "after_cursor_execute", self._after)
        event.listen(sync, "commit", self._commit)

    def _before(self, conn: Any, _cursor: Any, _statement: str, *_args: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        elapsed = time.perf_counter() - conn.info["bench_started"].pop()
        kind = kind_of(statement)
        self.tally.count[kind] += 1
        self.tally.seconds[kind] += elapsed

    def _commit(self, _conn: Any) -> None:
        self.tally.commits += 1

    def snapshot(self) -> Tally:
        return self.tally.copy()


@dataclass(frozen=True)
class PgStats:
    at: float
    xacts: int
    inserted: int
    updated: int
    deleted: int
    tables: dict[str, tuple[int, int, int, int]]  # table -> ins, upd, hot upd, del

    @property
    def written(self) -> int:
        return self.inserted + self.updated + self.deleted


async def pg_stats(stats: AsyncEngine) -> PgStats:
    async with stats.connect() as conn:
        await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        row = (
            await conn.execute(
                text(
                    "SELECT xact_commit + xact_rollback, tup_inserted, tup_updated, tup_deleted"
                    " FROM pg_stat_database WHERE datname = current_database()"
                )
            )
        ).one()
        tables = {
            r[0]: (int(r[1]), int(r[2]), int(r[3]), int(r[4]))
            for r in await conn.execute(
                text(
                    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del"
                    " FROM pg_stat_user_tables"
                )
            )
        }
    return PgStats(time.perf_counter(), int(row[0]), int(row[1]), int(row[2]), int(row[3]), tables)


async def backend_pids(stats: AsyncEngine) -> list[int]:
    async with stats.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
        )
        return [int(r[0]) for r in rows]


def backends_cpu(pids: list[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            seconds[pid] = cpu_seconds(pid)
    return seconds


class LagSampler:
    """How late the event loop wakes a 50 ms sleep (the loops' timing is only as good)."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.05)
            self.lags.append(time.perf_counter() - started - 0.05)


class TimedLoop(LeaseLoop):
    """A LeaseLoop that records how long each tick took."""

    ticks: list[float]

    async def tick(self) -> None:
        started = time.perf_counter()
        await super().tick()
        self.ticks.append(time.perf_counter() - started)


async def noop_stop(_accounts: set[uuid.UUID]) -> None:
    return None


def noop_change() -> None:
    return None


# ----------------------------------------------------------------------------- database


# The fallback should the cold start not converge: lease rows handed out by rank, the
# first `extra` workers taking base + 1 (FleetShape.share_of).
PREASSIGN = text(
    """
    UPDATE account_lease l SET worker_id = w.id, epoch = w.epoch, acquired_at = now()
    FROM (SELECT account_id, row_number() OVER (ORDER BY account_id) - 1 AS r
          FROM account_lease) n,
         (SELECT id, epoch, row_number() OVER (ORDER BY id) - 1 AS k FROM worker
          WHERE state = 'running' AND expires_at > now()) w
    WHERE l.account_id = n.account_id
      AND w.k = CASE WHEN n.r < :extra * (:base + 1) THEN n.r / (:base + 1)
                     ELSE :extra + (n.r - :extra * (:base + 1)) / :base END
    """
)

# A fix proposed for REAP_SUPERSEDED (and HELD): `l.epoch < s.epoch` becomes an index range,
# so the statement reads the stale leases only. EXPLAINed in a rolled-back transaction.
PROPOSED_INDEX = (
    "CREATE INDEX bench_ix_account_lease_worker_epoch ON account_lease (worker_id, epoch)"
)

SEED = [
    """INSERT INTO account (id, label, desired_state, created_at, updated_at, restart_seq)
       SELECT gen_random_uuid(), 'a' || g, 'running', now(), now(), 0
       FROM generate_series(1, :n) g""",
    """INSERT INTO session_secret (account_id, version, state, source_format, created_at,
                                   updated_at)
       SELECT id, 1, 'active', 'telethon', now(), now() FROM account""",
    """INSERT INTO account_status (account_id, state, since, restart_seq, messages_received,
                                   replies_sent, replies_suppressed, reconnects, updated_at)
       SELECT id, 'online', now(), 0, 0, 0, 0, 0, now() FROM account""",
    """INSERT INTO account_group (account_id, chat_id, enabled, created_at, updated_at)
       SELECT id, -1000 - row_number() OVER (), true, now(), now() FROM account""",
]

# What the supervisors of the workers holding the accounts would have written by now (the
# bench runs none): every status `online`, last changed a while ago. Without it the
# leader's unassigned marks of the cold start would stay, and hide the absorption's.
STATUSES_ONLINE = text(
    """
    UPDATE account_status SET state = 'online', reason = NULL,
        updated_at = now() - interval '1 minute'
    WHERE state <> 'online'
    """
)


async def vacuum(engine: AsyncEngine, table: str = "") -> None:
    async with engine.connect() as raw:
        conn = await raw.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text(f"VACUUM ANALYZE {table}".strip()))


async def seed(
    engine: AsyncEngine, maker: async_sessionmaker[AsyncSession], accounts: int
) -> tuple[float, float]:
    """Returns the seconds of the bulk insert and of the lease rows' sweep."""
    started = time.perf_counter()
    async with engine.begin() as conn:
        for statement in SEED:
            await conn.execute(text(statement), {"n": accounts} if ":n" in statement else {})
    await vacuum(engine)
    inserted = time.perf_counter()
    async with unit_of_work(maker) as session:
        await lease_service.sweep(session)  # lease rows, as the start commands create them
    swept = time.perf_counter()
    await vacuum(engine)
    return inserted - started, swept - inserted


# ----------------------------------------------------------------------------- results


@dataclass
class Window:
    seconds: float
    tally: Tally
    xacts: int
    written: int
    tables: dict[str, tuple[int, int, int, int]]
    renewals: int
    tick_p50: float
    tick_p99: float
    lag_p99: float
    lag_max: float
    pg_cpu: float  # % of one core, the scratch database's backends
    bench_cpu: float

    def rate(self, value: float) -> float:
        return value / self.seconds


@dataclass
class Plan:
    name: str
    execution_ms: float
    planning_ms: float
    text: str
    big_scans: list[str]
    buffers: int  # shared hit + read, top node


@dataclass
class Phase:
    """A burst of work (cold start, absorption): wall time and the statements sent in it."""

    wall: float = 0.0
    tally: Tally = field(default_factory=Tally)
    fences: int = 0
    first_claim: float = 0.0
    reaped_at: float = 0.0
    tick_p99: float = 0.0
    lag_max: float = 0.0
    converged: bool = True

    def count(self, *kinds: str) -> int:
        return sum(self.tally.count[k] for k in kinds)

    def seconds(self, *kinds: str) -> float:
        return sum(self.tally.seconds[k] for k in kinds)


@dataclass
class Result:
    accounts: int
    workers: int
    share: int
    seed_seconds: float = 0.0
    sweep_seconds: float = 0.0
    cold: Phase = field(default_factory=Phase)
    preassigned: bool = False
    connections: int = 0
    steady: Window | None = None
    after: Window | None = None
    below_share_after: int = 0
    victim: str = ""
    victim_held: int = 0
    victim_lease_left: float = 0.0
    absorb: Phase = field(default_factory=Phase)
    unassigned_after: int = -1
    solo_claimed: int = 0
    solo_claim_seconds: float = 0.0
    solo_statement_seconds: float = 0.0
    dead_index_entries: str = ""
    plans: list[Plan] = field(default_factory=list)
    #: The plan standing for each statement kind of the absorption burst (database estimate).
    burst_plans: dict[str, Plan] = field(default_factory=dict)
    reconcile: list[tuple[str, float, int]] = field(default_factory=list)  # name, s, rows


# ----------------------------------------------------------------------------- scenario


async def measure_window(
    loops: list[TimedLoop], meter: StatementMeter, stats: AsyncEngine, seconds: float
) -> Window:
    pids = await backend_pids(stats)
    lag = LagSampler()
    lag_task = asyncio.create_task(lag.run())
    try:
        for loop in loops:
            loop.ticks.clear()
        renewals = sum(loop.renewals for loop in loops)
        tally = meter.snapshot()
        before = await pg_stats(stats)
        cpu_before = backends_cpu(pids)
        own_before = own_cpu()
        await asyncio.sleep(seconds)
        after = await pg_stats(stats)
        cpu_after = backends_cpu(pids)
        own_after = own_cpu()
        tally_after = meter.snapshot()
    finally:
        lag_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag_task
    wall = after.at - before.at
    ticks = [t for loop in loops for t in loop.ticks] or [0.0]
    pg_cpu = sum(cpu_after[p] - cpu_before[p] for p in cpu_after if p in cpu_before)
    return Window(
        seconds=wall,
        tally=tally_after.minus(tally),
        xacts=after.xacts - before.xacts,
        written=after.written - before.written,
        tables={
            name: tuple(
                a - b for a, b in zip(row, before.tables.get(name, (0, 0, 0, 0)), strict=True)
            )  # type: ignore[misc]
            for name, row in after.tables.items()
        },
        renewals=sum(loop.renewals for loop in loops) - renewals,
        tick_p50=pct(ticks, 0.5),
        tick_p99=pct(ticks, 0.99),
        lag_p99=pct(lag.lags or [0.0], 0.99),
        lag_max=max(lag.lags or [0.0]),
        pg_cpu=pg_cpu / wall * 100,
        bench_cpu=(own_after - own_before) / wall * 100,
    )


async def staggered(loop: LeaseLoop, delay: float) -> None:
    await asyncio.sleep(delay)
    await loop.run()


async def wait_until(predicate: Any, timeout: float, what: str) -> float:  # noqa: ASYNC109
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            msg = f"timed out after {timeout:.0f} s waiting for {what}"
            raise RuntimeError(msg)
        await asyncio.sleep(0.02)
    return time.perf_counter() - started


async def explain(
    maker: async_sessionmaker[AsyncSession],
    name: str,
    statement: TextClause,
    params: dict[str, Any],
    accounts: int,
    setup: tuple[str, ...] = (),
) -> Plan:
    """EXPLAIN (ANALYZE, BUFFERS) after ``setup``, in a transaction rolled back (most of the
    statements write)."""
    async with maker() as session:
        for statement_text in setup:
            await session.execute(text(statement_text))
        rows = await session.execute(
            text("EXPLAIN (ANALYZE, BUFFERS) " + str(statement.text).strip()), params
        )
        lines = [str(r[0]) for r in rows]
        await session.rollback()
    body = "\n".join(lines)
    execution = re.search(r"Execution Time: ([\d.]+) ms", body)
    planning = re.search(r"Planning Time: ([\d.]+) ms", body)
    buffers = re.search(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?", body)
    return Plan(
        name,
        float(execution[1]) if execution else math.nan,
        float(planning[1]) if planning else math.nan,
        body,
        big_scans(lines, accounts),
        int(buffers[1] or 0) + int(buffers[2] or 0) if buffers else 0,
    )


SCAN = re.compile(
    r"(Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan)(?: using (\S+))? on (\w+)"
    r".*?actual time=\S+ rows=(\d+) loops=(\d+)"
)


def big_scans(lines: list[str], accounts: int) -> list[str]:
    """Scans of account / account_lease / account_status that read at least half of the
    accounts (rows returned plus rows removed by their filter): work that grows with
    accounts."""
    found = []
    for at, line in enumerate(lines):
        match = SCAN.search(line)
        if match and match[3] in {"account", "account_lease", "account_status"}:
            loops = int(match[5])
            rows = int(match[4]) * loops
            for detail in lines[at + 1 :]:
                if "->" in detail:
                    break
                removed = re.search(r"Rows Removed by Filter: (\d+)", detail)
                if removed:
                    rows += int(removed[1]) * loops
            if rows >= accounts / 2:
                how = match[1] + (f" ({match[2]})" if match[2] else "")
                found.append(f"{how} on {match[3]}: {rows:,} rows read")
    return found


def shares_of(loops: list[TimedLoop], accounts: int, capacity: int) -> dict[str, int]:
    """Each live worker's share as the loops compute it (by rank, adding up to the fleet)."""
    ids = tuple(sorted(loop.worker_id for loop in loops))
    clocks = tuple(WorkerClock(w, 1, True, TTL, TTL) for w in ids)  # all live, first run
    shape = FleetShape(clocks, accounts)
    return {worker: shape.share_of(worker, capacity) for worker in ids}


async def phase(
    loops: list[TimedLoop],
    meter: StatementMeter,
    start: Callable[[], Awaitable[None]],
    done: Callable[[], bool],
    timeout: float,  # noqa: ASYNC109
    what: str,
) -> Phase:
    """Run ``start`` and wait until ``done``: the wall time, the statements sent meanwhile,
    when the first claim and the first reap landed, self-fences, tick and lag extremes."""
    result = Phase()
    for loop in loops:
        loop.ticks.clear()
    fences = sum(loop.fences for loop in loops)
    claimed = sum(loop.claimed_total for loop in loops)
    reaped = sum(loop.reaped_total for loop in loops)
    lag = LagSampler()
    lag_task = asyncio.create_task(lag.run())
    tally = meter.snapshot()
    started = time.perf_counter()

    def check() -> bool:
        now = time.perf_counter() - started
        if not result.first_claim and sum(loop.claimed_total for loop in loops) > claimed:
            result.first_claim = now
        if not result.reaped_at and sum(loop.reaped_total for loop in loops) > reaped:
            result.reaped_at = now
        return done()

    try:
        await start()
        await wait_until(check, timeout, what)
        result.wall = time.perf_counter() - started
    except RuntimeError:
        result.wall = math.inf
        result.converged = False
    finally:
        lag_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag_task
    result.tally = meter.snapshot().minus(tally)
    result.fences = sum(loop.fences for loop in loops) - fences
    result.tick_p99 = pct([t for loop in loops for t in loop.ticks] or [0.0], 0.99)
    result.lag_max = max(lag.lags or [0.0])
    return result


async def run_scenario(accounts: int, workers: int) -> Result:
    share = math.ceil(accounts / workers)
    result = Result(accounts, workers, share)
    name = f"tgfleet_bench_leases_{os.getpid()}_{accounts}"
    async with scratch_database(SERVER, name) as url:
        await asyncio.to_thread(migrations.upgrade, url)
        engine = create_engine(url, pool_size=min(POOL, workers + 2), max_overflow=0)
        stats = create_engine(url, pool_size=1, max_overflow=0)
        meter = StatementMeter(engine)
        maker = create_sessionmaker(engine)
        tasks: dict[str, asyncio.Task[None]] = {}
        loops: list[TimedLoop] = []

        def poke_live(kind: str) -> None:  # Supervisor._command, for every loop at once
            for loop in loops:
                if loop.worker_id in tasks:
                    loop.poke(command=kind != notify.LEASES_FREED)

        listener = CommandListener(url, poke_live)
        listener_task = asyncio.create_task(listener.run())
        try:
            result.seed_seconds, result.sweep_seconds = await seed(engine, maker, accounts)
            print(f"leases: {accounts:,} accounts seeded; {workers} workers ...", flush=True)
            config = LeaseConfig(ttl=TTL, capacity=2 * share)
            loops += [
                TimedLoop(
                    maker, f"w{i:03d}", config, on_change=noop_change, stop_accounts=noop_stop
                )
                for i in range(workers)
            ]
            for loop in loops:
                loop.ticks = []
            await asyncio.gather(*(loop.register() for loop in loops))
            expected = shares_of(loops, accounts, config.capacity)

            def converged() -> bool:
                return all(len(loop.held) == expected[loop.worker_id] for loop in loops)

            async def start() -> None:
                for i, loop in enumerate(loops):
                    delay = config.renew_every * i / workers
                    tasks[loop.worker_id] = asyncio.create_task(staggered(loop, delay))

            # ---- cold start: every worker claims its share from nothing
            result.cold = await phase(
                loops, meter, start, converged, CONVERGE_TIMEOUT, "the cold start"
            )
            if not result.cold.converged:
                result.preassigned = True
                base, extra = divmod(accounts, workers)
                async with engine.begin() as conn:
                    await conn.execute(
                        text("UPDATE account_lease SET worker_id = NULL, epoch = NULL")
                    )
                    await conn.execute(PREASSIGN, {"base": base, "extra": extra})
                await wait_until(converged, CONVERGE_TIMEOUT, "the pre-assigned shares")
            async with engine.begin() as conn:
                await conn.execute(STATUSES_ONLINE)
            await vacuum(engine)  # autovacuum would, within a minute of the cold start's writes
            print(f"leases: cold start {result.cold.wall:.1f} s; steady ...", flush=True)
            await asyncio.sleep(config.renew_every)  # one quiet round before measuring
            result.connections = len(await backend_pids(stats))
            result.steady = await measure_window(loops, meter, stats, WINDOW)

            # ---- absorption: a worker (not the leader) crashes
            victim = loops[workers // 2]
            survivors = [loop for loop in loops if loop is not victim]
            result.victim = victim.worker_id
            result.victim_held = len(victim.held)
            async with stats.connect() as conn:
                left = await conn.execute(
                    text(
                        "SELECT extract(epoch FROM expires_at - now()) FROM worker WHERE id = :id"
                    ),
                    {"id": victim.worker_id},
                )
                result.victim_lease_left = float(left.scalar_one())

            async def crash() -> None:
                tasks[victim.worker_id].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await tasks.pop(victim.worker_id)

            def absorbed() -> bool:
                return sum(len(s.held) for s in survivors) == accounts

            result.absorb = await phase(
                survivors, meter, crash, absorbed, ABSORB_TIMEOUT, "the absorption"
            )
            async with unit_of_work(maker) as session:
                result.unassigned_after = await lease_service.unassigned(session)
            print(f"leases: absorbed in {result.absorb.wall:.1f} s; after ...", flush=True)
            await asyncio.sleep(2 * config.renew_every)
            result.after = await measure_window(survivors, meter, stats, WINDOW)
            after_shares = shares_of(survivors, accounts, config.capacity)
            result.below_share_after = sum(
                1 for s in survivors if len(s.held) < after_shares[s.worker_id]
            )

            # ---- the loops stop; the survivors' rows are kept alive for what follows
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
            tasks.clear()
            async with unit_of_work(maker) as session:
                await session.execute(
                    text(
                        "UPDATE worker SET expires_at = now() + interval '1 hour'"
                        " WHERE id <> :victim"
                    ),
                    {"victim": victim.worker_id},
                )
            await single_measurements(engine, maker, meter, config, survivors, result)
        finally:
            for task in [*tasks.values(), listener_task]:
                task.cancel()
            await asyncio.gather(*tasks.values(), listener_task, return_exceptions=True)
            await engine.dispose()
            await stats.dispose()
    return result


async def single_measurements(
    engine: AsyncEngine,
    maker: async_sessionmaker[AsyncSession],
    meter: StatementMeter,
    config: LeaseConfig,
    survivors: list[TimedLoop],
    result: Result,
) -> None:
    """One claim of 1,000 alone, EXPLAIN plans, reconcile queries (nothing else running)."""
    holder, donor = survivors[0], survivors[-1]
    assert holder.registration is not None
    assert donor.registration is not None
    n = result.accounts
    grace = config.grace_seconds
    held = sorted(holder.held)[:1000]
    mine = {"id": holder.worker_id, "epoch": holder.registration.epoch}
    survivor_ids = [loop.worker_id for loop in survivors]
    survivor_epochs = [loop.registration.epoch for loop in survivors if loop.registration]
    marks = {"grace": grace + config.renew_every}  # as LeaseLoop._lead passes it
    plans, burst = result.plans, result.burst_plans

    async def plan(label: str, statement: TextClause, params: dict[str, Any], *setup: str) -> Plan:
        explained = await explain(maker, label, statement, params, n, setup)
        plans.append(explained)
        return explained

    burst["HEARTBEAT"] = await plan("HEARTBEAT", lease_sql.HEARTBEAT, {**mine, "ttl": 3600.0})
    burst["WORKER_CLOCK"] = await plan(
        f"WORKER_CLOCK ({result.workers + 1} worker rows)", lease_sql.WORKER_CLOCK, {}
    )
    burst["RUNNING_ACCOUNTS"] = await plan(
        "RUNNING_ACCOUNTS (every 30 s, and after a notification)", lease_sql.RUNNING_ACCOUNTS, {}
    )
    burst["HELD"] = await plan(f"HELD ({len(holder.held):,} held)", lease_sql.HELD, mine)
    burst["RELEASE_STOPPED"] = await plan(
        "RELEASE_STOPPED, none stopped (every 30 s, and after a notification)",
        lease_sql.RELEASE_STOPPED,
        mine,
    )
    burst["REAP_DEAD"] = await plan(
        f"REAP_DEAD, one dead worker holding {len(donor.held):,}",
        lease_sql.REAP_DEAD,
        {"ids": [donor.worker_id]},
    )
    await plan(
        f"REAP_DEAD, the victim ({result.victim}) again, 0 leases (every leader tick for"
        " an hour after a death or a drain)",
        lease_sql.REAP_DEAD,
        {"ids": [result.victim]},
    )
    await plan(
        f"REAP_SUPERSEDED, one worker re-registered within the hour, holding"
        f" {len(holder.held):,} of its current epoch (0 stale)",
        lease_sql.REAP_SUPERSEDED,
        {"ids": [holder.worker_id], "epochs": [holder.registration.epoch]},
    )
    await plan(
        f"REAP_SUPERSEDED, one worker's {len(holder.held):,} leases of an earlier epoch",
        lease_sql.REAP_SUPERSEDED,
        {"ids": [holder.worker_id], "epochs": [holder.registration.epoch + 1]},
    )
    rolling = {"ids": survivor_ids, "epochs": survivor_epochs}
    await plan(
        f"REAP_SUPERSEDED, all {len(survivors)} workers re-registered within the hour (a"
        " rolling restart), 0 stale (every leader tick for that hour)",
        lease_sql.REAP_SUPERSEDED,
        rolling,
    )
    await plan(
        "REAP_SUPERSEDED, the same, with a proposed index `account_lease (worker_id, epoch)`"
        " (created in the rolled-back transaction)",
        lease_sql.REAP_SUPERSEDED,
        rolling,
        PROPOSED_INDEX,
        "ANALYZE account_lease",
    )
    await plan("MARK_UNASSIGNED, none free", lease_sql.MARK_UNASSIGNED, marks)
    burst["INSERT_UNASSIGNED"] = await plan(
        "INSERT_UNASSIGNED, none free", lease_sql.INSERT_UNASSIGNED, marks
    )
    await plan("ENSURE_ALL (sweep, every 30 s)", lease_sql.ENSURE_ALL, {})
    await plan("DROP_STOPPED_FREE (sweep, every 30 s)", lease_sql.DROP_STOPPED_FREE, {})
    await plan("PRUNE_WORKERS (sweep, every 30 s)", lease_sql.PRUNE_WORKERS, {})
    await plan("UNASSIGNED (API: GET /workers)", lease_sql.UNASSIGNED, {})

    async with unit_of_work(maker) as session:
        freed = await lease_service.release(session, donor.registration)  # as a reap would
        solo: Registration = await lease_service.register(
            session,
            worker_id=SOLO,
            host="bench",
            pid=os.getpid(),
            version="bench",
            capacity=10_000,
            ttl=3600,
        )
    burst["MARK_UNASSIGNED"] = await plan(
        f"MARK_UNASSIGNED, {freed:,} free", lease_sql.MARK_UNASSIGNED, marks
    )
    # What each survivor claims after a reap: the victim's accounts over the survivors.
    step = math.ceil(result.victim_held / max(1, result.workers - 1))
    burst["CLAIM"] = await plan(
        f"CLAIM {step:,} of {freed:,} free (one survivor's part of an absorption)",
        lease_sql.CLAIM,
        {"id": SOLO, "epoch": solo.epoch, "limit": step},
    )
    claim = {"id": SOLO, "epoch": solo.epoch, "limit": 1000}
    await plan(f"CLAIM 1,000 of {freed:,} free", lease_sql.CLAIM, claim)
    tally = meter.snapshot()
    started = time.perf_counter()
    async with unit_of_work(maker) as session:
        claimed = await lease_service.claim(session, solo, limit=1000)
    result.solo_claim_seconds = time.perf_counter() - started
    result.solo_claimed = len(claimed)
    result.solo_statement_seconds = meter.snapshot().minus(tally).seconds["CLAIM"]
    async with unit_of_work(maker) as session:
        await lease_service.claim(session, solo, limit=10_000)  # the rest: none free now
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT n_dead_tup, pg_relation_size('ix_account_lease_free'),"
                    " last_autovacuum FROM pg_stat_user_tables WHERE relname = 'account_lease'"
                )
            )
        ).one()
    result.dead_index_entries = (
        f"`account_lease` {int(row[0]):,} dead tuples, `ix_account_lease_free`"
        f" {int(row[1]) // 8192:,} pages, last autovacuum {row[2] or 'never'}"
    )
    await plan("CLAIM, none free (as found)", lease_sql.CLAIM, claim)
    await vacuum(engine, "account_lease")
    await plan("CLAIM, none free (after VACUUM account_lease)", lease_sql.CLAIM, claim)
    result.reconcile = await time_reconcile(maker, held)


def reconcile_queries(
    held: list[uuid.UUID],
) -> list[tuple[str, Callable[[AsyncSession], Awaitable[int]]]]:
    """The supervisor's reconcile reads, through the functions it calls (rows returned)."""

    async def desired(session: AsyncSession) -> int:
        return len(await runtime.desired_fingerprint(session))

    async def secrets(session: AsyncSession) -> int:
        return len(await vault_service.secrets_fingerprint(session))

    async def groups(session: AsyncSession) -> int:
        return len(await runtime.groups_fingerprint(session))

    async def playbooks(session: AsyncSession) -> int:
        return len(await playbook_service.fingerprint(session))

    async def load(session: AsyncSession) -> int:
        return len(await runtime.load_desired(session, held))

    async def versions(session: AsyncSession) -> int:
        return len(await vault_service.secret_versions(session, held))

    polled = "every 0.5 s while the LISTEN connection is down"
    return [
        (f"desired_fingerprint, all accounts ({polled})", desired),
        (f"secrets_fingerprint, all secrets ({polled})", secrets),
        (f"groups_fingerprint ({polled})", groups),
        (f"playbook fingerprint ({polled})", playbooks),
        (f"load_desired, {len(held):,} held (on a command, and every 10 s)", load),
        (f"secret_versions, {len(held):,} held (same)", versions),
    ]


async def time_reconcile(
    maker: async_sessionmaker[AsyncSession], held: list[uuid.UUID]
) -> list[tuple[str, float, int]]:
    timings = []
    for name, query in reconcile_queries(held):
        samples: list[float] = []
        rows = 0
        budget = time.perf_counter() + REPEAT_BUDGET
        while len(samples) < REPEAT and (len(samples) < 3 or time.perf_counter() < budget):
            async with unit_of_work(maker, read_only=True) as session:
                started = time.perf_counter()
                rows = await query(session)
                samples.append(time.perf_counter() - started)
        timings.append((name, statistics.median(samples), rows))
    return timings


# ----------------------------------------------------------------------------- report


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def per_kind(window: Window) -> str:
    ordered = sorted(window.tally.count.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{kind} {window.rate(count):,.2f}" for kind, count in ordered) or "-"


def time_per_kind(window: Window) -> str:
    ordered = sorted(window.tally.seconds.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{kind} {ms(window.rate(s))}" for kind, s in ordered if s > 0) or "-"


def table_writes(window: Window, table: str) -> str:
    ins, upd, hot, dele = window.tables.get(table, (0, 0, 0, 0))
    return (
        f"{window.rate(ins + upd + dele):,.2f}/s ({upd:,} updated of which {hot:,} HOT,"
        f" {ins:,} inserted, {dele:,} deleted)"
    )


def window_rows(label: str, w: Window, workers: int) -> list[str]:
    statements = w.rate(w.tally.statements)
    per_interval = w.renewals / workers / w.seconds * TTL / 3
    return [
        (
            f"| {label}: window; renewals | {w.seconds:,.1f} s; {w.renewals:,}"
            f" ({per_interval:.2f} per worker per interval) |"
        ),
        (
            f"| {label}: statements/s (client-side count) | **{statements:,.1f}** ="
            f" **{statements / workers:.2f} per worker** |"
        ),
        f"| {label}: statements/s by kind | {per_kind(w)} |",
        (
            f"| {label}: client time in statements per second, by kind (round trip and"
            f" event-loop lag included) | {time_per_kind(w)} |"
        ),
        (
            f"| {label}: transactions/s, pg_stat_database (pre-pings included) / client commits"
            f" | {w.rate(w.xacts):,.1f} / {w.rate(w.tally.commits):,.1f} |"
        ),
        (
            f"| {label}: rows written/s, pg_stat_database ins+upd+del |"
            f" **{w.rate(w.written):,.1f}** ({w.rate(w.written) / workers:.2f} per worker) |"
        ),
        f"| {label}: rows written in `worker` | {table_writes(w, 'worker')} |",
        f"| {label}: rows written in `account_lease` | {table_writes(w, 'account_lease')} |",
        f"| {label}: rows written in `account` | {table_writes(w, 'account')} |",
        f"| {label}: rows written in `account_status` | {table_writes(w, 'account_status')} |",
        (
            f"| {label}: tick p50 / p99; event-loop lag p99 / max | {ms(w.tick_p50)} /"
            f" {ms(w.tick_p99)}; {ms(w.lag_p99)} / {ms(w.lag_max)} |"
        ),
        (
            f"| {label}: CPU of the PostgreSQL backends / this process | {w.pg_cpu:.0f}% /"
            f" {w.bench_cpu:.0f}% of one core |"
        ),
    ]


def phase_kinds(p: Phase) -> str:
    ordered = sorted(p.tally.count.items(), key=lambda kv: -p.tally.seconds[kv[0]])
    return ", ".join(f"{k} {c:,} ({ms(p.tally.seconds[k])})" for k, c in ordered) or "-"


def scenario_section(r: Result) -> list[str]:
    assert r.steady is not None
    assert r.after is not None
    grace = LeaseConfig(ttl=TTL).grace_seconds
    expected = r.victim_lease_left + grace
    cold, absorb = r.cold, r.absorb
    lines = [
        f"#### {r.accounts:,} accounts on {r.workers} workers (share {r.share:,})",
        "",
        "| measure | value |",
        "|---|---|",
        (
            f"| seed: bulk insert + VACUUM ANALYZE / lease rows by `lease_service.sweep` |"
            f" {r.seed_seconds:.1f} s / {r.sweep_seconds:.2f} s |"
        ),
        (
            f"| cold start: registration -> every worker holds its share (loops started over"
            f" {TTL / 3:g} s) | **{cold.wall:.1f} s**"
            + (
                " (did not converge: the leases were then handed out by rank)"
                if r.preassigned
                else ""
            )
            + " |"
        ),
        (
            f"| cold start: CLAIM statements, count / summed time; self-fences; tick p99;"
            f" lag max | {cold.count('CLAIM'):,} / {ms(cold.seconds('CLAIM'))};"
            f" {cold.fences}; {ms(cold.tick_p99)}; {ms(cold.lag_max)} |"
        ),
        f"| cold start: statements by kind, count (summed time) | {phase_kinds(cold)} |",
        (
            "| connections to the scratch database (shared pool + listener + stats) |"
            f" {r.connections} |"
        ),
        *window_rows("steady", r.steady, r.workers),
        (
            f"| absorption: the victim ({r.victim}, not the leader) held / its lease had left |"
            f" {r.victim_held:,} accounts / {r.victim_lease_left:.1f} s |"
        ),
        (
            f"| absorption: crash -> leader's reap / -> first claim / -> survivors hold all |"
            f" {absorb.reaped_at:.2f} s / {absorb.first_claim:.2f} s /"
            f" **{absorb.wall:.2f} s** (lease left + grace {grace:g} s = {expected:.1f} s) |"
        ),
        (
            f"| absorption: {' + '.join(ABSORB_KINDS)} statements, count / summed client time"
            f" (upper bound) / database estimate (count x EXPLAIN execution + planning) |"
            f" {absorb.count(*ABSORB_KINDS):,} / **{ms(absorb.seconds(*ABSORB_KINDS))}** /"
            f" **{ms(burst_estimate(r, ABSORB_KINDS))}** |"
        ),
        (
            f"| absorption: every statement in the interval, count (summed client time) |"
            f" {phase_kinds(absorb)}; total {ms(sum(absorb.tally.seconds.values()))} |"
        ),
        (
            "| absorption: database estimate of every statement in the interval, by kind"
            f" (count x EXPLAIN) | {burst_kinds(r)} |"
        ),
        (
            f"| absorption: `unassigned` afterwards (database); survivors that self-fenced;"
            f" tick p99; lag max | {r.unassigned_after:,}; {absorb.fences};"
            f" {ms(absorb.tick_p99)}; {ms(absorb.lag_max)} |"
        ),
        *window_rows(f"after ({r.workers - 1} workers)", r.after, r.workers - 1),
        (f"| after: survivors below their share | {r.below_share_after} of {r.workers - 1} |"),
        (
            f"| one claim alone: accounts / unit of work / CLAIM statement | {r.solo_claimed:,}"
            f" / {ms(r.solo_claim_seconds)} / {ms(r.solo_statement_seconds)} |"
        ),
        f"| free-row index before the last plans | {r.dead_index_entries} |",
        "",
        (
            "EXPLAIN (ANALYZE, BUFFERS), nothing else running, each rolled back (scans listed:"
            " those returning at least half as many rows as there are accounts; buffers: the"
            " top node's shared hit + read, 8 KiB pages):"
        ),
        "",
        "| statement | execution | planning | buffers | scans that grow with accounts |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {p.name} | {p.execution_ms:,.2f} ms | {p.planning_ms:,.2f} ms | {p.buffers:,} |"
        f" {'; '.join(p.big_scans) or 'none'} |"
        for p in r.plans
    ]
    lines += [
        "",
        f"Reconcile reads of one worker (median of up to {REPEAT}, client-side, one at a time):",
        "",
        "| query | time | rows |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {ms(seconds)} | {rows:,} |" for name, seconds, rows in r.reconcile]
    return lines


def burst_estimate(r: Result, kinds: tuple[str, ...] | None = None) -> float:
    """Seconds of database time for the absorption's statements of these kinds (all with a
    plan by default): how many were sent times the EXPLAIN time of the plan standing for
    each. Claims are each costed as one survivor's part against every freed row."""
    total = 0.0
    for kind, count in r.absorb.tally.count.items():
        plan = r.burst_plans.get(kind)
        if plan is not None and (kinds is None or kind in kinds):
            total += count * (plan.execution_ms + plan.planning_ms) / 1000
    return total


def burst_kinds(r: Result) -> str:
    parts = []
    for kind, count in sorted(r.absorb.tally.count.items(), key=lambda kv: -kv[1]):
        plan = r.burst_plans.get(kind)
        if plan is not None:
            each = (plan.execution_ms + plan.planning_ms) / 1000
            parts.append(f"{kind} {count:,} x {ms(each)} = {ms(count * each)}")
        else:
            parts.append(f"{kind} {count:,} (no plan)")
    return "; ".join(parts) + f"; total **{ms(burst_estimate(r))}**"


def plans_block(r: Result) -> list[str]:
    lines = [f"Plans at {r.accounts:,} accounts:", ""]
    for plan in r.plans:
        lines += [f"{plan.name}:", "", "```", plan.text, "```", ""]
    return lines


def account_rows_written(r: Result) -> int:
    if r.steady is None:
        return -1
    tables = r.steady.tables
    return sum(
        tables.get(t, (0, 0, 0, 0))[i]
        for t in ("account", "account_lease", "account_status")
        for i in (0, 1, 3)
    )


def report(results: list[Result]) -> list[str]:
    small, big = results[0], results[-1]
    assert small.steady is not None
    assert big.steady is not None
    per_small = small.steady.rate(small.steady.tally.statements) / small.workers
    per_big = big.steady.rate(big.steady.tally.statements) / big.workers
    ratio = per_big / per_small
    proportional = abs(ratio - 1) <= PER_WORKER_TOLERANCE
    quiet = all(account_rows_written(r) == 0 for r in results)
    written = ", ".join(
        f"{r.steady.rate(r.steady.written):,.1f}/s at {r.accounts:,}/{r.workers}"
        for r in results
        if r.steady is not None
    )
    absorbed = ", ".join(
        f"{r.victim_held:,} accounts at {r.accounts:,}: {r.absorb.count(*ABSORB_KINDS)}"
        f" statements, {ms(burst_estimate(r, ABSORB_KINDS))} estimated in the database"
        f" ({ms(r.absorb.seconds(*ABSORB_KINDS))} client-side; {r.absorb.wall:.1f} s wall)"
        for r in results
    )
    worst = max(burst_estimate(r, ABSORB_KINDS) for r in results)
    worst_client = max(r.absorb.seconds(*ABSORB_KINDS) for r in results)
    all_absorbed = all(r.absorb.converged for r in results)
    grace = LeaseConfig(ttl=TTL).grace_seconds
    lines = [
        "### Leases: coordination load of the lease loop alone (issue 6)",
        "",
        (
            f"Simulated workers: real `LeaseLoop`s (no Telegram clients) in one process, TTL"
            f" {TTL:g} s (renewal every {TTL / 3:g} s, default grace {grace:g} s, fleet counts"
            f" and the leader's sweep every {CHORES_EVERY:g} s, release step 50, capacity twice"
            f" the share), sharing one engine of <= {POOL} connections and one `CommandListener`"
            " that pokes every loop on a notification. Each scenario on a fresh migrated scratch"
            " database on the local PostgreSQL with N accounts desired running (secret, status"
            " and group setting each), lease rows made by one `lease_service.sweep`. The workers"
            " register, then their loops start staggered over one interval and claim from a"
            " cold start. Statements are counted and timed on the engine (client-side; BEGIN,"
            " COMMIT and the pool's pre-ping are not statements there); transactions and rows"
            " written come from `pg_stat_database` / `pg_stat_user_tables` over a"
            f" {WINDOW:g} s window (pg_stat_statements is not preloaded on this server)."
            " Absorption: one worker's loop task (not the leader's) is cancelled (a crash, no"
            " drain); its database time is judged on an estimate, the REAP_DEAD,"
            " REAP_SUPERSEDED and CLAIM statements sent from the crash until the survivors hold"
            " every account, each costed at the EXPLAIN (ANALYZE) time of its plan measured"
            " afterwards with nothing else running; the sum of their client-side durations"
            " (round trips, pool queueing and event-loop lag included) is reported as an upper"
            f" bound. Scale `{SCALE}`."
        ),
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        (
            f"| steady statements/s proportional to workers, not accounts (per-worker rate equal"
            f" within {PER_WORKER_TOLERANCE:.0%}) | {per_small:.2f}/s per worker at"
            f" {small.accounts:,}/{small.workers} vs {per_big:.2f}/s at"
            f" {big.accounts:,}/{big.workers} ({ratio:.2f}x) | {verdict(proportional)} |"
        ),
        (
            f"| steady rows written/s do not grow with accounts (no `account`, `account_lease` or"
            f" `account_status` row written) | {written}; account rows:"
            f" {', '.join(str(account_rows_written(r)) for r in results)} | {verdict(quiet)} |"
        ),
        (
            f"| absorption of a dead worker's accounts < {ABSORB_DB_TARGET:g} s of database time"
            f" (judged on the EXPLAIN estimate; the client-side upper bound"
            f" {'also passes' if worst_client < ABSORB_DB_TARGET else 'does not'}) | {absorbed}"
            f" | {verdict(all_absorbed and worst < ABSORB_DB_TARGET)} |"
        ),
        "",
    ]
    for r in results:
        lines += [*scenario_section(r), ""]
    lines += ["", "<details><summary>Plans</summary>", "", *plans_block(big), "</details>"]
    return lines


async def run() -> list[str]:
    results = [await run_scenario(accounts, workers) for accounts, workers in SCENARIOS]
    return report(results)


def main() -> str:
    configure_logging(level="WARNING")  # as bench/run.py does, also when run alone
    return "\n".join(asyncio.run(run()))


if __name__ == "__main__":
    print(main())
