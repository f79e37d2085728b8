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
   the compressed body). Target < 200 KB.

Knobs: ``TGFLEET_BENCH_CONSOLE_ACCOUNTS`` (10000), ``TGFLEET_BENCH_CONSOLE_SAMPLES`` (200),
``TGFLEET_BENCH_CONSOLE_PG`` (``postgresql+asyncpg://postgres@127.0.0.1:5432/test``).
Run alone: ``.venv/bin/python bench/run.py console``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import Connection, bench_settings, pct, run_in_tempdir
from fleet import start_run
from tests.factories import make_accounts, report_states
from tests.harness import scratch_database, worker_env

from tgfleet import migrations
from tgfleet.audit import keys as audit_keys
from tgfleet.audit.schemas import AuditContext
from tgfleet.auth import service as auth_service
from tgfleet.config import Settings
from tgfleet.console.web import SESSION_COOKIE
from tgfleet.kit.data_dir import ensure_data_dir
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.models import AccountGroup, AccountState

ACCOUNTS = int(os.environ.get("TGFLEET_BENCH_CONSOLE_ACCOUNTS", "10000"))
SAMPLES = int(os.environ.get("TGFLEET_BENCH_CONSOLE_SAMPLES", "200"))
PG_SERVER = os.environ.get(
    "TGFLEET_BENCH_CONSOLE_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
WARMUP = 10
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


async def measure_pages(server: Server) -> Pages:
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
    finally:
        await console.close()
        await api.close()
    await asyncio.sleep(0.5)  # the last access-log lines reach the file
    server_times(server.log, offset, result)
    return result


def server_times(log: Path, offset: int, into: Pages) -> None:
    """The access log's ``duration_ms`` of the measured requests, by path."""
    by_path = {"/accounts": into.accounts, "/api/v1/accounts": into.api, "/": into.overview}
    with log.open("rb") as handle:
        handle.seek(offset)
        for raw in handle:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") != "http.request":
                continue
            timings = by_path.get(line.get("path"))
            if timings is not None:
                timings.server.append(float(line["duration_ms"]) / 1000)


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


# ----------------------------------------------------------------------------- one database


@dataclass
class Result:
    backend: str
    seed_seconds: float
    pages: Pages
    weight: Weight
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
    finally:
        await child.stop()
    return Result(backend, seed_seconds, pages, weight)


# ----------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def timing_cells(timings: Timings) -> str:
    return (
        f"{timings.ms(0.5):.1f} / {timings.ms(0.95):.1f} / {timings.ms(1.0):.1f} ms | "
        f"{timings.ms(0.5, server=True):.1f} / {timings.ms(0.95, server=True):.1f} ms | "
        f"{timings.errors}"
    )


def report(results: Sequence[Result], load: tuple[float, float, float]) -> list[str]:
    lines = [
        "### Console at 10,000 accounts: pages vs the API, first load (issue 16)",
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
            f"response sent). Load average (1/5/15 min) at the start: "
            f"{' / '.join(f'{v:.2f}' for v in load)} (other agents share the 2 cores). "
            f"Method in bench/console.py."
        ),
        "",
        "| database | request | client p50 / p95 / max | server p50 / p95 | errors |",
        "|---|---|---|---|---|",
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
    for result in results:
        lines += result.notes
    return lines


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
