"""Observability benchmark (issue 7): ``GET /metrics`` scrape time and size, and ``GET /health``
latency under concurrent callers (cache on and off), with 1,000 accounts online in
``tgfleet run``.

World and fleet are bench/fleet.py's, reused by import: ``build_world`` (N fleet accounts, N
basic groups of one account and three simulated members), the sandbox in a subprocess
(``start_sandbox``: ``tgfleet sandbox run --no-traffic``), a fresh SQLite data dir migrated and
seeded through the services (``prepare``: admin, vault import of every session file, one
playbook, each account's one group enabled) and ``start_accounts``. Only the playbook differs:
its one rule matches every message and ``probability: 0.5`` answers about half, so both
``tgfleet_replies_sent_total`` and ``tgfleet_replies_suppressed_total{reason="probability"}``
(and the send-duration histogram) carry values, as in production.

``tgfleet run`` (API + worker in one process, SQLite, WARNING logs, and
``TGFLEET_TELEGRAM_DCS=2=127.0.0.1:<sandbox port>`` so the network monitor probes the sandbox:
no packet leaves loopback) is started three times, one after the other, against the same
sandbox and data dir, in its own process group:

1. defaults: fleet gauges cached 5 s, /health cached 5 s, per-account series off;
2. ``TGFLEET_METRICS_FLEET_REFRESH_SECONDS=0`` and ``TGFLEET_HEALTH_CACHE_SECONDS=0``: every
   scrape reads the fleet from the database, every /health document runs every check;
3. ``TGFLEET_METRICS_PER_ACCOUNT=true`` (an ``account`` label: series per account).

Each start waits until every account has an ``online`` state event stamped after the spawn
(read-only polls of the SQLite file), then posts a burst of one member message per group
through the sandbox's control API (``POST /groups/{id}/messages``, ``POSTERS`` keep-alive
posters paced to ``RATE``/s) and waits (up to ``BURST_TIMEOUT``) until the process's own
``tgfleet_messages_received_total`` counts them all and replies + suppressions account for
each, then ``SETTLE`` seconds. Every run so sees the same traffic, and its counters have
series before anything is measured.

Measured, all over HTTP/1.1 on loopback with httpx from this process:

(a) /metrics: ``SCRAPES`` sequential GETs with one keep-alive client after one unmeasured
    GET: latency (request -> body read) p50/p99/max, body bytes, metric families and samples
    of the last body (``prometheus_client.parser``), fleet-gauge refreshes during the phase
    (``tgfleet_fleet_metrics_refresh_duration_seconds_count``, last body minus first) and
    their mean duration. In runs 1 (cached gauges), 2 (a refresh at every scrape) and 3
    (per-account series). Baseline, during run 1: a bare ``prometheus_client`` exporter
    (``start_http_server`` with only the default process/platform/gc collectors) in its
    own Python subprocess, scraped the same way. Its server (``wsgiref``) speaks HTTP/1.0
    and closes the connection after each answer, so each of its scrapes includes a TCP
    connect on loopback (tens of microseconds).
(b) /health and /livez with ``CALLERS`` concurrent callers: as many asyncio tasks, each with
    its own keep-alive HTTP/1.1 connection (``Connection``: a minimal asyncio-streams client,
    opened and used once by a /livez before the clock starts), each making ``REQUESTS``
    requests back to back: p50/p99/max, requests/s, non-200 answers. Harness check in run 1:
    /livez with the same callers sharing one httpx pool of as many connections instead; it
    costs the callers several times the server's CPU (encode/httpx#3215), which is why the
    callers do not use it. /health cached (run 1; one /health just before fills the cache)
    and uncached (run 2); the /health documents computed during a phase are counted from
    ``tgfleet_health_check_duration_seconds_count`` (concurrent callers share one
    computation in flight even with the cache off). Baseline: /livez with the same callers
    in the same run. Also one caller making ``SCRAPES`` requests (after one unmeasured), the
    per-request time without queueing. In run 2, each check's mean duration from the same
    histogram.
(c) CPU (``/proc/<pid>/stat`` utime+stime) of the ``tgfleet run`` process (or the baseline
    exporter) and of this one over each phase; the measured server's RSS (VmRSS) at its end.

A measure and its baseline in the same run are interleaved in ``ROUNDS`` rounds (run 1: bare
exporter and /metrics, ``SCRAPES / ROUNDS`` scrapes each per round; 1-caller /livez and
/health likewise; ``CALLERS x REQUESTS`` /livez then /health per round; run 2: /livez and
uncached /health likewise) and their rounds pooled, so load that comes and goes on the
shared cores falls on both alike. The other measures run once.

Knobs: ``TGFLEET_BENCH_OBS_ACCOUNTS`` (1000), ``TGFLEET_BENCH_OBS_SCRAPES`` (200),
``TGFLEET_BENCH_OBS_CALLERS`` (50), ``TGFLEET_BENCH_OBS_REQUESTS`` (40 per caller),
``TGFLEET_BENCH_OBS_RATE`` (200 burst messages/s), ``TGFLEET_BENCH_OBS_ROUNDS`` (3).
Targets: scrape p99 < 50 ms; cached /health p99 < 20 ms with 50 callers. The load average
is recorded at the start and the end.
Run alone: ``.venv/bin/python bench/run.py observability``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import fleet
import httpx
from _common import Connection, pct, raise_nofile, rss_mib, run_in_tempdir
from fleet import (
    Meter,
    ack_playbook,
    bench_settings,
    build_world,
    prepare,
    query,
    start_accounts,
    start_run,
    verdict,
    worker_env,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.harness import Proc, free_port, poll, start_sandbox, stopping

from tgfleet.sandbox.mint import WORLD_FILE
from tgfleet.sandbox.world import World

ACCOUNTS = int(os.environ.get("TGFLEET_BENCH_OBS_ACCOUNTS", "1000"))
SCRAPES = int(os.environ.get("TGFLEET_BENCH_OBS_SCRAPES", "200"))
CALLERS = int(os.environ.get("TGFLEET_BENCH_OBS_CALLERS", "50"))
REQUESTS = int(os.environ.get("TGFLEET_BENCH_OBS_REQUESTS", "40"))
RATE = float(os.environ.get("TGFLEET_BENCH_OBS_RATE", "200"))
ROUNDS = int(os.environ.get("TGFLEET_BENCH_OBS_ROUNDS", "3"))
POSTERS = 16
SETTLE = 2.0
ONLINE_TIMEOUT = 180.0
BURST_TIMEOUT = 60.0
HTTP_TIMEOUT = 30.0
TARGET_SCRAPE_P99 = 50.0  # ms
TARGET_HEALTH_P99 = 20.0  # ms
EXPORTER_READY = re.compile(r"exporter ready")
# A bare exporter: prometheus_client's default registry (process, platform and gc
# collectors) served by its own start_http_server; nothing else imported.
EXPORTER = """\
import sys, time
from prometheus_client import start_http_server
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
print("exporter ready", flush=True)
while True:
    time.sleep(3600)
"""
# Every message matches; probability 0.5 answers about half, the rest are suppressions.
PLAYBOOK = ack_playbook("bench - answer about half of the messages", 0.5)
DEFAULTS: dict[str, str] = {}
NO_CACHE = {"TGFLEET_METRICS_FLEET_REFRESH_SECONDS": "0", "TGFLEET_HEALTH_CACHE_SECONDS": "0"}
PER_ACCOUNT = {"TGFLEET_METRICS_PER_ACCOUNT": "true"}
HEALTH_COUNT = "tgfleet_health_check_duration_seconds_count"
HEALTH_SUM = "tgfleet_health_check_duration_seconds_sum"
REFRESH_COUNT = "tgfleet_fleet_metrics_refresh_duration_seconds_count"
REFRESH_SUM = "tgfleet_fleet_metrics_refresh_duration_seconds_sum"
ONE_CHECK = {"check": "database:responseTime"}  # every document runs it once
T = TypeVar("T")


# ----------------------------------------------------------------------------- expositions


def samples(body: bytes) -> list[Sample]:
    return [
        sample
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    ]


def total(body: bytes, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = (labels or {}).items()
    return sum(s.value for s in samples(body) if s.name == name and wanted <= s.labels.items())


@dataclass(frozen=True)
class Exposition:
    size: int
    families: int
    samples: int
    account_samples: int  # samples with an ``account`` label
    biggest: list[tuple[str, int]]  # families with the most samples

    @classmethod
    def of(cls, body: bytes) -> Exposition:
        families = list(text_string_to_metric_families(body.decode()))
        per_family = Counter({f.name: len(f.samples) for f in families})
        return cls(
            size=len(body),
            families=len(families),
            samples=sum(per_family.values()),
            account_samples=sum(1 for f in families for s in f.samples if "account" in s.labels),
            biggest=per_family.most_common(3),
        )


# ----------------------------------------------------------------------------- phases


@dataclass(frozen=True)
class Phase:
    latencies: list[float]  # seconds
    wall: float
    cpu: float  # % of one core: the measured server
    bench_cpu: float  # % of one core: this process (the callers)
    rss: float  # MiB, the measured server at the end
    failures: int  # answers other than 200

    def ms(self, q: float) -> float:
        return pct(self.latencies, q) * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall

    @property
    def cpu_ms(self) -> float:
        """Server CPU milliseconds per request."""
        return self.cpu / 100 * self.wall / len(self.latencies) * 1000

    @classmethod
    def merge(cls, phases: list[Phase]) -> Phase:
        """The rounds of one measure as one phase."""
        wall = sum(p.wall for p in phases)
        return cls(
            latencies=[latency for p in phases for latency in p.latencies],
            wall=wall,
            cpu=sum(p.cpu * p.wall for p in phases) / wall,
            bench_cpu=sum(p.bench_cpu * p.wall for p in phases) / wall,
            rss=phases[-1].rss,
            failures=sum(p.failures for p in phases),
        )


@dataclass(frozen=True)
class Scrape:
    phase: Phase
    exposition: Exposition  # of the last body
    refreshes: int  # fleet-gauge reads from the database during the phase
    refresh_seconds: float  # their total duration (server side)

    @property
    def refresh_ms(self) -> float:
        return self.refresh_seconds / self.refreshes * 1000 if self.refreshes else float("nan")

    @classmethod
    def merge(cls, rounds: list[Scrape]) -> Scrape:
        return cls(
            phase=Phase.merge([r.phase for r in rounds]),
            exposition=rounds[-1].exposition,
            refreshes=sum(r.refreshes for r in rounds),
            refresh_seconds=sum(r.refresh_seconds for r in rounds),
        )


@dataclass(frozen=True)
class Concurrent:
    phase: Phase
    computations: int | None  # /health documents computed during the phase

    @classmethod
    def merge(cls, rounds: list[Concurrent]) -> Concurrent:
        counts = [r.computations for r in rounds if r.computations is not None]
        return cls(Phase.merge([r.phase for r in rounds]), sum(counts) if counts else None)


async def interleaved(measures: dict[str, Callable[[], Awaitable[T]]]) -> dict[str, list[T]]:
    """ROUNDS rounds of every measure in turn: a load that comes and goes on the shared
    cores (others' test runs) falls on each measure alike, not on one of them."""
    rounds: dict[str, list[T]] = {name: [] for name in measures}
    for _ in range(ROUNDS):
        for name, measure in measures.items():
            rounds[name].append(await measure())
    return rounds


async def sequential(url: str, count: int, pid: int) -> tuple[Phase, bytes, bytes]:
    """``count`` GETs one after another with one keep-alive client (after one unmeasured);
    the phase, the first (unmeasured) and the last body."""
    latencies: list[float] = []
    failures = 0
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        first = (await http.get(url)).content
        body = first
        meter = Meter({"server": pid})
        for _ in range(count):
            started = time.perf_counter()
            response = await http.get(url)
            latencies.append(time.perf_counter() - started)
            failures += response.status_code != 200
            body = response.content
        wall, cpu = meter.read()
    phase = Phase(latencies, wall, cpu["server"], cpu["bench"], rss_mib(pid), failures)
    return phase, first, body


async def scrape(url: str, pid: int, count: int) -> Scrape:
    phase, first, last = await sequential(f"{url}/metrics", count, pid)
    return Scrape(
        phase=phase,
        exposition=Exposition.of(last),
        refreshes=round(total(last, REFRESH_COUNT) - total(first, REFRESH_COUNT)),
        refresh_seconds=total(last, REFRESH_SUM) - total(first, REFRESH_SUM),
    )


async def single(url: str, pid: int, count: int) -> Phase:
    return (await sequential(url, count, pid))[0]


async def concurrent(url: str, path: str, pid: int, *, httpx_pool: bool = False) -> Concurrent:
    """CALLERS tasks, each REQUESTS GETs of ``path`` back to back: each on its own keep-alive
    connection, or (``httpx_pool``, the harness check) all through one shared httpx pool."""
    latencies: list[float] = []
    failures = 0
    target = httpx.URL(url)
    host, port = target.host, target.port or 80
    connections = [
        await Connection.open(host, port, HTTP_TIMEOUT, Host=f"{host}:{port}")
        for _ in range(CALLERS)
    ]
    limits = httpx.Limits(max_connections=CALLERS, max_keepalive_connections=CALLERS)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT, limits=limits) as http:
            # One /livez each first: every connection is open and used before the clock starts.
            await asyncio.gather(*(c.send("GET", "/livez") for c in connections))
            await asyncio.gather(*(http.get("/livez") for _ in range(CALLERS)))
            health = path == "/health"
            if health:
                await http.get(path)  # the cache (if on) holds a fresh document
                before = (await http.get("/metrics")).content

            async def caller(connection: Connection) -> None:
                nonlocal failures
                for _ in range(REQUESTS):
                    started = time.perf_counter()
                    if httpx_pool:
                        status = (await http.get(path)).status_code
                    else:
                        status = await connection.send("GET", path)
                    latencies.append(time.perf_counter() - started)
                    failures += status != 200

            meter = Meter({"server": pid})
            await asyncio.gather(*(caller(c) for c in connections))
            wall, cpu = meter.read()
            computations = None
            if health:
                after = (await http.get("/metrics")).content
                computations = round(
                    total(after, HEALTH_COUNT, ONE_CHECK) - total(before, HEALTH_COUNT, ONE_CHECK)
                )
    finally:
        for connection in connections:
            await connection.close()
    phase = Phase(latencies, wall, cpu["server"], cpu["bench"], rss_mib(pid), failures)
    return Concurrent(phase, computations)


# ----------------------------------------------------------------------------- processes


@contextlib.contextmanager
def fleet_shaped() -> Iterator[None]:
    """fleet.py's world and seeding helpers read the size and the playbook from its module."""
    saved = fleet.ACCOUNTS, fleet.PLAYBOOK
    fleet.ACCOUNTS, fleet.PLAYBOOK = ACCOUNTS, PLAYBOOK
    try:
        yield
    finally:
        fleet.ACCOUNTS, fleet.PLAYBOOK = saved


async def start_tgfleet(
    workdir: Path, name: str, vault_key: str, sandbox_port: int, settings: dict[str, str]
) -> tuple[Proc, str, float]:
    """``tgfleet run`` with fleet.py's environment plus ``settings``; (child, url, spawn)."""
    env = worker_env(workdir / "data", vault_key)
    env["TGFLEET_TELEGRAM_DCS"] = f"2=127.0.0.1:{sandbox_port}"
    env.update(settings)
    spawned = time.time()
    child, url, _ = await start_run(
        f"tgfleet run ({name})", workdir / f"tgfleet-{name}.log", env, "--host", "127.0.0.1"
    )
    return child, url, spawned


async def start_exporter(workdir: Path) -> tuple[Proc, str]:
    port = free_port()
    child = await Proc.spawn(
        "exporter", [sys.executable, "-c", EXPORTER, str(port)], workdir / "exporter.log"
    )
    try:
        await child.wait_line(EXPORTER_READY, 30.0)
    except BaseException:
        await child.stop()
        raise
    return child, f"http://127.0.0.1:{port}"


async def wait_online(database: Path, spawned: float) -> float:
    """Until every account has an ``online`` state event stamped after ``spawned``; seconds."""
    # TZDateTime on SQLite: naive UTC text, which compares in time order.
    stamp = dt.datetime.fromtimestamp(spawned, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    where = f"kind = 'state' AND state = 'online' AND at >= '{stamp}'"
    sql = f"SELECT count(DISTINCT account_id) FROM account_event WHERE {where}"  # noqa: S608 - our own timestamp
    count = 0

    async def all_online() -> bool:
        nonlocal count
        count = int((await asyncio.to_thread(query, database, sql))[0][0])
        return count >= ACCOUNTS

    if not await poll(all_online, ONLINE_TIMEOUT, 0.2):
        msg = f"only {count} of {ACCOUNTS} accounts online after {ONLINE_TIMEOUT:.0f} s"
        raise RuntimeError(msg)
    return time.time() - spawned


@dataclass(frozen=True)
class Burst:
    posted: int
    seconds: float
    received: int
    replied: int
    suppressed: int
    send_observations: int


async def burst(world: World, control_url: str, url: str, label: str) -> Burst:
    """One member message per group at RATE/s; wait until the worker has decided on each."""
    groups = world.groups
    numbers = iter(range(len(groups)))
    limits = httpx.Limits(max_connections=POSTERS, max_keepalive_connections=POSTERS)
    async with httpx.AsyncClient(base_url=control_url, timeout=HTTP_TIMEOUT, limits=limits) as http:
        begin = time.perf_counter() + 0.2

        async def poster() -> None:
            for n in numbers:
                if (delay := begin + n / RATE - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                group = groups[n]
                response = await http.post(
                    f"/groups/{group.id}/messages",
                    json={"sender": group.members[1], "text": f"obs-{label}-{n}"},
                )
                if response.status_code != 201:
                    msg = f"POST {group.id}: {response.status_code} {response.text}"
                    raise RuntimeError(msg)

        await asyncio.gather(*(poster() for _ in range(POSTERS)))
        seconds = time.perf_counter() - begin
    body = b""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:

        async def decided() -> bool:
            nonlocal body
            body = (await http.get(f"{url}/metrics")).content
            received = total(body, "tgfleet_messages_received_total")
            answered = total(body, "tgfleet_replies_sent_total") + total(
                body, "tgfleet_replies_suppressed_total"
            )
            return received >= len(groups) and answered >= len(groups)

        await poll(decided, BURST_TIMEOUT, 0.5)
    await asyncio.sleep(SETTLE)
    return Burst(
        posted=len(groups),
        seconds=seconds,
        received=round(total(body, "tgfleet_messages_received_total")),
        replied=round(total(body, "tgfleet_replies_sent_total")),
        suppressed=round(total(body, "tgfleet_replies_suppressed_total")),
        send_observations=round(total(body, "tgfleet_send_duration_seconds_count")),
    )


# ----------------------------------------------------------------------------- runs


@dataclass
class Results:
    load_start: tuple[float, float, float]
    nofile: int = 0
    online: dict[str, float] = field(default_factory=dict)  # run -> spawn to all online
    bursts: dict[str, Burst] = field(default_factory=dict)
    # run -> (CPU %, RSS MiB) over the 3 s after all online (startup's tail, not idle)
    idle: dict[str, tuple[float, float]] = field(default_factory=dict)
    scrapes: dict[str, Scrape] = field(default_factory=dict)
    single: dict[str, Phase] = field(default_factory=dict)  # one caller
    crowd: dict[str, Concurrent] = field(default_factory=dict)  # CALLERS callers
    document: dict[str, object] = field(default_factory=dict)  # a cached /health document
    checks_ms: dict[str, float] = field(default_factory=dict)  # run 2: mean per check
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)


async def run_tgfleet(
    results: Results,
    workdir: Path,
    world: World,
    control_url: str,
    port: int,
    vault_key: str,
    name: str,
    settings: dict[str, str],
) -> tuple[Proc, str]:
    """Start ``tgfleet run``, wait for all online, measure 3 s, post the burst."""
    child, url, spawned = await start_tgfleet(workdir, name, vault_key, port, settings)
    try:
        results.online[name] = await wait_online(workdir / "data" / "tgfleet.db", spawned)
        meter = Meter({"server": child.pid})
        await asyncio.sleep(3.0)
        _, cpu = meter.read()
        results.idle[name] = (cpu["server"], rss_mib(child.pid))
        results.bursts[name] = await burst(world, control_url, url, name)
    except BaseException:
        await child.stop()
        raise
    return child, url


async def run(workdir: Path) -> Results:
    results = Results(load_start=os.getloadavg())
    results.nofile = raise_nofile(4 * ACCOUNTS + 2048)  # inherited by every subprocess
    port = free_port()
    world_dir = workdir / "world"
    vault_key = base64.b64encode(os.urandom(32)).decode()
    with fleet_shaped():
        world = await asyncio.to_thread(build_world, world_dir, port)
        ids = await prepare(bench_settings(workdir / "data", vault_key), world, world_dir)
        await start_accounts(bench_settings(workdir / "data", vault_key), ids)
    print(f"observability: {ACCOUNTS} accounts seeded; sandbox ...", flush=True)
    sandbox, control_url = await start_sandbox(
        world_dir / WORLD_FILE, port, workdir / "sandbox.log"
    )
    async with stopping(sandbox):
        shared = (results, workdir, world, control_url, port, vault_key)
        per_round = -(-SCRAPES // ROUNDS)  # an interleaved measure makes ~SCRAPES in all

        print("observability: run 1 (defaults) ...", flush=True)
        child, url = await run_tgfleet(*shared, "defaults", DEFAULTS)
        async with stopping(child):
            pid = child.pid
            exporter, exporter_url = await start_exporter(workdir)
            async with stopping(exporter):
                scrapes = await interleaved(
                    {
                        "exporter": lambda: scrape(exporter_url, exporter.pid, per_round),
                        "cached": lambda: scrape(url, pid, per_round),
                    }
                )
            results.scrapes.update({k: Scrape.merge(v) for k, v in scrapes.items()})
            singles = await interleaved(
                {
                    "livez": lambda: single(f"{url}/livez", pid, per_round),
                    "health cached": lambda: single(f"{url}/health", pid, per_round),
                }
            )
            results.single.update({k: Phase.merge(v) for k, v in singles.items()})
            crowds = await interleaved(
                {
                    "livez 1": lambda: concurrent(url, "/livez", pid),
                    "health cached": lambda: concurrent(url, "/health", pid),
                }
            )
            results.crowd.update({k: Concurrent.merge(v) for k, v in crowds.items()})
            results.crowd["livez httpx"] = await concurrent(url, "/livez", pid, httpx_pool=True)
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
                results.document = (await http.get(f"{url}/health")).json()

        print("observability: run 2 (no caches) ...", flush=True)
        child, url = await run_tgfleet(*shared, "no caches", NO_CACHE)
        async with stopping(child):
            pid = child.pid
            results.scrapes["refresh"] = await scrape(url, pid, SCRAPES)
            crowds = await interleaved(
                {
                    "livez 2": lambda: concurrent(url, "/livez", pid),
                    "health uncached": lambda: concurrent(url, "/health", pid),
                }
            )
            results.crowd.update({k: Concurrent.merge(v) for k, v in crowds.items()})
            results.single["health uncached"] = await single(f"{url}/health", pid, SCRAPES)
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
                body = (await http.get(f"{url}/metrics")).content
            for sample in samples(body):
                if sample.name == HEALTH_COUNT and sample.value:
                    check = sample.labels["check"]
                    seconds = total(body, HEALTH_SUM, {"check": check})
                    results.checks_ms[check] = seconds / sample.value * 1000

        print("observability: run 3 (per-account series) ...", flush=True)
        child, url = await run_tgfleet(*shared, "per account", PER_ACCOUNT)
        async with stopping(child):
            results.scrapes["per account"] = await scrape(url, child.pid, SCRAPES)
    results.load_end = os.getloadavg()
    return results


# ----------------------------------------------------------------------------- report


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.1f}x" if theirs > 0 else "-"


def report(r: Results) -> list[str]:
    cores = len(os.sched_getaffinity(0))
    n = ACCOUNTS
    lines = [
        f"### Observability: /metrics and /health with {n:,} accounts online (issue 7)",
        "",
        (
            f"`tgfleet run` (API + worker, one process, SQLite) holding {n:,} accounts online "
            "against the sandbox (bench/fleet.py's world and seeding: one account per basic "
            "group; `TGFLEET_TELEGRAM_DCS` pointed at the sandbox, so everything stays on "
            "loopback), started three times: (1) defaults, (2) "
            "`TGFLEET_METRICS_FLEET_REFRESH_SECONDS=0` + `TGFLEET_HEALTH_CACHE_SECONDS=0`, (3) "
            "`TGFLEET_METRICS_PER_ACCOUNT=true`. After all accounts were online, each run got "
            f"the same burst: one member message per group ({n:,} messages at {RATE:,.0f}/s "
            "through the sandbox's control API), answered by a playbook replying with "
            "probability 0.5, so replies, suppressions and send latency carry series. "
            f"/metrics: {SCRAPES} sequential scrapes, one keep-alive httpx client; baseline a "
            "bare `prometheus_client.start_http_server` exporter (default collectors only) in "
            "its own subprocess, scraped the same way during run 1 (HTTP/1.0: a new loopback "
            f"connection per scrape). /health and /livez: {CALLERS} asyncio callers, each on "
            "its own keep-alive HTTP/1.1 connection (a minimal asyncio-streams client: "
            f"httpx's shared pool is the harness check below), {REQUESTS} requests each back "
            f"to back ({CALLERS * REQUESTS:,} requests); also 1 caller x {SCRAPES} with httpx. "
            "Latency = request to body read, in this process. Each measure and its baseline "
            f"interleaved in {ROUNDS} rounds and pooled (a /health or /livez row with "
            f"{CALLERS} callers: {ROUNDS} x {CALLERS * REQUESTS:,} requests). All processes "
            f"(tgfleet, sandbox, the callers, others' test runs) share {cores} cores. Load "
            "average "
            f"(1/5/15 min) at the start {fmt_load(r.load_start)}, at the end "
            f"{fmt_load(r.load_end)}."
        ),
        "",
    ]
    for name in r.online:
        b = r.bursts[name]
        cpu, rss = r.idle[name]
        lines.append(
            f"- run {name}: all {n:,} online {r.online[name]:.1f} s after spawn; the 3 s "
            f"after (startup's tail, not idle: bench/fleet.py measures idle): {cpu:.1f}% of a "
            f"core, RSS {rss:.0f} MiB; burst posted in {b.seconds:.1f} s; "
            f"the process counted {b.received:,} received, {b.replied:,} replies, "
            f"{b.suppressed:,} suppressed, {b.send_observations:,} send-duration observations"
        )
    base = r.scrapes["exporter"].phase
    lines += [
        "",
        "#### /metrics scrapes",
        "",
        (
            "| target | p50 / p99 / max | body | families / samples | fleet refreshes "
            "(mean) | server CPU per scrape; RSS | p50 / p99 vs bare exporter | p99 < 50 ms |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {
        "exporter": "bare prometheus_client exporter (baseline)",
        "cached": "tgfleet run, defaults (fleet gauges cached 5 s)",
        "refresh": "tgfleet run, fleet gauges read at every scrape",
        "per account": "tgfleet run, per-account series on",
    }
    for key, label in labels.items():
        s = r.scrapes[key]
        p, e = s.phase, s.exposition
        refreshes = (
            "-"
            if key == "exporter"
            else f"{s.refreshes} ({s.refresh_ms:.1f} ms)"
            if s.refreshes
            else "0"
        )
        accounts = f", {e.account_samples:,} with `account`" if e.account_samples else ""
        vs = (
            "1.0x / 1.0x (baseline)"
            if key == "exporter"
            else f"{ratio(p.ms(0.5), base.ms(0.5))} / {ratio(p.ms(0.99), base.ms(0.99))}"
        )
        judged = "-" if key == "exporter" else verdict(p.ms(0.99) < TARGET_SCRAPE_P99)
        lines.append(
            f"| {label} | {p.ms(0.5):.2f} / {p.ms(0.99):.2f} / {p.ms(1.0):.2f} ms | "
            f"{e.size:,} B | {e.families} / {e.samples:,}{accounts} | {refreshes} | "
            f"{p.cpu_ms:.2f} ms; {p.rss:.0f} MiB | {vs} | {judged} |"
        )
    cached, refresh, per = r.scrapes["cached"], r.scrapes["refresh"], r.scrapes["per account"]
    biggest = ", ".join(f"`{name}` {count}" for name, count in cached.exposition.biggest)
    extra_samples = max(per.exposition.samples - cached.exposition.samples, 1)
    per_sample = (per.phase.cpu_ms - cached.phase.cpu_ms) * 1000 / extra_samples
    lines += [
        "",
        (
            "Fleet refresh at every scrape: p50 "
            f"{refresh.phase.ms(0.5) - cached.phase.ms(0.5):+.2f} ms, p99 "
            f"{refresh.phase.ms(0.99) - cached.phase.ms(0.99):+.2f} ms vs cached "
            f"(server-side mean refresh {refresh.refresh_ms:.2f} ms). Per-account series: "
            f"{per.exposition.size - cached.exposition.size:+,} B "
            f"({per.exposition.size / cached.exposition.size:.1f}x), "
            f"{per.exposition.samples - cached.exposition.samples:+,} samples, p50 "
            f"{per.phase.ms(0.5) - cached.phase.ms(0.5):+.2f} ms "
            f"({ratio(per.phase.ms(0.5), cached.phase.ms(0.5))}), p99 "
            f"{per.phase.ms(0.99) - cached.phase.ms(0.99):+.2f} ms; server CPU "
            f"{per.phase.cpu_ms - cached.phase.cpu_ms:+.1f} ms per scrape, "
            f"{per_sample:.1f} µs per extra sample (prometheus_client's text exposition, "
            "which grows with the samples). Biggest families "
            f"(samples) by default: {biggest}. Callers' CPU during the default scrapes "
            f"{cached.phase.bench_cpu:.0f}% of a core."
        ),
        "",
        "#### /health and /livez",
        "",
        (
            "| endpoint | callers x requests | p50 / p99 / max | requests/s | documents "
            "computed | server CPU (per request); RSS | callers' CPU | p50 / p99 vs /livez | "
            "non-200 |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [
        ("/livez (run 1, baseline)", r.crowd["livez 1"], None),
        ("/health, cache 5 s (run 1)", r.crowd["health cached"], r.crowd["livez 1"]),
        ("/livez (run 2, baseline)", r.crowd["livez 2"], None),
        ("/health, no cache (run 2)", r.crowd["health uncached"], r.crowd["livez 2"]),
        (
            "harness check: /livez via one shared httpx pool (run 1)",
            r.crowd["livez httpx"],
            r.crowd["livez 1"],
        ),
    ]
    for label, c, against in rows:
        lines.append(crowd_row(label, f"{CALLERS} x {REQUESTS}", c.phase, c.computations, against))
    singles = [
        ("/livez (run 1)", r.single["livez"], None),
        ("/health, cache 5 s (run 1)", r.single["health cached"], r.single["livez"]),
        ("/health, no cache (run 2)", r.single["health uncached"], r.single["livez"]),
    ]
    for label, phase, baseline in singles:
        lines.append(crowd_row(label, f"1 x {SCRAPES}", phase, None, baseline))
    uncached = r.crowd["health uncached"]
    checks = ", ".join(
        f"`{name}` {ms:.2f}" for name, ms in sorted(r.checks_ms.items(), key=lambda item: -item[1])
    )
    lines += [
        "",
        (
            f"No cache: {uncached.computations:,} documents for "
            f"{len(uncached.phase.latencies):,} requests with {CALLERS} callers (callers "
            "arriving while one is computed share it); alone, each /health runs every "
            f"check: {r.single['health uncached'].ms(0.5):.2f} ms p50 vs "
            f"{r.single['health cached'].ms(0.5):.2f} ms cached. Mean duration per check "
            f"(ms, run 2; the checks of a document run in parallel on one event loop, so "
            f"each includes its wait for the others): {checks}. The document in run 1: "
            f"{describe(r.document)}."
        ),
        "",
    ]
    lines += verdicts(r)
    return lines


def crowd_row(label: str, shape: str, p: Phase, computations: int | None, against: object) -> str:
    if isinstance(against, Concurrent):
        base: Phase | None = against.phase
    elif isinstance(against, Phase):
        base = against
    else:
        base = None
    vs = (
        f"{ratio(p.ms(0.5), base.ms(0.5))} / {ratio(p.ms(0.99), base.ms(0.99))}"
        if base is not None
        else "1.0x / 1.0x (baseline)"
    )
    return (
        f"| {label} | {shape} | {p.ms(0.5):.2f} / {p.ms(0.99):.2f} / {p.ms(1.0):.2f} ms | "
        f"{p.rate:,.0f} | {'-' if computations is None else f'{computations:,}'} | "
        f"{p.cpu:.0f}% ({p.cpu_ms:.2f} ms); {p.rss:.0f} MiB | {p.bench_cpu:.0f}% | {vs} | "
        f"{p.failures} |"
    )


def describe(document: dict[str, object]) -> str:
    status = document.get("status", "?")
    checks = document.get("checks", {})
    notes = [
        f"`{name}` {result.get('status')} ({result.get('output')})"
        for name, results in (checks.items() if isinstance(checks, dict) else [])
        for result in (results if isinstance(results, list) else [])
        if isinstance(result, dict) and result.get("status") != "pass"
    ]
    return f"status `{status}`" + (
        f"; not pass: {'; '.join(notes)}" if notes else ", every check pass"
    )


def verdicts(r: Results) -> list[str]:
    cached = r.scrapes["cached"].phase
    refresh = r.scrapes["refresh"].phase
    per = r.scrapes["per account"].phase
    health = r.crowd["health cached"].phase
    livez = r.crowd["livez 1"].phase
    exporter = r.scrapes["exporter"].phase
    return [
        "| target | measured | verdict |",
        "|---|---|---|",
        (
            f"| /metrics scrape p99 < 50 ms ({ACCOUNTS:,} accounts, defaults) | "
            f"{cached.ms(0.99):.2f} ms ({ratio(cached.ms(0.99), exporter.ms(0.99))} "
            f"the bare exporter) | {verdict(cached.ms(0.99) < TARGET_SCRAPE_P99)} |"
        ),
        (
            f"| same, fleet gauges read at every scrape | {refresh.ms(0.99):.2f} ms | "
            f"{verdict(refresh.ms(0.99) < TARGET_SCRAPE_P99)} |"
        ),
        (
            f"| same, per-account series on | {per.ms(0.99):.2f} ms | "
            f"{verdict(per.ms(0.99) < TARGET_SCRAPE_P99)} |"
        ),
        (
            f"| cached /health p99 < 20 ms, {CALLERS} concurrent callers | "
            f"{health.ms(0.99):.2f} ms ({health.ms(0.99) / TARGET_HEALTH_P99:.1f}x the target; "
            f"/livez under the same callers: {livez.ms(0.99):.2f} ms, so /health = "
            f"{ratio(health.ms(0.99), livez.ms(0.99))} /livez) | "
            f"{verdict(health.ms(0.99) < TARGET_HEALTH_P99)} |"
        ),
        "",
        (
            f"Reading the /health verdict: {CALLERS} callers each sending its next request as "
            "soon as the last is answered keep "
            f"{CALLERS} requests in flight, so mean latency = {CALLERS} / throughput "
            f"(Little's law): cached /health ran {health.rate:,.0f} requests/s, a mean of "
            f"{CALLERS / health.rate * 1000:.1f} ms (measured mean "
            f"{sum(health.latencies) / len(health.latencies) * 1000:.1f} ms); /livez, which "
            f"does nothing, ran {livez.rate:,.0f}/s under the same callers. A p99 under "
            f"{TARGET_HEALTH_P99:.0f} ms at {CALLERS} callers needs more than "
            f"{CALLERS / (TARGET_HEALTH_P99 / 1000):,.0f} requests/s from one event loop, with "
            "the callers' own HTTP client on the same cores. Cached /health vs /livez at p50: "
            f"{ratio(health.ms(0.5), livez.ms(0.5))}"
            + (
                ": what limits the answer time is requests per second through the HTTP stack "
                "and the shared cores, not the health checks."
                if health.ms(0.5) < 1.5 * livez.ms(0.5)
                else ": serving the cached document costs clearly more than /livez."
            )
        ),
    ]


def fmt_load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in load)


# ----------------------------------------------------------------------------- main


def main() -> str:
    return "\n".join(report(run_in_tempdir(run, "tgfleet-bench-obs-")))


if __name__ == "__main__":
    print(main())
