"""Console benchmark (issue 16): the console's pages and live feed at 10,000 accounts.

Per database (a fresh SQLite data dir; then PostgreSQL on a scratch database created on
``TGFLEET_BENCH_CONSOLE_PG`` and dropped after; ``""`` skips it):

1. seeded in this process, before the server starts, through the services and factories the
   tests use: migrate, an admin user (``auth.service.create_user``), ``ACCOUNTS`` accounts
   ``acc0000``... (``tests.factories.make_accounts``, batches of ``SEED_BATCH``), their
   states as workers report them (``tests.factories.report_states`` = ``account.runtime.apply``:
   60 % online, 10 % each reconnecting, flood_wait, quarantined and error, over ``WORKERS``
   workers) and one group row each in one of ``GROUPS`` groups (the rows a worker writes);
2. a real server: ``tgfleet run --no-worker`` (the API role: API, console, live feed) on that
   database, INFO access log as JSON (its ``duration_ms`` is the server's own time);
3. a console session signed in through the form (``GET /login`` for the CSRF cookie and
   field, ``POST /login``, the session cookie kept) and an API JWT (``POST
   /api/v1/auth/login``);
4. pages: ``SAMPLES`` rounds (after ``WARMUP``), each in turn (the order alternating):
   the accounts page ``/accounts?state=online&label=acc0&sort=-since`` (100 rows of 600
   matching, counts per state, workers), the JSON API twin ``GET /api/v1/accounts`` with the
   same filter, sort and ``limit=100``, and the overview ``/``; each on its own keep-alive
   connection (``_common.Connection``), ``Accept-Encoding: gzip`` as a browser sends it.
   Time = request written to body read, in this process; the server's own time from its
   access log. Targets: accounts page p95 <= 1.5x the API's and < 150 ms; overview p95 <
   150 ms;
5. first page load: the overview's HTML and every stylesheet, icon and script it references,
   gzip accepted, a fresh browser (no cache): the bytes on the wire (status line, headers and
   the compressed body). Target < 200 KB;
6. the live feed, in rounds of (accounts pages, overview pages): (1, 0), (10, 0), (100, 0),
   (100, 10). Each page is a ``GET /live?view=...`` with the session cookie on its own
   connection, read by a minimal streaming client here (chunked transfer, SSE lines); then
   ``CHANGES`` online accounts of its own per round go to reconnecting through
   ``account.runtime.apply`` (the workers' path) in ``CHANGE_BATCHES`` transactions over
   ``CHANGE_SECONDS``. Measured: every accounts page got an ``acct-<id>`` message with the
   new state for every change, and the last one it got for each account shows it; commit
   (this process's clock) to arrival; the server's CPU per page; the server's database
   statements per second (``tgfleet_db_query_duration_seconds_count`` from /metrics) and the
   broadcaster's (``tgfleet_console_live_queries_total``), which must not grow with the pages
   (rounds 1 and 3). Targets: everything received, every change within 2 s.

Knobs: ``TGFLEET_BENCH_CONSOLE_ACCOUNTS`` (10000), ``TGFLEET_BENCH_CONSOLE_SAMPLES`` (200),
``TGFLEET_BENCH_CONSOLE_SSE_CLIENTS`` (100), ``TGFLEET_BENCH_CONSOLE_OVERVIEW_CLIENTS`` (10),
``TGFLEET_BENCH_CONSOLE_CHANGES`` (1000 a round; 4 rounds need 4x that many online accounts,
60 % of ``ACCOUNTS``), ``TGFLEET_BENCH_CONSOLE_PG``
(``postgresql+asyncpg://postgres@127.0.0.1:5432/test``; ``""`` skips PostgreSQL).
Run alone: ``.venv/bin/python bench/run.py console``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import (
    Connection,
    bench_settings,
    cpu_seconds,
    own_cpu,
    pct,
    raise_nofile,
    run_in_tempdir,
)
from fleet import start_run
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import make_accounts, report_states
from tests.harness import scratch_database, worker_env

from tgfleet import migrations
from tgfleet.account import runtime as account_runtime
from tgfleet.account.runtime import StateChange
from tgfleet.audit import keys as audit_keys
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth import service as auth_service
from tgfleet.config import Settings
from tgfleet.console.web import SESSION_COOKIE
from tgfleet.kit.clock import utcnow
from tgfleet.kit.data_dir import ensure_data_dir
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.models import AccountGroup, AccountState

ACCOUNTS = int(os.environ.get("TGFLEET_BENCH_CONSOLE_ACCOUNTS", "10000"))
SAMPLES = int(os.environ.get("TGFLEET_BENCH_CONSOLE_SAMPLES", "200"))
PG_SERVER = os.environ.get(
    "TGFLEET_BENCH_CONSOLE_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
SSE_CLIENTS = int(os.environ.get("TGFLEET_BENCH_CONSOLE_SSE_CLIENTS", "100"))
OVERVIEW_CLIENTS = int(os.environ.get("TGFLEET_BENCH_CONSOLE_OVERVIEW_CLIENTS", "10"))
CHANGES = int(os.environ.get("TGFLEET_BENCH_CONSOLE_CHANGES", "1000"))
CHANGE_SECONDS = 10.0
CHANGE_BATCHES = 50  # transactions over CHANGE_SECONDS
#: (accounts pages, overview pages) per round: the first three compare the database load at
#: 1, 10 and SSE_CLIENTS pages of one kind; the last is the full load, checked in full.
ROUNDS = ((1, 0), (10, 0), (SSE_CLIENTS, 0), (SSE_CLIENTS, OVERVIEW_CLIENTS))
DELIVERY_TIMEOUT = 20.0  # seconds after the last commit for every change to arrive
LATENCY_TARGET = 2.0
CHANGED_STATE = AccountState.RECONNECTING
WARMUP = 10
CPU_SAMPLES = 50  # back-to-back requests of one kind, for the server's CPU per request
IDLE_SECONDS = 3.0
SEED_BATCH = 1000
WORKERS = 4
GROUPS = 5
GROUP_BASE = -1001000000000  # a supergroup's marked id; group k is GROUP_BASE - k
#: Of every ten accounts: six online, then one each in these states.
OTHER_STATES = (
    AccountState.RECONNECTING,
    AccountState.FLOOD_WAIT,
    AccountState.QUARANTINED,
    AccountState.ERROR,
)
FILTER = "state=online&label=acc0&sort=-since"
PAGE_PATH = f"/accounts?{FILTER}"
API_PATH = f"/api/v1/accounts?{FILTER}&limit=100"
OVERVIEW_PATH = "/"
HTTP_TIMEOUT = 30.0
USERNAME = "bench"
PASSWORD = "bench-password-0123456789"  # noqa: S105 - a throwaway user in a temp database
PAGE_P95_MS = 150.0
PAGE_RATIO = 1.5
WEIGHT_TARGET = 200 * 1024
ASSET_RE = re.compile(r"<(?:link|script)\b[^>]*?\b(?:href|src)=\"(/[^\"]+)\"")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def label_of(index: int) -> str:
    return f"acc{index:04d}"


def state_of(index: int) -> AccountState:
    rest = index % 10
    return AccountState.ONLINE if rest < 6 else OTHER_STATES[rest - 6]


def worker_of(index: int) -> str:
    return f"worker-{(index // 10) % WORKERS}"


# ----------------------------------------------------------------------------- seeding


async def seed(settings: Settings) -> list[uuid.UUID]:
    """The admin, ACCOUNTS accounts with their states, workers and groups; their ids."""
    ensure_data_dir(settings)
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url)
    audit_keys.configure(settings)  # the key file the server finds in the data dir
    engine = create_engine(settings.effective_database_url)
    ids: list[uuid.UUID] = []
    try:
        maker = create_sessionmaker(engine)
        async with unit_of_work(maker) as session:
            await auth_service.create_user(
                session,
                auth_service.Security.from_settings(settings),
                AuditContext(actor="cli:bench"),
                username=USERNAME,
                role="admin",
                password=PASSWORD,
            )
        for start in range(0, ACCOUNTS, SEED_BATCH):
            indexes = range(start, min(ACCOUNTS, start + SEED_BATCH))
            batch = await make_accounts(maker, [label_of(i) for i in indexes], running=True)
            by_report: dict[tuple[AccountState, str], list[uuid.UUID]] = {}
            for index, account in zip(indexes, batch, strict=True):
                by_report.setdefault((state_of(index), worker_of(index)), []).append(account)
            for (state, worker), accounts in by_report.items():
                await report_states(
                    maker, accounts, state, previous=AccountState.STARTING, worker=worker
                )
            async with unit_of_work(maker) as session:
                session.add_all(
                    AccountGroup(account_id=account, chat_id=GROUP_BASE - index % GROUPS)
                    for index, account in zip(indexes, batch, strict=True)
                )
            ids.extend(batch)
    finally:
        await engine.dispose()
    return ids


# ----------------------------------------------------------------------------- the server


@dataclass
class Server:
    url: str
    port: int
    pid: int
    log: Path
    cookie: str  # the console session's Cookie header value
    token: str  # an API JWT


async def sign_in(url: str) -> tuple[str, str]:
    """(the console session cookie, an API JWT), both through the real forms/endpoints."""
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT) as http:
        form = await http.get("/login")
        form.raise_for_status()
        found = CSRF_RE.search(form.text)
        if found is None:
            msg = "no csrf_token field on /login"
            raise RuntimeError(msg)
        answer = await http.post(
            "/login",
            data={
                "csrf_token": found.group(1),
                "next": "/",
                "username": USERNAME,
                "password": PASSWORD,
            },
        )
        if answer.status_code != 303:
            msg = f"console sign-in answered {answer.status_code}"
            raise RuntimeError(msg)
        session = next((c.value for c in http.cookies.jar if c.name == SESSION_COOKIE), None)
        if session is None:
            msg = "console sign-in set no session cookie"
            raise RuntimeError(msg)
        api = await http.post(
            "/api/v1/auth/login", json={"username": USERNAME, "password": PASSWORD}
        )
        api.raise_for_status()
        return f"{SESSION_COOKIE}={session}", str(api.json()["access_token"])


# ----------------------------------------------------------------------------- pages


@dataclass
class Timings:
    client: list[float] = field(default_factory=list)  # seconds, in this process
    server: list[float] = field(default_factory=list)  # seconds, the access log's
    errors: int = 0
    cpu: float = float("nan")  # server CPU seconds per request, idle CPU taken off

    def ms(self, q: float, *, server: bool = False) -> float:
        values = self.server if server else self.client
        return pct(values, q) * 1000 if values else float("nan")


@dataclass
class Pages:
    accounts: Timings
    api: Timings
    overview: Timings


async def timed(connection: Connection, path: str, into: Timings | None) -> None:
    started = time.perf_counter()
    try:
        status = await connection.send("GET", path)
    except TimeoutError:
        status = 0
    if into is not None:
        into.client.append(time.perf_counter() - started)
        if status != 200:
            into.errors += 1


async def connections(server: Server) -> tuple[Connection, Connection]:
    """(the console's, the API's) keep-alive connection."""
    common = {"Host": f"127.0.0.1:{server.port}", "Accept-Encoding": "gzip"}
    console = await Connection.open(
        "127.0.0.1", server.port, HTTP_TIMEOUT, **common, Accept="text/html", Cookie=server.cookie
    )
    api = await Connection.open(
        "127.0.0.1",
        server.port,
        HTTP_TIMEOUT,
        **common,
        Accept="application/json",
        Authorization=f"Bearer {server.token}",
    )
    return console, api


async def measure_pages(server: Server) -> Pages:
    console, api = await connections(server)
    result = Pages(Timings(), Timings(), Timings())
    try:
        for _ in range(WARMUP):
            await timed(console, PAGE_PATH, None)
            await timed(api, API_PATH, None)
            await timed(console, OVERVIEW_PATH, None)
        offset = server.log.stat().st_size
        for index in range(SAMPLES):
            calls = [
                (console, PAGE_PATH, result.accounts),
                (api, API_PATH, result.api),
                (console, OVERVIEW_PATH, result.overview),
            ]
            for connection, path, into in calls if index % 2 == 0 else calls[::-1]:
                await timed(connection, path, into)
        # The access log's lines of the measured requests are all written.
        async with asyncio.timeout(HTTP_TIMEOUT):
            while server_times(server.log, offset, result) < 3 * SAMPLES:  # noqa: ASYNC110 - its file
                await asyncio.sleep(0.1)
        idle = await idle_cpu(server.pid)
        for kind, path, into in (
            (0, PAGE_PATH, result.accounts),
            (1, API_PATH, result.api),
            (0, OVERVIEW_PATH, result.overview),
        ):
            # Fresh connections: uvicorn closes one idle for 5 s.
            await console.close()
            await api.close()
            console, api = await connections(server)
            connection = (console, api)[kind]
            cpu, started = cpu_seconds(server.pid), time.monotonic()
            for _ in range(CPU_SAMPLES):
                await timed(connection, path, None)
            spent = cpu_seconds(server.pid) - cpu - idle * (time.monotonic() - started)
            into.cpu = spent / CPU_SAMPLES
    finally:
        await console.close()
        await api.close()
    return result


async def idle_cpu(pid: int) -> float:
    """The server's CPU seconds per second with no request (its background tasks)."""
    cpu, started = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)  # a measuring window, not a wait for a condition
    return (cpu_seconds(pid) - cpu) / (time.monotonic() - started)


def server_times(log: Path, offset: int, into: Pages) -> int:
    """The access log's ``duration_ms`` of the measured requests, by path; how many."""
    by_path = {"/accounts": into.accounts, "/api/v1/accounts": into.api, "/": into.overview}
    for timings in by_path.values():
        timings.server.clear()
    with log.open("rb") as handle:
        handle.seek(offset)
        for raw in handle:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") != "http.request":
                continue
            found = by_path.get(line.get("path"))
            if found is not None:
                found.server.append(float(line["duration_ms"]) / 1000)
    return sum(len(timings.server) for timings in by_path.values())


# ----------------------------------------------------------------------------- weight


@dataclass
class Weight:
    files: list[tuple[str, int, str]]  # path, bytes on the wire, Content-Encoding

    @property
    def total(self) -> int:
        return sum(size for _, size, _ in self.files)


def wire_bytes(response: httpx.Response) -> int:
    head = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n")
    head += sum(len(name) + len(value) + 4 for name, value in response.headers.raw) + 2
    return head + response.num_bytes_downloaded


async def page_weight(server: Server) -> Weight:
    """The overview and everything it references, as a first visit loads them."""
    files: list[tuple[str, int, str]] = []
    headers = {"Accept-Encoding": "gzip", "Cookie": server.cookie}
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=HTTP_TIMEOUT
    ) as http:
        html = await http.get(OVERVIEW_PATH, headers={"Accept": "text/html"})
        html.raise_for_status()
        files.append((OVERVIEW_PATH, wire_bytes(html), html.headers.get("content-encoding", "")))
        for path in dict.fromkeys(ASSET_RE.findall(html.text)):
            asset = await http.get(path.replace("&amp;", "&"))
            asset.raise_for_status()
            files.append((path, wire_bytes(asset), asset.headers.get("content-encoding", "")))
    return Weight(files)


# ----------------------------------------------------------------------------- live feed

STATE_RE = re.compile(r'data-state="([a-z_]+)"')


@dataclass
class Client:
    """One open page's ``/live`` stream, read by a minimal HTTP/1.1 client (chunked
    transfer, SSE ``event:``/``data:``/``id:`` lines)."""

    view: str
    wanted: frozenset[uuid.UUID]  # the accounts the round changes
    #: acct-<id> messages: account id -> [(arrival, monotonic), state shown]
    seen: dict[uuid.UUID, list[tuple[float, str]]] = field(default_factory=dict)
    messages: int = 0  # every message but comments
    resets: int = 0
    error: str | None = None
    got: set[uuid.UUID] = field(default_factory=set)  # wanted ones shown in CHANGED_STATE
    done: asyncio.Event = field(default_factory=asyncio.Event)  # got every wanted one


async def read_stream(reader: asyncio.StreamReader, client: Client) -> None:
    """Until the connection ends: dechunk, split into SSE messages, record them."""
    buffer = ""
    event, data = "", list[str]()
    while True:
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        chunk = await reader.readexactly(size + 2)  # the chunk and its CRLF
        arrived = time.monotonic()
        buffer += chunk[:-2].decode()
        *lines, buffer = buffer.replace("\r\n", "\n").split("\n")
        for line in lines:
            if line == "":
                if event or data:
                    record(client, event, "\n".join(data), arrived)
                event, data = "", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))


def record(client: Client, event: str, data: str, arrived: float) -> None:
    client.messages += 1
    if event == "reset":
        client.resets += 1
    elif event.startswith("acct-"):
        found = STATE_RE.search(data)
        account, state = uuid.UUID(event[5:]), found.group(1) if found else "?"
        client.seen.setdefault(account, []).append((arrived, state))
        if state == CHANGED_STATE and account in client.wanted:
            client.got.add(account)
            if len(client.got) == len(client.wanted):
                client.done.set()


async def open_stream(
    server: Server, view: str, wanted: frozenset[uuid.UUID]
) -> tuple[Client, asyncio.StreamWriter]:
    """A page's stream, answered 200 (headers read): subscribed from now on."""
    client = Client(view, wanted)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        (
            f"GET /live?view={view} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Cookie: {server.cookie}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    async with asyncio.timeout(HTTP_TIMEOUT):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    if head.startswith("HTTP/1.1 404"):
        writer.close()
        raise NoLiveFeed
    if not head.startswith("HTTP/1.1 200"):
        writer.close()
        msg = f"/live?view={view}: {head.splitlines()[0]}"
        raise RuntimeError(msg)
    if "chunked" not in head.lower():
        writer.close()
        msg = f"/live answered without chunked transfer: {head!r}"
        raise RuntimeError(msg)
    task = asyncio.create_task(read_stream(reader, client))
    task.add_done_callback(lambda done: _failed(client, done))
    client_tasks.add(task)
    return client, writer


client_tasks: set[asyncio.Task[None]] = set()


class NoLiveFeed(Exception):
    """This checkout serves no ``/live`` (the console's live feed came later)."""


def _failed(client: Client, task: asyncio.Task[None]) -> None:
    client_tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        client.error = repr(task.exception())


async def scrape(http: httpx.AsyncClient) -> dict[str, float]:
    """The server's /metrics: every sample summed by metric name (labels dropped)."""
    answer = await http.get("/metrics")
    answer.raise_for_status()
    found: dict[str, float] = {}
    for line in answer.text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        base = name.split("{", 1)[0]
        found[base] = found.get(base, 0.0) + float(value)
    return found


DB_STATEMENTS = "tgfleet_db_query_duration_seconds_count"
LIVE_QUERIES = "tgfleet_console_live_queries_total"
LIVE_SUBSCRIBERS = "tgfleet_console_live_subscribers"


@dataclass
class Round:
    clients: int  # accounts-page streams
    overview_clients: int
    changes: int
    seconds: float  # first commit to last commit
    latencies: list[float]  # commit to arrival, every (client, change)
    missing: int  # (client, change) pairs never received
    wrong_last: int  # (client, account) whose last state shown is not the committed one
    per_client: list[int]  # acct- messages of the changed accounts, per accounts client
    overview_messages: list[int]
    resets: int
    errors: list[str]
    server_cpu: float  # seconds, over the round
    bench_cpu: float
    wall: float  # seconds, first commit to the last arrival (or the timeout)
    db_statements: float  # per second, the whole server
    live_queries: float | None  # per second, the broadcaster's own (when exposed)


async def change_states(
    maker: async_sessionmaker[AsyncSession], accounts: Sequence[tuple[uuid.UUID, str]]
) -> dict[uuid.UUID, float]:
    """``accounts`` online -> CHANGED_STATE as their workers report it (account.runtime.apply),
    CHANGE_BATCHES transactions spread over CHANGE_SECONDS; each one's commit time."""
    committed: dict[uuid.UUID, float] = {}
    size = max(1, -(-len(accounts) // CHANGE_BATCHES))
    started = time.monotonic()
    for number, start in enumerate(range(0, len(accounts), size)):
        await asyncio.sleep(
            max(0.0, started + number * CHANGE_SECONDS / CHANGE_BATCHES - time.monotonic())
        )
        batch = accounts[start : start + size]
        async with unit_of_work(maker) as session:
            at = utcnow()
            await account_runtime.apply(
                session,
                [
                    StateChange(
                        account_id=account,
                        state=CHANGED_STATE,
                        previous=AccountState.ONLINE,
                        at=at,
                        worker_id=worker,
                        source=worker,
                    )
                    for account, worker in batch
                ],
            )
        done = time.monotonic()
        committed.update((account, done) for account, _ in batch)
    return committed


async def live_round(
    server: Server,
    maker: async_sessionmaker[AsyncSession],
    accounts: Sequence[tuple[uuid.UUID, str]],
    clients: int,
    overview_clients: int,
) -> Round:
    streams: list[tuple[Client, asyncio.StreamWriter]] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=HTTP_TIMEOUT) as http:
        try:
            wanted = frozenset(account for account, _ in accounts)
            streams.extend(
                [
                    await open_stream(server, "accounts" if index < clients else "overview", wanted)
                    for index in range(clients + overview_clients)
                ]
            )
            before = await scrape(http)
            if LIVE_SUBSCRIBERS in before:  # every stream subscribed before the first change
                async with asyncio.timeout(HTTP_TIMEOUT):
                    while before.get(LIVE_SUBSCRIBERS, 0) < clients + overview_clients:
                        await asyncio.sleep(0.1)
                        before = await scrape(http)
            cpu_server, cpu_bench, t0 = cpu_seconds(server.pid), own_cpu(), time.monotonic()
            committed = await change_states(maker, accounts)
            last_commit = max(committed.values())
            page_clients = [client for client, _ in streams if client.view == "accounts"]
            left = last_commit + DELIVERY_TIMEOUT - time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, left)):
                    await asyncio.gather(*(client.done.wait() for client in page_clients))
            wall = time.monotonic() - t0
            cpu_server = cpu_seconds(server.pid) - cpu_server
            cpu_bench = own_cpu() - cpu_bench
            after = await scrape(http)
        finally:
            for _, writer in streams:
                writer.close()
    latencies: list[float] = []
    missing = wrong = 0
    for client in page_clients:
        for account, at in committed.items():
            shown = client.seen.get(account, [])
            arrivals = [when for when, state in shown if state == CHANGED_STATE]
            if arrivals:
                latencies.append(min(arrivals) - at)
            else:
                missing += 1
            if not shown or shown[-1][1] != CHANGED_STATE:
                wrong += 1
    live = None
    if LIVE_QUERIES in after:
        live = (after[LIVE_QUERIES] - before.get(LIVE_QUERIES, 0.0)) / wall
    return Round(
        clients=clients,
        overview_clients=overview_clients,
        changes=len(committed),
        seconds=last_commit - t0,
        latencies=latencies,
        missing=missing,
        wrong_last=wrong,
        per_client=[sum(len(c.seen.get(a, ())) for a in committed) for c in page_clients],
        overview_messages=[c.messages for c, _ in streams if c.view == "overview"],
        resets=sum(c.resets for c, _ in streams),
        errors=[c.error for c, _ in streams if c.error],
        server_cpu=cpu_server,
        bench_cpu=cpu_bench,
        wall=wall,
        db_statements=(after.get(DB_STATEMENTS, 0.0) - before.get(DB_STATEMENTS, 0.0)) / wall,
        live_queries=live,
    )


async def measure_live(
    server: Server, settings: Settings, online: Sequence[tuple[uuid.UUID, str]]
) -> list[Round]:
    """One round per ROUNDS entry, each changing CHANGES accounts of its own."""
    raise_nofile(4 * (SSE_CLIENTS + OVERVIEW_CLIENTS) + 1024)
    engine = create_engine(settings.effective_database_url)
    rounds: list[Round] = []
    try:
        maker = create_sessionmaker(engine)
        for number, (clients, overviews) in enumerate(ROUNDS):
            accounts = online[number * CHANGES : (number + 1) * CHANGES]
            rounds.append(await live_round(server, maker, accounts, clients, overviews))
            print(f"console: live round with {clients} + {overviews} pages done", flush=True)
    finally:
        await engine.dispose()
    return rounds


# ----------------------------------------------------------------------------- one database


@dataclass
class Result:
    backend: str
    seed_seconds: float
    pages: Pages
    weight: Weight
    rounds: list[Round]
    notes: list[str] = field(default_factory=list)


async def run_backend(backend: str, database_url: str | None, workdir: Path) -> Result:
    data_dir = workdir / f"data-{backend}"
    settings = bench_settings(data_dir, database_url)
    started = time.perf_counter()
    ids = await seed(settings)
    seed_seconds = time.perf_counter() - started
    print(f"console: {backend}: {len(ids)} accounts seeded in {seed_seconds:.0f} s", flush=True)
    assert settings.vault_key is not None
    env = worker_env(
        settings.effective_database_url,
        settings.vault_key.get_secret_value(),
        data_dir,
        TGFLEET_LOG_LEVEL="INFO",
        TGFLEET_LOG_JSON="true",
        TGFLEET_ARGON2_TIME_COST="1",
        TGFLEET_ARGON2_MEMORY_KIB="8",
        TGFLEET_ARGON2_PARALLELISM="1",
    )
    log = workdir / f"server-{backend}.log"
    child, url, port = await start_run(
        f"tgfleet run ({backend})", log, env, "--no-worker", "--host", "127.0.0.1"
    )
    try:
        cookie, token = await sign_in(url)
        server = Server(url, port, child.pid, log, cookie, token)
        pages = await measure_pages(server)
        weight = await page_weight(server)
        online = [(ids[i], worker_of(i)) for i in range(len(ids)) if state_of(i) == "online"]
        notes: list[str] = []
        try:
            rounds = await measure_live(server, settings, online)
        except NoLiveFeed:
            rounds = []
            notes.append(
                f"\n{backend}: this checkout has no `/live`: the live feed is not measured."
            )
    finally:
        await child.stop()
    return Result(backend, seed_seconds, pages, weight, rounds, notes)


# ----------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def timing_cells(timings: Timings) -> str:
    return (
        f"{timings.ms(0.5):.1f} / {timings.ms(0.95):.1f} / {timings.ms(1.0):.1f} ms | "
        f"{timings.ms(0.5, server=True):.1f} / {timings.ms(0.95, server=True):.1f} ms | "
        f"{timings.errors} | {timings.cpu * 1000:.1f} ms"
    )


def report(results: Sequence[Result], load: tuple[float, float, float]) -> list[str]:
    lines = [
        f"### Console at {ACCOUNTS:,} accounts: pages vs the API, first load, live feed (issue 16)",
        "",
        (
            f"`tgfleet run --no-worker` (API role: API, console, live feed; INFO access log as "
            f"JSON) on {ACCOUNTS:,} accounts seeded through the services (60 % online, 10 % each "
            f"reconnecting, flood_wait, quarantined, error; {WORKERS} workers; one of {GROUPS} "
            f"groups each). {SAMPLES} rounds after {WARMUP} warm-up rounds, one request of each "
            f"kind per round in alternating order on its own keep-alive connection, gzip "
            f"accepted: the accounts page `{PAGE_PATH}` (100 rows of 600 matching, with the "
            f"counts per state and the worker list), the API `GET {API_PATH}` (100 rows, counts "
            f"per state) and the overview `/`. Client = request written to body read in the "
            f"bench process; server = the access log's duration_ms (middleware entry to "
            f"response sent). Server CPU per request: /proc utime+stime of the server over "
            f"{CPU_SAMPLES} back-to-back requests of one kind after the rounds, less its idle "
            f"rate (measured over {IDLE_SECONDS:.0f} s). Load average (1/5/15 min) at the start: "
            f"{' / '.join(f'{v:.2f}' for v in load)} (other agents share the 2 cores). "
            f"Method in bench/console.py."
        ),
        "",
        (
            "| database | request | client p50 / p95 / max | server p50 / p95 | errors | "
            "server CPU per request |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        pages = result.pages
        for name, timings in (
            ("accounts page", pages.accounts),
            ("API twin", pages.api),
            ("overview", pages.overview),
        ):
            lines.append(f"| {result.backend} | {name} | {timing_cells(timings)} |")
    lines += ["", "| database | target | measured | verdict |", "|---|---|---|---|"]
    for result in results:
        pages = result.pages
        page95, api95 = pages.accounts.ms(0.95), pages.api.ms(0.95)
        over95 = pages.overview.ms(0.95)
        errors = pages.accounts.errors + pages.api.errors + pages.overview.errors
        lines += [
            (
                f"| {result.backend} | accounts page p95 <= {PAGE_RATIO}x API p95 | "
                f"{page95:.1f} vs {api95:.1f} ms ({page95 / api95:.2f}x) | "
                f"{verdict(page95 <= PAGE_RATIO * api95)} |"
            ),
            (
                f"| {result.backend} | accounts page p95 < {PAGE_P95_MS:.0f} ms | "
                f"{page95:.1f} ms | {verdict(page95 < PAGE_P95_MS)} |"
            ),
            (
                f"| {result.backend} | overview p95 < {PAGE_P95_MS:.0f} ms | {over95:.1f} ms | "
                f"{verdict(over95 < PAGE_P95_MS)} |"
            ),
            f"| {result.backend} | 0 errors | {errors} | {verdict(errors == 0)} |",
        ]
    weight = results[0].weight
    lines += [
        (
            f"| any | first load < {WEIGHT_TARGET // 1024} KB | {weight.total / 1024:.1f} KB | "
            f"{verdict(weight.total < WEIGHT_TARGET)} |"
        ),
        "",
        (
            "First load of the overview (no cache, gzip accepted; status line + headers + body "
            "as sent):"
        ),
        "",
        "| file | bytes on the wire | encoding |",
        "|---|---|---|",
        *(f"| `{path}` | {size:,} | {enc or 'none'} |" for path, size, enc in weight.files),
        f"| total | {weight.total:,} | |",
    ]
    lines += live_report(results)
    for result in results:
        lines += result.notes
    return lines


def live_report(results: Sequence[Result]) -> list[str]:
    if not any(result.rounds for result in results):
        return []
    lines = [
        "",
        (
            f"Live feed: per round, N pages on `/live?view=accounts` (the last round also "
            f"{OVERVIEW_CLIENTS} on `view=overview`; its statements/s include the overview's "
            f"render, once per batch for all overview pages), each its own connection with the "
            f"session cookie, read by a minimal streaming client in the bench process; meanwhile "
            f"{CHANGES:,} other online accounts each go to {CHANGED_STATE} through "
            f"`account.runtime.apply` (as their workers report it) from the bench process, in "
            f"{CHANGE_BATCHES} transactions spread over {CHANGE_SECONDS:.0f} s. Latency = commit "
            f"(the bench's clock) to the `acct-<id>` message showing the new state reaching the "
            f"client, for every (client, account). CPU: the server process over the round, "
            f"and the bench process (clients + writer). Statements/s: every database statement "
            f"the server ran in the round (`{DB_STATEMENTS}`: broadcaster, shared renders, "
            f"housekeeping, alert evaluation...; the overview pages' render reads the workers once "
            f"per batch for all of them), and the broadcaster's own queries "
            f"(`{LIVE_QUERIES}`)."
        ),
        "",
        (
            "| database | pages (accounts + overview) | changes in | received | last state wrong | "
            "latency p50 / p95 / max | server CPU (per page) | bench CPU | statements/s | "
            "broadcaster queries/s | overview messages | resets / errors |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for r in result.rounds:
            expected = r.clients * r.changes
            pages = max(1, r.clients + r.overview_clients)
            pages = max(1, r.clients + r.overview_clients)
            live = "n/a" if r.live_queries is None else f"{r.live_queries:.1f}"
            overview = (
                f"{min(r.overview_messages)}-{max(r.overview_messages)}"
                if r.overview_messages
                else "-"
            )
            lines.append(
                f"| {result.backend} | {r.clients} + {r.overview_clients} | {r.seconds:.1f} s | "
                f"{expected - r.missing:,} / {expected:,} | {r.wrong_last} | "
                f"{ms(r.latencies, 0.5)} / {ms(r.latencies, 0.95)} / {ms(r.latencies, 1.0)} | "
                f"{r.server_cpu:.2f} s ({r.server_cpu / pages:.3f} s) | "
                f"{r.bench_cpu:.2f} s | {r.db_statements:.1f} | {live} | {overview} | "
                f"{r.resets} / {len(r.errors)} |"
            )
    lines += ["", "| database | target | measured | verdict |", "|---|---|---|---|"]
    for result in results:
        if not result.rounds:
            continue
        full, first, most = result.rounds[-1], result.rounds[0], result.rounds[-2]
        worst = max(full.latencies) if full.latencies else float("inf")
        lines += [
            (
                f"| {result.backend} | every page gets every change ({full.clients} pages) | "
                f"{full.missing} missing, {full.wrong_last} wrong last state | "
                f"{verdict(full.missing == 0 and full.wrong_last == 0)} |"
            ),
            (
                f"| {result.backend} | every change within {LATENCY_TARGET:.0f} s | max "
                f"{worst:.2f} s | {verdict(worst < LATENCY_TARGET)} |"
            ),
            (
                f"| {result.backend} | statements/s independent of pages | "
                f"{first.db_statements:.1f} at {first.clients}, {most.db_statements:.1f} at "
                f"{most.clients} | "
                f"{verdict(most.db_statements <= 1.5 * first.db_statements + 5)} |"
            ),
        ]
    return lines


def ms(values: Sequence[float], q: float) -> str:
    return f"{pct(values, q) * 1000:.0f} ms" if values else "-"


# ----------------------------------------------------------------------------- main


async def run(workdir: Path) -> list[str]:
    load = os.getloadavg()
    results = [await run_backend("SQLite", None, workdir)]
    if PG_SERVER:
        async with scratch_database(PG_SERVER, "tgfleet_bench_console") as url:
            results.append(await run_backend("PostgreSQL", url, workdir))
    return report(results, load)


def main() -> str:
    return "\n".join(run_in_tempdir(run, "tgfleet-bench-console-"))


if __name__ == "__main__":
    print(main())
