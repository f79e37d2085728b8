"""The fleet-wide reply gate in PostgreSQL: exact sliding windows (arrays) against fixed
hourly counters, measured in the same run.

Every reply a worker sends is first admitted by one statement, ``tgfleet_reply_admit``
(migration 0007): the sender is no fleet account, nobody claimed the message, and the
account's, the group's and the pair's limits hold over the last hour; then it claims the
message and reserves the budget. The current mechanism keeps EXACT SLIDING one-hour windows:
one ``reply_window`` row per account, group and pair holding the send times as a float8[]
array, locked ``FOR UPDATE`` in the order account, group, pair, trimmed to the last hour,
counted and written back with the new send. The design doc's alternative is FIXED one-hour
windows as counters. Three variants, on one scratch database, each with tables of its own
so that they can take turns:

* ``sliding``: ``tgfleet_reply_admit`` as migrated, on ``reply_window`` and ``reply_claim``
  (the baseline).
* ``fixed``: :data:`FIXED_FUNCTION`, written here and created in the scratch database only:
  the same signature, the same fleet-account check and claim logic (on a copy of
  ``reply_claim``), but a ``reply_counter(key, window_start, used)`` row per account and
  group and clock hour, taken with ``INSERT ... ON CONFLICT DO UPDATE SET used = used + 1
  WHERE used < limit`` (account, then group: the same lock order), the pair's last send
  time in a row of its own taken the same way; a later refusal gives the earlier counts
  back, so the one statement is all or nothing.
* ``sliding, no probe``: the migrated function, from ``pg_get_functiondef``, without its
  early ``SELECT`` of the claim (the claim's ``INSERT ... ON CONFLICT`` still decides), on
  copies of both tables: what the probe costs when messages are new.

Load: ``WORKERS`` simulated workers, each ``POOL`` connection(s) (``TGFLEET_BENCH_GATE_POOL``,
one) shared by ``CALLERS`` concurrent caller tasks, autocommit, the call prepared
(``asyncpg``). ``SECONDS`` per variant and shape (``TGFLEET_BENCH_GATE_SECONDS``, 20), taken
in ``SLICE``-second turns, the variants alternating (the order reversed every round), so
that the load of the shared machine falls on all of them alike; before each shape the
tables are emptied and seeded with a fleet's idle state (:func:`seed`). 1,000 accounts,
each a member of one group (account i in group i mod G); a call picks an account at random,
a new message key in its group and a sender outside the fleet, and announces as a worker
does for ``responders: one``. Shapes: contention (5 groups) with ``group_hourly`` 1000 (every call
admitted until the group windows fill: the sliding window's worst case, a 1,000-element
array per group read, sorted and rewritten per call) and with ``group_hourly`` 20 (nearly
every call refused), and spread (200 groups, ``group_hourly`` 1000); ``account_hourly``
1000, ``min_interval`` 0.

Reported per variant and shape: calls/s, client-side latency per call (the statement's
round trip, and with the wait for the worker's connection), PostgreSQL CPU (utime + stime
of the variant's backends from /proc; pg_stat_statements is not preloaded here), rows and
bytes of its tables afterwards (``pg_total_relation_size``, TOAST and indexes included),
and checks (limits held, exactly; every admission counted once); latency as the contention
windows fill; ``auto_explain`` of one call into a full window; the window alone (one
caller, statement time by the sends the group's window holds, rolled back:
:func:`window_sizes`); one caller alone, with ``synchronous_commit`` on and off (what the
function costs beside the WAL flush), also through ``tgfleet.lease.service.admit_reply``
on an asyncpg pool (the workers' path); a synthetic hour boundary (fixed windows admit 2L within
an hour); and the window rows' race with the leader's prune (:func:`prune_race`).
Run alone: ``.venv/bin/python bench/run.py reply_gate``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import os
import platform
import random
import re
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from _common import cpu_seconds, own_cpu, pct
from sqlalchemy.engine import make_url

from tgfleet import migrations
from tgfleet.lease import service as lease_service
from tgfleet.lease.statements import PRUNE_WINDOWS
from tgfleet.logging import configure_logging

SECONDS = float(os.environ.get("TGFLEET_BENCH_GATE_SECONDS", "20"))
SERVER = os.environ.get(
    "TGFLEET_BENCH_GATE_SERVER", "postgresql://postgres@127.0.0.1:5432/postgres"
)
POOL = int(os.environ.get("TGFLEET_BENCH_GATE_POOL", "1"))  # connections per worker
WORKERS = 3
CALLERS = 8  # caller tasks per worker
SLICE = 1.0  # seconds per turn
ACCOUNTS = 1_000
ACCOUNT_HOURLY = 1_000
MIN_INTERVAL = 0.0
CLAIM_SECONDS = 600.0  # tgfleet.playbook.gate.CLAIM_TTL_SECONDS
SINGLE_SECONDS = max(1.0, SECONDS / 8)  # per path, one caller alone
SINGLE_ROUNDS = 10
BOUNDARY_LIMIT = 20
FIRST_SENDER = 5_000_000  # the fleet accounts' tg_user_id; senders are drawn elsewhere
FIRST_CHAT = -1_001_000_000_000
SEEDED_CLAIMS = 5_000

CALL = "SELECT verdict, reserved_at, retry_in FROM {}($1, $2, $3, $4, $5, $6, $7, $8, $9)"

# Copies for the other variants (LIKE ... INCLUDING ALL: columns, keys, indexes), with the
# claims' foreign key, which LIKE leaves out.
SCHEMA = (
    "CREATE TABLE bench_fixed_claim (LIKE reply_claim INCLUDING ALL)",
    "CREATE TABLE bench_noprobe_claim (LIKE reply_claim INCLUDING ALL)",
    "CREATE TABLE bench_noprobe_window (LIKE reply_window INCLUDING ALL)",
    *(
        f"ALTER TABLE {table} ADD FOREIGN KEY (account_id) REFERENCES account (id)"
        " ON DELETE CASCADE"
        for table in ("bench_fixed_claim", "bench_noprobe_claim")
    ),
    """
    CREATE TABLE reply_counter (
        key text NOT NULL,
        window_start timestamptz NOT NULL,
        used integer NOT NULL,
        last_at double precision,
        prev_at double precision,
        CONSTRAINT pk_reply_counter PRIMARY KEY (key, window_start)
    )
    """,
)

FIXED_FUNCTION = """
CREATE OR REPLACE FUNCTION bench_reply_admit_fixed(
    p_key text,
    p_account uuid,
    p_chat bigint,
    p_sender bigint,
    p_min_interval double precision,
    p_account_hourly integer,
    p_group_hourly integer,
    p_claim_seconds double precision,
    p_announce text,
    OUT verdict text,
    OUT reserved_at double precision,
    OUT retry_in double precision
) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    now_at double precision := extract(epoch FROM clock_timestamp());
    window_at double precision := floor(now_at / 3600) * 3600;
    this_window timestamptz := to_timestamp(window_at);
    holder uuid;
    account_key text := 'a:' || p_account::text;
    group_key text := 'g:' || p_chat::text;
    pair_key text := 'p:' || p_account::text || ':' || p_chat::text;
    last_sent double precision;
BEGIN
    IF p_sender IS NOT NULL AND EXISTS (SELECT 1 FROM account WHERE tg_user_id = p_sender) THEN
        verdict := 'from_fleet';
        RETURN;
    END IF;
    SELECT c.account_id INTO holder FROM reply_claim c
        WHERE c.key = p_key AND c.expires_at > clock_timestamp();
    IF FOUND THEN
        verdict := CASE WHEN holder = p_account THEN 'duplicate' ELSE 'claimed_by_other' END;
        RETURN;
    END IF;
    IF p_account_hourly < 1 OR p_group_hourly < 1 THEN
        verdict := CASE WHEN p_account_hourly < 1 THEN 'limit:account_hourly'
                        ELSE 'limit:group_hourly' END;
        retry_in := window_at + 3600 - now_at;
        RETURN;
    END IF;
    -- Each upsert locks its row (account, group, pair: the sliding function's order) and
    -- counts only where there is room; a later refusal gives the earlier counts back.
    INSERT INTO reply_counter AS r (key, window_start, used)
        VALUES (account_key, this_window, 1)
        ON CONFLICT (key, window_start) DO UPDATE SET used = r.used + 1
            WHERE r.used < p_account_hourly;
    IF NOT FOUND THEN
        verdict := 'limit:account_hourly';
        retry_in := window_at + 3600 - now_at;
        RETURN;
    END IF;
    INSERT INTO reply_counter AS r (key, window_start, used)
        VALUES (group_key, this_window, 1)
        ON CONFLICT (key, window_start) DO UPDATE SET used = r.used + 1
            WHERE r.used < p_group_hourly;
    IF NOT FOUND THEN
        UPDATE reply_counter SET used = used - 1
            WHERE key = account_key AND window_start = this_window;
        verdict := 'limit:group_hourly';
        retry_in := window_at + 3600 - now_at;
        RETURN;
    END IF;
    INSERT INTO reply_counter AS r (key, window_start, used, last_at)
        VALUES (pair_key, 'epoch', 1, now_at)
        ON CONFLICT (key, window_start) DO UPDATE
            SET used = r.used + 1, prev_at = r.last_at, last_at = EXCLUDED.last_at
            WHERE p_min_interval <= 0 OR r.last_at <= now_at - p_min_interval;
    IF NOT FOUND THEN
        UPDATE reply_counter SET used = used - 1
            WHERE key IN (account_key, group_key) AND window_start = this_window;
        SELECT r.last_at INTO last_sent FROM reply_counter r
            WHERE r.key = pair_key AND r.window_start = 'epoch';
        verdict := 'limit:min_interval';
        retry_in := last_sent + p_min_interval - now_at;
        RETURN;
    END IF;
    INSERT INTO reply_claim (key, account_id, chat_id, claimed_at, expires_at)
        VALUES (p_key, p_account, p_chat, clock_timestamp(),
                clock_timestamp() + make_interval(secs => p_claim_seconds))
        ON CONFLICT (key) DO UPDATE
            SET account_id = EXCLUDED.account_id, chat_id = EXCLUDED.chat_id,
                claimed_at = EXCLUDED.claimed_at, expires_at = EXCLUDED.expires_at
            WHERE reply_claim.expires_at <= EXCLUDED.claimed_at
        RETURNING account_id INTO holder;
    IF NOT FOUND THEN
        UPDATE reply_counter SET used = used - 1
            WHERE key IN (account_key, group_key) AND window_start = this_window;
        UPDATE reply_counter SET used = used - 1, last_at = prev_at
            WHERE key = pair_key AND window_start = 'epoch';
        SELECT c.account_id INTO holder FROM reply_claim c WHERE c.key = p_key;
        verdict := CASE WHEN holder = p_account THEN 'duplicate' ELSE 'claimed_by_other' END;
        RETURN;
    END IF;
    IF p_announce IS NOT NULL THEN
        PERFORM pg_notify('tgfleet_replies', p_announce);
    END IF;
    verdict := 'admitted';
    reserved_at := now_at;
END
$$
"""

# The migrated function's early look at the claim, removed for the "no probe" variant.
PROBE = re.compile(
    r"\n[ \t]*SELECT c\.account_id INTO holder FROM reply_claim c\s+WHERE c\.key = p_key"
    r" AND c\.expires_at > clock_timestamp\(\);\s*IF FOUND THEN.*?END IF;",
    re.DOTALL,
)


@dataclass(frozen=True)
class Variant:
    name: str
    function: str
    windows: str  # the table of its windows or counters
    claims: str  # the table of its claims

    @property
    def fixed(self) -> bool:
        return self.windows == "reply_counter"

    @property
    def call(self) -> str:
        return CALL.format(self.function)


SLIDING = Variant("sliding", "tgfleet_reply_admit", "reply_window", "reply_claim")
FIXED = Variant("fixed", "bench_reply_admit_fixed", "reply_counter", "bench_fixed_claim")
NO_PROBE = Variant(
    "sliding, no probe", "bench_reply_admit_noprobe", "bench_noprobe_window", "bench_noprobe_claim"
)
TABLES = (
    "reply_window",
    "reply_claim",
    "reply_counter",
    "bench_fixed_claim",
    "bench_noprobe_window",
    "bench_noprobe_claim",
)


def on_tables(source: str, variant: Variant) -> str:
    """A function's text with the migrated tables replaced by the variant's."""
    source = re.sub(r"\breply_claim\b", variant.claims, source)
    return re.sub(r"\breply_window\b", variant.windows, source)


@dataclass(frozen=True)
class Shape:
    name: str
    groups: int
    group_hourly: int


SHAPES = (
    Shape("contention, group_hourly 1000", 5, 1_000),
    Shape("contention, group_hourly 20", 5, 20),
    Shape("spread (200 groups)", 200, 1_000),
)


@dataclass
class Call:
    done: float  # seconds of the variant's turns so far
    statement_ms: float  # the round trip alone
    call_ms: float  # with the wait for the worker's connection
    verdict: str
    chat: int
    fill: int  # admitted in the call's group before it completed, as the clients counted


@dataclass
class Run:
    variant: Variant
    shape: Shape
    calls: list[Call] = field(default_factory=list)
    wall: float = 0.0  # seconds of its turns
    backend_cpu: float = 0.0  # seconds: the variant's backends
    server_cpu: float = 0.0  # seconds: every postgres process (other users' load included)
    bench_cpu: float = 0.0  # seconds: this process
    fill: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    turns: list[tuple[float, float]] = field(default_factory=list)  # calls/s, p50 ms
    seeded: dict[str, tuple[int, int]] = field(default_factory=dict)  # rows, bytes
    tables: dict[str, tuple[int, int]] = field(default_factory=dict)  # after the shape
    checks: list[str] = field(default_factory=list)
    ok: bool = True

    @property
    def rate(self) -> float:
        return len(self.calls) / self.wall

    def statement(self, q: float) -> float:
        return pct([c.statement_ms for c in self.calls], q)

    def call(self, q: float) -> float:
        return pct([c.call_ms for c in self.calls], q)

    @property
    def admitted(self) -> int:
        return sum(1 for c in self.calls if c.verdict == "admitted")

    @property
    def cpu_per_call_ms(self) -> float:
        return self.backend_cpu / max(1, len(self.calls)) * 1000

    def grown(self, table: str) -> tuple[int, int]:
        """Rows and bytes the shape added to ``table``."""
        rows, size = self.tables[table]
        seeded_rows, seeded_size = self.seeded[table]
        return rows - seeded_rows, size - seeded_size

    @property
    def window_bytes(self) -> int:
        return self.grown(self.variant.windows)[1]


@dataclass
class Fleet:
    dsn: str
    url: str  # SQLAlchemy's spelling
    accounts: list[uuid.UUID]
    variants: list[Variant]
    note: str = ""


# ----------------------------------------------------------------------------- database


def dsn_for(database: str) -> str:
    return make_url(SERVER).set(database=database).render_as_string(hide_password=False)


async def admin_execute(statement: str) -> None:
    connection = await asyncpg.connect(SERVER, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def prepare(dsn: str) -> Fleet:
    """Migrate; the accounts; the other variants' tables and functions."""
    url = make_url(dsn).set(drivername="postgresql+asyncpg").render_as_string(False)
    await asyncio.to_thread(migrations.upgrade, url)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            """
            INSERT INTO account (id, label, tg_user_id, desired_state, restart_seq,
                                 created_at, updated_at)
            SELECT gen_random_uuid(), 'bench-' || lpad(i::text, 5, '0'), $1 + i, 'running',
                   0, now(), now()
            FROM generate_series(0, $2 - 1) i
            """,
            FIRST_SENDER,
            ACCOUNTS,
        )
        rows = await connection.fetch("SELECT id FROM account ORDER BY label")
        for statement in SCHEMA:
            await connection.execute(statement)
        await connection.execute(on_tables(FIXED_FUNCTION, FIXED))
        variants = [SLIDING, FIXED]
        note = ""
        source = await connection.fetchval(
            "SELECT pg_get_functiondef('tgfleet_reply_admit'::regproc)"
        )
        stripped, found = PROBE.subn("", source)
        if found == 1 and "public.tgfleet_reply_admit(" in stripped:
            # The window lock is a helper of its own: the variant gets a copy on its tables.
            lock = f"{NO_PROBE.function}_window_lock"
            helper = await connection.fetchval(
                "SELECT pg_get_functiondef('tgfleet_reply_window_lock'::regproc)"
            )
            helper = helper.replace("public.tgfleet_reply_window_lock(", f"{lock}(")
            await connection.execute(on_tables(helper, NO_PROBE))
            renamed = stripped.replace("public.tgfleet_reply_admit(", f"{NO_PROBE.function}(")
            renamed = renamed.replace("tgfleet_reply_window_lock(", f"{lock}(")
            await connection.execute(on_tables(renamed, NO_PROBE))
            variants.append(NO_PROBE)
        else:
            note = "The no-probe variant was skipped: the probe's text was not found."
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return Fleet(dsn, url, [r["id"] for r in rows], variants, note)


async def reset(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"TRUNCATE {', '.join(TABLES)}")
    finally:
        await connection.close()


async def seed(fleet: Fleet) -> dict[str, tuple[int, int]]:
    """Empty tables, then what a fleet's tables hold when nothing is due: a window (or
    counter) row for every account, every group of either shape and every pair, its last
    send two hours ago, and ``SEEDED_CLAIMS`` expired claims; analysed. Without it the
    functions' statements are planned against empty tables: sequential scans, which cost
    more with every row the run adds, until autovacuum's next ANALYZE replans them. Returns
    the rows and bytes of every table so seeded."""
    await reset(fleet.dsn)
    connection = await asyncpg.connect(fleet.dsn)
    try:
        now = await connection.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        keys = """
            WITH a AS (SELECT id, row_number() OVER (ORDER BY label) - 1 AS n FROM account)
            SELECT 'a:' || id AS key FROM a
            UNION SELECT 'g:' || ($1::bigint - g) FROM generate_series(0, $2 - 1) g
            UNION SELECT 'p:' || id || ':' || ($1::bigint - n % 5) FROM a
            UNION SELECT 'p:' || id || ':' || ($1::bigint - n % $2) FROM a
        """
        for variant in (SLIDING, FIXED, NO_PROBE):
            await connection.execute(
                f"""
                INSERT INTO {variant.claims} (key, account_id, chat_id, claimed_at, expires_at)
                SELECT 'old:' || i, a.id, $1::bigint - i % $2, now() - interval '2 hours',
                       now() - interval '110 minutes'
                FROM generate_series(0, $3 - 1) i
                JOIN (SELECT id, row_number() OVER (ORDER BY label) - 1 AS n FROM account) a
                  ON a.n = i % $4
                """,  # noqa: S608 - our table names
                FIRST_CHAT,
                SHAPES[-1].groups,
                SEEDED_CLAIMS,
                len(fleet.accounts),
            )
            if variant.fixed:
                await connection.execute(
                    f"""
                    INSERT INTO reply_counter (key, window_start, used, last_at)
                    SELECT key,
                           CASE WHEN key LIKE 'p:%' THEN 'epoch'
                                ELSE to_timestamp(floor($3::float8 / 3600) * 3600 - 7200) END,
                           0, $3::float8 - 7200
                    FROM ({keys}) k
                    """,  # noqa: S608 - our SQL
                    FIRST_CHAT,
                    SHAPES[-1].groups,
                    now,
                )
            else:
                await connection.execute(
                    f"""
                    INSERT INTO {variant.windows} (key, sent_at)
                    SELECT key, ARRAY[$3::float8 - 7200] FROM ({keys}) k
                    """,  # noqa: S608 - our SQL
                    FIRST_CHAT,
                    SHAPES[-1].groups,
                    now,
                )
        await connection.execute(f"VACUUM ANALYZE {', '.join(TABLES)}")
        return await table_sizes(connection)
    finally:
        await connection.close()


async def table_sizes(connection: Any) -> dict[str, tuple[int, int]]:
    sizes = {}
    for table in TABLES:
        rows = await connection.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
        size = await connection.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
        sizes[table] = (rows, size)
    return sizes


def server_cpu() -> dict[int, float]:
    """utime + stime of every postgres process on this machine, by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                found[int(entry.name)] = cpu_seconds(int(entry.name))
        except OSError:
            continue  # gone meanwhile
    return found


def cpu_since(before: dict[int, float]) -> float:
    return sum(t - before.get(pid, 0.0) for pid, t in server_cpu().items())


def chat_of(group: int) -> int:
    return FIRST_CHAT - group


# ----------------------------------------------------------------------------- load


def arguments(
    group_hourly: int, chat: int, account: uuid.UUID, serial: int, worker: int
) -> tuple[Any, ...]:
    key = f"{chat}:{serial}"
    return (
        key,
        account,
        chat,
        10_000_000_000 + serial % 1_000_000,  # a sender outside the fleet
        MIN_INTERVAL,
        ACCOUNT_HOURLY,
        group_hourly,
        CLAIM_SECONDS,
        f"{chat} {key} w{worker}",
    )


@dataclass
class Workers:
    """One variant's simulated workers: a queue of free prepared calls each."""

    connections: list[Any]
    free: list[asyncio.Queue[Any]]


async def open_workers(dsn: str, variant: Variant) -> Workers:
    connections = []
    free = []
    for _ in range(WORKERS):
        queue: asyncio.Queue[Any] = asyncio.Queue()
        for _ in range(POOL):
            connection = await asyncpg.connect(dsn)
            connections.append(connection)
            queue.put_nowait(await connection.prepare(variant.call))
        free.append(queue)
    return Workers(connections, free)


async def turn(
    fleet: Fleet, run: Run, workers: Workers, seconds: float, serial: Iterator[int], seed: int
) -> None:
    """One turn of a variant: every caller task of every worker for ``seconds``."""
    shape = run.shape
    pids = [c.get_server_pid() for c in workers.connections]
    offset = run.wall

    async def caller(worker: int, rng: random.Random, deadline: float) -> None:
        free = workers.free[worker]
        while time.perf_counter() < deadline:
            index = rng.randrange(len(fleet.accounts))
            chat = chat_of(index % shape.groups)
            args = arguments(shape.group_hourly, chat, fleet.accounts[index], next(serial), worker)
            asked = time.perf_counter()
            prepared = await free.get()
            sent = time.perf_counter()
            try:
                row = await prepared.fetchrow(*args)
            finally:
                free.put_nowait(prepared)
            done = time.perf_counter()
            verdict = row[0]
            run.calls.append(
                Call(
                    offset + done - start,
                    (done - sent) * 1000,
                    (done - asked) * 1000,
                    verdict,
                    chat,
                    run.fill[chat],
                )
            )
            if verdict == "admitted":
                run.fill[chat] += 1
            # Let the caller woken by the put take the connection (asyncio.Queue would
            # hand it straight back to this task, starving the others).
            await asyncio.sleep(0)

    backends = sum(cpu_seconds(pid) for pid in pids)
    everyone = server_cpu()
    own = own_cpu()
    first = len(run.calls)
    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for worker in range(WORKERS):
            for task in range(CALLERS):
                rng = random.Random(seed * 10_000 + worker * 100 + task)  # noqa: S311 - a load
                group.create_task(caller(worker, rng, start + seconds))
    wall = time.perf_counter() - start
    run.wall += wall
    these = [c.statement_ms for c in run.calls[first:]]
    run.turns.append((len(these) / wall, pct(these, 0.5) if these else 0.0))
    run.backend_cpu += sum(cpu_seconds(pid) for pid in pids) - backends
    run.server_cpu += cpu_since(everyone)
    run.bench_cpu += own_cpu() - own


async def load(fleet: Fleet, shape: Shape, serial: Iterator[int]) -> list[Run]:
    """Every variant on ``shape`` for ``SECONDS``, in alternating turns."""
    seeded = await seed(fleet)
    runs = [Run(variant, shape, seeded=seeded) for variant in fleet.variants]
    rounds = max(1, round(SECONDS / SLICE))
    async with contextlib.AsyncExitStack() as stack:
        workers = []
        for variant in fleet.variants:
            opened = await open_workers(fleet.dsn, variant)
            for connection in opened.connections:
                stack.push_async_callback(connection.close)
            workers.append(opened)
        for number in range(rounds):
            order = list(zip(runs, workers, strict=True))
            for run, their in order if number % 2 == 0 else reversed(order):
                await turn(fleet, run, their, SECONDS / rounds, serial, number)
    return runs


# ----------------------------------------------------------------------------- one caller

SingleCall = Callable[[int], Awaitable[object]]


async def single_paths(fleet: Fleet, stack: contextlib.AsyncExitStack) -> dict[str, SingleCall]:
    """One caller per path, spread shape: each variant with synchronous_commit on and off,
    and the baseline through ``lease_service.admit_reply`` as ``FleetGate`` asks (a
    connection of an asyncpg pool per call, no reset on release)."""
    shape = SHAPES[-1]

    def target(serial: int) -> tuple[int, uuid.UUID]:
        index = serial * 7_919 % len(fleet.accounts)
        return chat_of(index % shape.groups), fleet.accounts[index]

    def prepared_call(prepared: Any) -> SingleCall:
        async def call(serial: int) -> object:
            chat, account = target(serial)
            return await prepared.fetchrow(*arguments(shape.group_hourly, chat, account, serial, 0))

        return call

    paths: dict[str, SingleCall] = {}
    for variant in fleet.variants:
        for synchronous in ("on", "off"):
            connection = await asyncpg.connect(fleet.dsn)
            stack.push_async_callback(connection.close)
            await connection.execute(f"SET synchronous_commit = {synchronous}")
            paths[f"{variant.name}|{synchronous}"] = prepared_call(
                await connection.prepare(variant.call)
            )
    pool = await asyncpg.create_pool(fleet.dsn, min_size=1, max_size=1, reset=_leave_as_is)
    stack.push_async_callback(pool.close)

    async def service(serial: int) -> object:
        chat, account = target(serial)
        async with pool.acquire() as connection:
            return await lease_service.admit_reply(
                connection,
                key=f"{chat}:{serial}",
                account_id=account,
                chat_id=chat,
                sender_id=10_000_000_000 + serial,
                min_interval=MIN_INTERVAL,
                account_hourly=ACCOUNT_HOURLY,
                group_hourly=shape.group_hourly,
                claim_seconds=CLAIM_SECONDS,
                announce=f"{chat} {chat}:{serial} w0",
            )

    paths[f"{SLIDING.name} through lease_service.admit_reply (as FleetGate asks)|on"] = service
    return paths


async def single(fleet: Fleet, serial: Iterator[int]) -> dict[str, list[float]]:
    """Latencies (ms) of one caller alone per path, the paths taking turns."""
    await seed(fleet)
    async with contextlib.AsyncExitStack() as stack:
        paths = await single_paths(fleet, stack)
        for call in paths.values():  # the first call plans the function's statements
            await call(next(serial))
        latencies: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(SINGLE_ROUNDS):
            for name, call in paths.items():
                deadline = time.perf_counter() + SINGLE_SECONDS / SINGLE_ROUNDS
                while time.perf_counter() < deadline:
                    number = next(serial)
                    sent = time.perf_counter()
                    await call(number)
                    latencies[name].append((time.perf_counter() - sent) * 1000)
    return latencies


# ----------------------------------------------------------------------------- checks


async def inspect(fleet: Fleet, run: Run) -> None:
    """Table sizes, and whether the limits held, exactly, with every admission counted
    (the seeded rows left out: expired claims, sends two hours old, counts of 0)."""
    variant = run.variant
    connection = await asyncpg.connect(fleet.dsn)
    try:
        run.tables = await table_sizes(connection)
        claims: dict[int, int] = {
            r["chat_id"]: r["n"]
            for r in await connection.fetch(
                f"SELECT chat_id, count(*) AS n FROM {variant.claims}"  # noqa: S608
                " WHERE key NOT LIKE 'old:%' GROUP BY chat_id"
            )
        }
        total = sum(claims.values())
        limit = run.shape.group_hourly
        # A group that refused a call for its limit must have admitted exactly `limit`.
        short = sorted(
            {c.chat for c in run.calls if c.verdict == "limit:group_hourly"}
            - {chat for chat, n in claims.items() if n == limit}
        )
        most = max(claims.values(), default=0)
        windows: set[object] = set()
        if variant.fixed:
            rows = await connection.fetch(
                "SELECT key, window_start, used FROM reply_counter"
                " WHERE key LIKE 'g:%' AND used > 0"
            )
            windows = {r["window_start"] for r in rows}
        checks = [(f"claims {total:,} = admitted {run.admitted:,}", total == run.admitted)]
        if len(windows) > 1:  # a fixed window's run crossed a clock hour: up to 2L a group
            run.checks.append(f"the run crossed a clock hour ({len(windows)} windows)")
        else:
            checks += [
                (f"most claims in a group {most:,} <= {limit:,}", most <= limit),
                (f"groups refused short of the limit: {short or 'none'}", not short),
            ]
        if variant.fixed:
            top = max((r["used"] for r in rows), default=0)
            counted: dict[int, int] = defaultdict(int)
            for r in rows:
                counted[int(r["key"][2:])] += r["used"]
            sums = await connection.fetchrow(
                """
                SELECT coalesce(sum(used) FILTER (WHERE key LIKE 'a:%'), 0) AS a,
                       coalesce(sum(used) FILTER (WHERE key LIKE 'p:%'), 0) AS p
                FROM reply_counter
                """
            )
            checks += [
                (f"group counters at most {top:,} <= {limit:,} per window", top <= limit),
                (
                    "group counters = claims per group",
                    {g: n for g, n in counted.items() if n} == claims,
                ),
                (
                    f"account, pair counters {sums['a']:,}, {sums['p']:,} = claims",
                    sums["a"] == sums["p"] == total,
                ),
            ]
        else:
            arrays = await connection.fetch(
                "SELECT key, (SELECT count(*) FROM unnest(sent_at) t"  # noqa: S608
                f" WHERE t > extract(epoch FROM now()) - 3600) AS n FROM {variant.windows}"
            )
            groups = {int(r["key"][2:]): r["n"] for r in arrays if r["key"].startswith("g:")}
            accounts = sum(r["n"] for r in arrays if r["key"].startswith("a:"))
            pairs = sum(r["n"] for r in arrays if r["key"].startswith("p:"))
            checks += [
                (
                    "group windows = claims per group",
                    {g: n for g, n in groups.items() if n} == claims,
                ),
                (
                    f"account, pair windows {accounts:,}, {pairs:,} = claims",
                    accounts == pairs == total,
                ),
            ]
        for said, ok in checks:
            run.checks.append(said if ok else f"FAIL: {said}")
            run.ok = run.ok and ok
    finally:
        await connection.close()


WINDOW_SIZES = (0, 250, 500, 1_000)
SIZE_ROUNDS = 10
SIZE_TURN = 0.05  # seconds per variant, size and path in a round


@dataclass
class Sizes:
    """Statement latencies (ms) by variant name, path and sends in the group's window."""

    latencies: dict[tuple[str, str, int], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
    unexpected: int = 0  # calls whose verdict was not the path's

    def p50(self, variant: Variant, path: str, size: int) -> float:
        return pct(self.latencies[(variant.name, path, size)] or [0.0], 0.5)


async def window_sizes(fleet: Fleet) -> Sizes:
    """One caller; a group whose window already holds N sends in this hour (the sliding
    variant: N times in its array; the fixed one: its counter at N); a call admitted into
    it (group_hourly N + 1000) and one refused (group_hourly N), each inside a transaction
    rolled back, so N stays and the commit is not timed: what the window itself costs."""
    await seed(fleet)
    connection = await asyncpg.connect(fleet.dsn)
    sizes = Sizes()
    try:
        now = await connection.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        for size in WINDOW_SIZES:
            key = f"g:{chat_of(500_000 + size)}"
            await connection.execute(
                "INSERT INTO reply_window (key, sent_at) VALUES ($1, ARRAY("
                " SELECT $2::float8 - 60 - i * 0.001 FROM generate_series($3, 1, -1) i))",
                key,
                now,
                size,
            )
            await connection.execute(
                "INSERT INTO reply_counter (key, window_start, used)"
                " VALUES ($1, to_timestamp(floor($2::float8 / 3600) * 3600), $3)",
                key,
                now,
                size,
            )
        prepared = {v: await connection.prepare(v.call) for v in (SLIDING, FIXED)}
        rng = random.Random(11)  # noqa: S311 - a reproducible load, not security
        serial = itertools.count(1)
        cases = [
            (variant, path, size)
            for variant in (SLIDING, FIXED)
            for size in WINDOW_SIZES
            for path in ("admitted", "refused")
            if size or path == "admitted"
        ]
        for _ in range(SIZE_ROUNDS):
            for variant, path, size in cases:
                limit = size + 1_000 if path == "admitted" else size
                chat = chat_of(500_000 + size)
                deadline = time.perf_counter() + SIZE_TURN
                while time.perf_counter() < deadline:
                    account = fleet.accounts[rng.randrange(len(fleet.accounts))]
                    transaction = connection.transaction()
                    await transaction.start()
                    sent = time.perf_counter()
                    row = await prepared[variant].fetchrow(
                        *arguments(limit, chat, account, next(serial), 0)
                    )
                    took = (time.perf_counter() - sent) * 1000
                    await transaction.rollback()
                    sizes.latencies[(variant.name, path, size)].append(took)
                    wanted = "admitted" if path == "admitted" else "limit:group_hourly"
                    sizes.unexpected += row[0] != wanted
    finally:
        await connection.close()
    return sizes


async def boundary(fleet: Fleet, variant: Variant) -> int:
    """``BOUNDARY_LIMIT`` replies recorded a millisecond before this clock hour began, then
    twice as many new messages in the group now: how many are admitted (the sliding
    window: none; a fixed one: the limit again, 2L within far less than an hour)."""
    await reset(fleet.dsn)
    chat = chat_of(999_999)
    connection = await asyncpg.connect(fleet.dsn)
    try:
        hour = await connection.fetchval(
            "SELECT floor(extract(epoch FROM clock_timestamp()) / 3600)::float8 * 3600"
        )
        if variant.fixed:
            await connection.execute(
                "INSERT INTO reply_counter (key, window_start, used)"
                " VALUES ($1, to_timestamp($2), $3)",
                f"g:{chat}",
                hour - 3600,
                BOUNDARY_LIMIT,
            )
        else:
            await connection.execute(
                f"INSERT INTO {variant.windows} (key, sent_at)"  # noqa: S608
                " VALUES ($1, array_fill($2::float8, ARRAY[$3::int]))",
                f"g:{chat}",
                hour - 0.001,
                BOUNDARY_LIMIT,
            )
        prepared = await connection.prepare(variant.call)
        admitted = 0
        for serial in range(2 * BOUNDARY_LIMIT):
            row = await prepared.fetchrow(
                *arguments(BOUNDARY_LIMIT, chat, fleet.accounts[serial], serial, 0)
            )
            admitted += row[0] == "admitted"
    finally:
        await connection.close()
    return admitted


@dataclass
class Race:
    first: str
    second: str
    pruned: str
    group_window: str
    claims: int

    @property
    def reproduced(self) -> bool:
        return self.first == self.second == "admitted" and self.claims == 2


async def prune_race(fleet: Fleet) -> Race:
    """The sliding function inserts the three window rows (``ON CONFLICT DO NOTHING``), then
    locks them one statement at a time. The leader's prune (``PRUNE_WINDOWS``: rows whose
    newest send is an hour old) may delete a row in between: the ``SELECT ... FOR UPDATE``
    then finds none, the window is NULL, ``cardinality(NULL) >= limit`` is NULL (not
    true), the call is admitted and its ``UPDATE`` of that row writes nothing. Staged
    here: a group quiet for two hours, an account whose row another admission holds
    (here a transaction holding it ``FOR UPDATE``), the prune while the call waits for it;
    then a second account answers in the same group, ``group_hourly`` 1."""
    await reset(fleet.dsn)
    chat = chat_of(777_777)
    first, second = fleet.accounts[0], fleet.accounts[1]
    holder = await asyncpg.connect(fleet.dsn)
    caller = await asyncpg.connect(fleet.dsn)
    try:
        now = await holder.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
        await holder.executemany(
            "INSERT INTO reply_window (key, sent_at) VALUES ($1, $2)",
            [
                (f"a:{first}", [now - 10]),  # the account answered elsewhere 10 s ago
                (f"g:{chat}", [now - 7200]),  # the group: quiet for two hours
                (f"p:{first}:{chat}", [now - 7200]),
            ],
        )
        async with asyncio.TaskGroup() as group, holder.transaction():
            await holder.execute(
                "SELECT 1 FROM reply_window WHERE key = $1 FOR UPDATE", f"a:{first}"
            )
            call = group.create_task(
                caller.fetchrow(SLIDING.call, *arguments(1, chat, first, 1, 0))
            )
            async with asyncio.timeout(10):
                while (  # noqa: ASYNC110 - another session's state
                    await holder.fetchval(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                        caller.get_server_pid(),
                    )
                    != "Lock"
                ):
                    await asyncio.sleep(0.01)
            pruner = await asyncpg.connect(fleet.dsn)
            try:
                pruned = await pruner.execute(str(PRUNE_WINDOWS.text))
            finally:
                await pruner.close()
        second_row = await caller.fetchrow(SLIDING.call, *arguments(1, chat, second, 2, 0))
        window = await caller.fetchval(
            "SELECT sent_at FROM reply_window WHERE key = $1", f"g:{chat}"
        )
        claims = await caller.fetchval("SELECT count(*) FROM reply_claim WHERE chat_id = $1", chat)
    finally:
        await holder.close()
        await caller.close()
    return Race(
        call.result()[0],
        second_row[0],
        pruned,
        "no row" if window is None else f"{len(window)} send(s)",
        claims,
    )


@dataclass
class Inner:
    label: str
    verdict: str
    total_ms: float
    statements: list[tuple[float, str]]  # ms, the statement's first line


async def inner_plans(fleet: Fleet, variant: Variant, limit: int) -> list[Inner]:
    """One call refused by a full group window and one admitted into it (its limit raised
    to 2L), with ``auto_explain`` (ANALYZE, nested statements) sent to the client: where
    the time goes inside the function."""
    connection = await asyncpg.connect(fleet.dsn)
    logged: list[str] = []
    connection.add_log_listener(lambda _c, message: logged.append(message.message))
    found = []
    try:
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_nested_statements = on",
            "SET client_min_messages = log",
        ):
            await connection.execute(setting)
        prepared = await connection.prepare(variant.call)
        cases = (("refused, window full", limit, -1), ("admitted, limit 2L", 2 * limit, -3))
        for label, group_hourly, serial in cases:
            for key in (serial, serial - 1):  # the first plans the function's statements
                logged.clear()
                row = await prepared.fetchrow(
                    *arguments(group_hourly, chat_of(0), fleet.accounts[0], key, 0)
                )
            await asyncio.sleep(0.05)  # the log messages come before the result; be sure
            statements = []
            total = 0.0
            for message in logged:
                matched = re.match(
                    r"duration: ([\d.]+) ms\s+plan:\s*Query Text: (.*)", message, re.DOTALL
                )
                if matched is None:
                    continue
                first_line = " ".join(matched.group(2).strip().split("\n")[0].split())
                if first_line.startswith("SELECT verdict"):
                    total = float(matched.group(1))
                else:
                    statements.append((float(matched.group(1)), first_line))
            found.append(Inner(label, row[0], total, sorted(statements, reverse=True)))
    finally:
        await connection.close()
    return found


# ----------------------------------------------------------------------------- report


def ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def kib(size: int) -> str:
    return f"{size / 1024:,.0f}"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def main_table(runs: Sequence[Run]) -> list[str]:
    lines = [
        (
            "| shape | variant | calls/s | admitted | statement p50 / p99 ms"
            " | call p50 / p99 ms (with the wait) | PG CPU ms/call | its backends % core"
            " | all postgres % core | bench % core | window table: new rows / +KiB"
            " | claim table: new rows / +KiB | checks |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        window_rows, window_bytes = r.grown(r.variant.windows)
        claim_rows, claim_bytes = r.grown(r.variant.claims)
        lines.append(
            f"| {r.shape.name} | {r.variant.name} | {r.rate:,.0f} | {r.admitted:,}"
            f" | {ms(r.statement(0.5))} / {ms(r.statement(0.99))}"
            f" | {ms(r.call(0.5))} / {ms(r.call(0.99))} | {r.cpu_per_call_ms:.3f}"
            f" | {r.backend_cpu / r.wall * 100:.0f} | {r.server_cpu / r.wall * 100:.0f}"
            f" | {r.bench_cpu / r.wall * 100:.0f} | {window_rows:,} / {kib(window_bytes)}"
            f" | {claim_rows:,} / {kib(claim_bytes)} | {'ok' if r.ok else '**FAIL**'} |"
        )
    return lines


def ratio_table(runs: Sequence[Run]) -> list[str]:
    lines = [
        (
            "| shape | variant | calls/s | calls/s, median of the rounds' ratios"
            " | statement p50 | statement p99 | PG CPU/call | window table growth |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    base = {r.shape.name: r for r in runs if r.variant == SLIDING}
    for r in runs:
        b = base[r.shape.name]
        if r is b:
            continue
        lines.append(
            f"| {r.shape.name} | {r.variant.name} | {ratio(r.rate, b.rate)}"
            f" | {round_ratio(r, b):.2f}x"
            f" | {ratio(r.statement(0.5), b.statement(0.5))}"
            f" | {ratio(r.statement(0.99), b.statement(0.99))}"
            f" | {ratio(r.cpu_per_call_ms, b.cpu_per_call_ms)}"
            f" | {ratio(r.window_bytes, b.window_bytes)} |"
        )
    return lines


def round_ratio(run: Run, base: Run) -> float:
    """The median over the rounds of this variant's calls/s over the baseline's in the same
    round: the two turns of a round saw about the same load from the rest of the machine."""
    return statistics.median(
        mine[0] / theirs[0] for mine, theirs in zip(run.turns, base.turns, strict=True)
    )


FILL_BUCKETS = ("0-25 %", "25-50 %", "50-75 %", "75-100 %", "full: refused")


def fill_table(runs: Sequence[Run]) -> list[str]:
    lines = [
        "| variant | " + " | ".join(FILL_BUCKETS) + " | last group full after |",
        "|---|" + "---:|" * (len(FILL_BUCKETS) + 1),
    ]
    for r in runs:
        limit = r.shape.group_hourly
        buckets: list[list[float]] = [[] for _ in FILL_BUCKETS]
        for c in r.calls:
            buckets[min(4, c.fill * 4 // limit)].append(c.statement_ms)
        filled = [c.done for c in r.calls if c.verdict == "admitted"]
        cells = [
            f"{ms(pct(b, 0.5))} / {ms(pct(b, 0.99))} ({len(b):,})" if b else "-" for b in buckets
        ]
        last = f"{max(filled):.1f} s" if filled else "-"
        lines.append(f"| {r.variant.name} | " + " | ".join(cells) + f" | {last} |")
    return lines


def single_table(singles: dict[str, list[float]]) -> list[str]:
    base = pct(singles[f"{SLIDING.name}|on"], 0.5)
    lines = [
        "| path | synchronous_commit | calls | p50 ms | p99 ms | p50 vs sliding (on) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, values in singles.items():
        name, synchronous = key.split("|")
        lines.append(
            f"| {name} | {synchronous} | {len(values):,} | {ms(pct(values, 0.5))}"
            f" | {ms(pct(values, 0.99))} | {ratio(pct(values, 0.5), base)} |"
        )
    return lines


def plan_lines(plans: dict[str, list[Inner]]) -> list[str]:
    lines = []
    for name, cases in plans.items():
        for case in cases:
            top = "; ".join(f"{t:.3f} ms `{q[:58]}`" for t, q in case.statements[:3])
            lines.append(
                f"- {name}, {case.label} ({case.verdict}): {case.total_ms:.3f} ms in all (with"
                f" auto_explain's own logging); the costliest statements inside: {top}"
            )
    return lines


def sizes_unexpected(sizes: Sizes) -> str:
    if sizes.unexpected:
        return f"**{sizes.unexpected} calls had another verdict than their case's**"
    return "every verdict as expected"


def check_lines(runs: Sequence[Run]) -> list[str]:
    return [
        f"- {r.shape.name}, {r.variant.name}: {'; '.join(r.checks)}" + ("" if r.ok else " **FAIL**")
        for r in runs
    ]


@dataclass
class Results:
    fleet: Fleet
    version: str
    loads: tuple[tuple[float, ...], tuple[float, ...]]
    singles: dict[str, list[float]]
    runs: list[Run]
    plans: dict[str, list[Inner]]
    sizes: Sizes
    boundaries: dict[Variant, int]
    race: Race
    elapsed: float


def size_table(sizes: Sizes) -> list[str]:
    lines = [
        "| variant | call | " + " | ".join(f"{n:,} sends" for n in WINDOW_SIZES) + " |",
        "|---|---|" + "---:|" * len(WINDOW_SIZES),
    ]
    for variant in (SLIDING, FIXED):
        for path in ("admitted", "refused"):
            cells = [
                ms(sizes.p50(variant, path, n)) if sizes.latencies[(variant.name, path, n)] else "-"
                for n in WINDOW_SIZES
            ]
            lines.append(f"| {variant.name} | {path} | " + " | ".join(cells) + " |")
    return lines


def conclusion(results: Results) -> str:
    by = {(r.shape.name, r.variant): r for r in results.runs}
    worst = [by[(SHAPES[0].name, v)] for v in (SLIDING, FIXED)]
    short = [(by[(shape.name, SLIDING)], by[(shape.name, FIXED)]) for shape in SHAPES[1:]]
    close = all(abs(round_ratio(f, s) - 1) < 0.2 for s, f in short)
    probe = [
        round_ratio(r, by[(r.shape.name, SLIDING)]) for r in results.runs if r.variant == NO_PROBE
    ]
    one = {key: pct(values, 0.5) for key, values in results.singles.items()}
    sizes = results.sizes
    top = WINDOW_SIZES[-1]
    filled = all(r.admitted >= SHAPES[0].groups * SHAPES[0].group_hourly for r in worst)
    wins = round_ratio(worst[1], worst[0]) > 1.2 and (
        worst[1].cpu_per_call_ms < 0.8 * worst[0].cpu_per_call_ms
    )
    headline = (
        "fixed counters win where the sliding window is at its worst"
        if wins
        else "in this run fixed counters did not clearly win even where the sliding window is"
        " at its worst"
    )
    text = (
        f"{headline}. With group windows"
        + (f" filling to {top:,} sends" if filled else " that did not fill in this short run")
        + " (contention, group_hourly 1000) they took"
        f" {ratio(worst[1].rate, worst[0].rate)} the calls/s (median of the rounds"
        f" {round_ratio(worst[1], worst[0]):.2f}x) at"
        f" {ratio(worst[1].cpu_per_call_ms, worst[0].cpu_per_call_ms)} the PostgreSQL CPU per"
        " call, and the sliding window's table grew by"
        f" {kib(worst[0].window_bytes)} KiB against {kib(worst[1].window_bytes)} KiB (every"
        f" admission rewrites the group's array, {top * 8 // 1000} KB at {top:,} sends, in"
        " TOAST). Measured alone, without the commit, the sliding window's cost grows with"
        " the sends it holds: an admission"
        f" {ms(sizes.p50(SLIDING, 'admitted', 0))} ms into an empty window and"
        f" {ms(sizes.p50(SLIDING, 'admitted', top))} ms into {top:,} sends, a refusal"
        f" {ms(sizes.p50(SLIDING, 'refused', WINDOW_SIZES[1]))} ms at"
        f" {WINDOW_SIZES[1]:,} and {ms(sizes.p50(SLIDING, 'refused', top))} ms at {top:,}"
        " (unnest, filter and sort of the array, every call); the counters stay flat"
        f" ({ms(sizes.p50(FIXED, 'admitted', 0))} and {ms(sizes.p50(FIXED, 'admitted', top))} ms"
        " admitted). With short arrays (group_hourly 20; 200 groups) fixed took "
        + " and ".join(f"{round_ratio(f, s):.2f}x" for s, f in short)
        + " the calls/s (medians of the rounds) at "
        + " and ".join(ratio(f.cpu_per_call_ms, s.cpu_per_call_ms) for s, f in short)
        + " the PG CPU per call"
        + (" (the calls/s within the shared machine's noise)" if close else "")
        + ": there the round trip and the commit (a WAL flush per call) cost more than the"
        " window, and one caller alone takes"
        f" {ms(one[f'{SLIDING.name}|on'])} ms (sliding) and {ms(one[f'{FIXED.name}|on'])} ms"
        " (fixed). The fixed window's price is exactness: right after a clock"
        f" hour it admitted {results.boundaries[FIXED]} more on top of {BOUNDARY_LIMIT} sent"
        " a millisecond earlier (up to 2L in any 60 minutes), which the sliding window never"
        " does. So the exact sliding window stays the mechanism for group limits in the"
        " tens an hour, where its arrays are short and it costs about the same; fixed"
        " counters (or a sliding window that does not keep every send, e.g. per-minute"
        " buckets) would be the choice for limits of hundreds to thousands an hour per"
        " group. The early probe of the claim costs nothing measurable here (no probe: "
        + ", ".join(f"{x:.2f}x" for x in probe)
        + " the calls/s, medians of the rounds) and spares the window locks when another"
        " worker already holds the message (never the case here: every key is new): keep"
        " it."
    )
    return text[0].upper() + text[1:]


def report(results: Results) -> str:
    fleet, loads, runs = results.fleet, results.loads, results.runs
    version, race, elapsed = results.version, results.race, results.elapsed
    cores = len(os.sched_getaffinity(0))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    contention = [r for r in runs if r.shape is SHAPES[0]]
    lines = [
        "### Reply gate: exact sliding windows (arrays) against fixed hourly counters",
        "",
        (
            f"{platform.machine()}, {cores} cores, Python {platform.python_version()},"
            f" PostgreSQL {version} on the same machine (fsync and synchronous_commit on);"
            f" {stamp}; load average {loads[0][0]:.2f} before, {loads[1][0]:.2f} after (the"
            " machine is shared: other sessions' tests and benchmarks use the same server,"
            f" hence the variants' alternating turns); {elapsed:.0f} s in all."
        ),
        "",
        (
            f"{WORKERS} simulated workers, each {POOL} connection(s) shared by {CALLERS} caller"
            " tasks (client-side latency: the statement's round trip, and with the wait for"
            " the worker's connection), autocommit, the call prepared (asyncpg);"
            f" {SECONDS:.0f} s per variant and shape in {SLICE:.0f}-s turns, the variants"
            " alternating, each on tables of its own in one scratch database, emptied before"
            " each shape and seeded with a fleet's idle state (a window or counter row per"
            " account, group and pair, its last send two hours ago; 5,000 expired claims;"
            " VACUUM ANALYZE, so that the statements inside the functions are planned as in a"
            " running fleet, not as sequential scans of empty tables)."
            f" {ACCOUNTS:,} accounts, account i in group i mod G, a random account per call,"
            " a new message key, a sender outside the fleet, an announcement (as"
            f" for `responders: one`); account_hourly {ACCOUNT_HOURLY}, min_interval 0."
            " `sliding` is `tgfleet_reply_admit` as migrated (the baseline); `fixed` the same"
            " function with clock-hour counters (`reply_counter(key, window_start, used)`,"
            " upserts `... DO UPDATE SET used = used + 1 WHERE used < limit` for account and"
            " group, the pair's last send time likewise, earlier counts given back on a later"
            " refusal), created in the scratch database only; `sliding, no probe` the migrated"
            " function without its early `SELECT` of the claim. PG CPU: utime + stime of the"
            " variant's backends (/proc; pg_stat_statements is not preloaded); all postgres:"
            " every postgres process on the machine during its turns (WAL writer, checkpointer,"
            " autovacuum and other users included). Table sizes: `pg_total_relation_size`"
            " (heap, TOAST, indexes) after the shape."
        ),
        "",
        *main_table(runs),
        "",
        "Ratios against `sliding` in the same run:",
        "",
        *ratio_table(runs),
        "",
        (
            f"Latency as the contention windows fill ({SHAPES[0].name}; statement p50 / p99 ms"
            " (calls), by how full the call's group window was; time counted in the"
            " variant's own turns; under load, so noisy on a shared machine: the window"
            " alone is measured further down):"
        ),
        "",
        *fill_table(contention),
        "",
        (
            "Inside one call at the end of that shape (account 0's group, its window full),"
            " `auto_explain` with ANALYZE of the statements inside the function:"
        ),
        "",
        *plan_lines(results.plans),
        "",
        (
            "The window alone: one caller, a group whose window already holds N sends this"
            " hour, a call admitted into it (group_hourly N + 1000) and one refused"
            " (group_hourly N), each in a transaction rolled back (N stays; no commit timed);"
            f" statement p50 ms, the cases taking turns ({sizes_unexpected(results.sizes)}):"
        ),
        "",
        *size_table(results.sizes),
        "",
        (
            "One caller alone, one call after the other (spread shape), the paths taking"
            f" turns, {SINGLE_SECONDS:.1f} s each; synchronous_commit off shows what the"
            " function costs beside the WAL flush:"
        ),
        "",
        *single_table(results.singles),
        "",
        (
            f"Hour boundary: {BOUNDARY_LIMIT} replies recorded 1 ms before this clock hour"
            f" began, then {2 * BOUNDARY_LIMIT} new messages in that group, group_hourly"
            f" {BOUNDARY_LIMIT}: sliding admits {results.boundaries[SLIDING]}, fixed admits"
            f" {results.boundaries[FIXED]}, so {BOUNDARY_LIMIT + results.boundaries[FIXED]}"
            " replies within"
            f" seconds where the limit says {BOUNDARY_LIMIT} an hour. A fixed window bounds"
            " each clock hour, not every 60 minutes: up to 2L across a boundary."
        ),
        "",
        (
            "Race with the leader's prune (sliding, staged by `prune_race`): a group quiet"
            " for two hours, the account's window row held by another admission while the"
            f" call waits for it, `PRUNE_WINDOWS` meanwhile ({race.pruned}); the call:"
            f" {race.first}; then another account in the same group, group_hourly 1:"
            f" {race.second}; claims in the group: {race.claims}; its window afterwards:"
            f" {race.group_window}."
            + (
                " **Reproduced**: the first admission was never counted (its group and pair"
                " rows were gone when it locked them; `cardinality(NULL) >= limit` is NULL,"
                " not true, and the `UPDATE` found no row), so the group answered twice"
                " under a limit of one. The fixed counters have no such gap: each upsert"
                " inserts or locks its row in one step (and their prune would only drop"
                " past hours)."
                if race.reproduced
                else " Not reproduced."
            )
        ),
        "",
        (
            "Checks per run (claims = admitted; no group above its limit; every group that"
            " refused for its limit admitted exactly the limit; the windows or counters add"
            " up to the claims):"
        ),
        "",
        *check_lines(runs),
    ]
    if fleet.note:
        lines += ["", fleet.note]
    lines += ["", "Conclusion: " + conclusion(results)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


async def measure(dsn: str) -> str:
    started = time.perf_counter()
    fleet = await prepare(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        version = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    load_before = os.getloadavg()
    serial = itertools.count(1)
    singles = await single(fleet, serial)
    runs = []
    plans: dict[str, list[Inner]] = {}
    for shape in SHAPES:
        shaped = await load(fleet, shape, serial)
        for run in shaped:
            await inspect(fleet, run)
        runs += shaped
        if shape is SHAPES[0]:
            for variant in (SLIDING, FIXED):
                plans[variant.name] = await inner_plans(fleet, variant, shape.group_hourly)
    sizes = await window_sizes(fleet)
    boundaries = {variant: await boundary(fleet, variant) for variant in (SLIDING, FIXED)}
    race = await prune_race(fleet)
    return report(
        Results(
            fleet,
            version,
            (load_before, os.getloadavg()),
            singles,
            runs,
            plans,
            sizes,
            boundaries,
            race,
            time.perf_counter() - started,
        )
    )


async def run() -> str:
    name = f"tgfleet_bench_gate_{os.getpid()}"
    await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin_execute(f'CREATE DATABASE "{name}"')
    try:
        return await measure(dsn_for(name))
    finally:
        await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> str:
    configure_logging(level="WARNING")  # as bench/run.py does, also when run alone
    return asyncio.run(run())


async def _leave_as_is(_connection: object) -> None:
    """As FleetGate's pool: no reset query on release."""
