"""API benchmark (issue 14 item 11): on SQLite, reads must not wait behind writes.

A real server process (``tgfleet run --no-worker``: the API alone, SQLite in a fresh data dir)
with ``ACCOUNTS`` accounts (no sessions; the worker is off, so start/stop only move the desired
state, audit and notify: the API's own write path). This process then opens ``READERS`` +
``WRITERS`` keep-alive HTTP/1.1 connections (a minimal asyncio-streams client, one per caller,
as bench/observability.py does: a shared httpx pool would cost the callers more CPU than the
server spends) and, with the clock started when every connection has answered one ``/livez``:

- ``READERS`` callers each send ``READS`` ``GET /api/v1/accounts`` back to back (a page of 50
  with the per-state counts);
- ``WRITERS`` callers each alternate ``POST /api/v1/accounts/{id}/start`` and ``/stop`` on
  accounts picked round-robin, back to back, until every reader has finished (at least
  ``MIN_WRITES`` each), so the reads run under write load from start to end.

All callers use one admin JWT (from ``POST /api/v1/auth/login``). Latency is request written to
body read, in this process. An error is any answer other than 200, or no answer within
``HTTP_TIMEOUT``. Server CPU is ``/proc/<pid>/stat`` utime+stime over the load.

Baseline: with ``TGFLEET_BENCH_API_BASELINE`` set to another checkout (e.g. a
``git worktree add /tmp/before <commit>``), the same load is run against a server started from
that checkout's ``src`` (``PYTHONPATH``), seeded by that checkout's own code, alternating with
this checkout in ``ROUNDS`` rounds; the report gives both and the ratio. Sizes via
``TGFLEET_BENCH_API_ACCOUNTS`` (100), ``TGFLEET_BENCH_API_READERS`` (100),
``TGFLEET_BENCH_API_WRITERS`` (50), ``TGFLEET_BENCH_API_READS`` (10 per reader),
``TGFLEET_BENCH_API_ROUNDS`` (1). Targets on the project's 2-core machine: 0 errors, GET p99
< 300 ms, write p99 < 1 s. Run alone: ``.venv/bin/python bench/run.py api``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _common import Connection, cpu_seconds, pct, raise_nofile, rss_mib
from fleet import Meter, start_run, verdict, worker_env
from tests.harness import Proc

ACCOUNTS = int(os.environ.get("TGFLEET_BENCH_API_ACCOUNTS", "100"))
READERS = int(os.environ.get("TGFLEET_BENCH_API_READERS", "100"))
WRITERS = int(os.environ.get("TGFLEET_BENCH_API_WRITERS", "50"))
READS = int(os.environ.get("TGFLEET_BENCH_API_READS", "10"))
ROUNDS = int(os.environ.get("TGFLEET_BENCH_API_ROUNDS", "1"))
BASELINE = os.environ.get("TGFLEET_BENCH_API_BASELINE")
MIN_WRITES = 4
HTTP_TIMEOUT = 30.0
USERNAME = "bench"
PASSWORD = "bench-password-0123456789"  # noqa: S105 - a throwaway user in a temp database
READ_PATH = "/api/v1/accounts"
GET_P99_TARGET_MS = 300.0
WRITE_P99_TARGET_MS = 1000.0
HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- results


@dataclass
class Calls:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, seconds: float, outcome: str) -> None:
        self.latencies.append(seconds)
        if outcome != "200":
            self.errors[outcome] = self.errors.get(outcome, 0) + 1

    def ms(self, q: float) -> float:
        return pct(self.latencies, q) * 1000

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


@dataclass
class Load:
    name: str
    reads: Calls
    writes: Calls
    wall: float
    server_cpu: float
    rss: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]

    @property
    def requests(self) -> int:
        return len(self.reads.latencies) + len(self.writes.latencies)

    @property
    def errors(self) -> int:
        return self.reads.failed + self.writes.failed


# ----------------------------------------------------------------------------- seeding


def seed(data_dir: Path) -> None:
    """Migrate a fresh database in ``data_dir``, create the bench admin and ACCOUNTS accounts,
    with the services of whichever checkout ``PYTHONPATH`` names (run as ``api.py seed``)."""
    from pydantic import SecretStr

    from tgfleet import migrations
    from tgfleet.account import service as account_service
    from tgfleet.audit.schemas import AuditContext
    from tgfleet.auth import service as auth_service
    from tgfleet.config import Environment, Settings
    from tgfleet.kit.data_dir import ensure_data_dir
    from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work

    settings = Settings(
        env=Environment.TEST,
        data_dir=data_dir,
        vault_key=SecretStr(os.environ["TGFLEET_VAULT_KEY"]),
        argon2_time_cost=1,
        argon2_memory_kib=8,
        argon2_parallelism=1,
    )
    ensure_data_dir(settings)
    migrations.upgrade(settings.effective_database_url)
    try:  # a keyed audit chain (issue 14 item 4); an older checkout has none
        from tgfleet.audit import keys as audit_keys
    except ImportError:
        pass
    else:
        audit_keys.configure(settings)

    async def work() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            security = auth_service.Security.from_settings(settings)
            context = AuditContext(actor="cli:bench")
            async with unit_of_work(create_sessionmaker(engine)) as session:
                await auth_service.create_user(
                    session, security, context, username=USERNAME, role="admin", password=PASSWORD
                )
                await account_service.create_accounts(
                    session,
                    [
                        account_service.NewAccount(label=f"bench-{n:04d}", tg_user_id=None, dc_id=2)
                        for n in range(ACCOUNTS)
                    ],
                )
        finally:
            await engine.dispose()

    asyncio.run(work())


# ----------------------------------------------------------------------------- one load


def checkout_env(data_dir: Path, vault_key: str, src: Path) -> dict[str, str]:
    env = worker_env(data_dir, vault_key)
    env["PYTHONPATH"] = str(src)  # this checkout's code, whatever the venv has installed
    return env


async def start_server(workdir: Path, name: str, src: Path) -> tuple[Proc, str, int]:
    data_dir = workdir / name
    env = checkout_env(data_dir, base64.b64encode(os.urandom(32)).decode(), src)
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(HERE / "api.py"), "seed", str(data_dir)],
        env=env,
        check=True,
        timeout=300,
    )
    return await start_run(
        f"tgfleet run ({name})", workdir / f"{name}.log", env, "--no-worker", "--host", "127.0.0.1"
    )


async def measure(workdir: Path, name: str, src: Path) -> Load:
    child, url, port = await start_server(workdir, name, src)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT) as http:
            answer = await http.post(
                "/api/v1/auth/login", json={"username": USERNAME, "password": PASSWORD}
            )
            answer.raise_for_status()
            token = answer.json()["access_token"]
            page = await http.get(
                READ_PATH, params={"limit": 200}, headers={"Authorization": f"Bearer {token}"}
            )
            page.raise_for_status()
            ids = [uuid.UUID(item["id"]) for item in page.json()["items"]]
        return await load(name, child.pid, port, token, ids)
    finally:
        await child.stop()


async def load(name: str, pid: int, port: int, token: str, ids: list[uuid.UUID]) -> Load:
    reads, writes = Calls(), Calls()
    connections = [
        await Connection.open("127.0.0.1", port, HTTP_TIMEOUT, Host="bench")
        for _ in range(READERS + WRITERS)
    ]
    bearer = f"Authorization: Bearer {token}\r\nContent-Length: 0\r\n"
    readers_done = asyncio.Event()
    remaining = READERS

    async def call(connection: Connection, method: str, path: str, into: Calls) -> None:
        started = time.perf_counter()
        try:
            outcome = str(await connection.send(method, path, bearer))
        except TimeoutError:
            outcome = "timeout"
        into.add(time.perf_counter() - started, outcome)

    async def reader(connection: Connection) -> None:
        nonlocal remaining
        for _ in range(READS):
            await call(connection, "GET", READ_PATH, reads)
        remaining -= 1
        if remaining == 0:
            readers_done.set()

    async def writer(index: int, connection: Connection) -> None:
        done = 0
        while done < MIN_WRITES or not readers_done.is_set():
            account = ids[(index + done * WRITERS) % len(ids)]
            action = "start" if done % 2 == 0 else "stop"
            await call(connection, "POST", f"/api/v1/accounts/{account}/{action}", writes)
            done += 1

    try:
        await asyncio.gather(*(c.send("GET", "/livez", bearer) for c in connections))
        load_before = os.getloadavg()
        meter = Meter({"server": pid})
        await asyncio.gather(
            *(reader(c) for c in connections[:READERS]),
            *(writer(i, c) for i, c in enumerate(connections[READERS:])),
        )
        wall, cpu = meter.read()
        load_after = os.getloadavg()
    finally:
        for connection in connections:
            await connection.close()
    return Load(name, reads, writes, wall, cpu["server"], rss_mib(pid), load_before, load_after)


# ----------------------------------------------------------------------------- report


def fmt_load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


def describe_errors(calls: Calls) -> str:
    if not calls.errors:
        return "0"
    listed = ", ".join(f"{count} x {outcome}" for outcome, count in sorted(calls.errors.items()))
    return f"{calls.failed} ({listed})"


def row(result: Load) -> str:
    r, w = result.reads, result.writes
    return (
        f"| {result.name} | {len(r.latencies):,} + {len(w.latencies):,} | "
        f"{describe_errors(r)} / {describe_errors(w)} | "
        f"{r.ms(0.5):.0f} / {r.ms(0.99):.0f} / {r.ms(1.0):.0f} ms | "
        f"{w.ms(0.5):.0f} / {w.ms(0.99):.0f} / {w.ms(1.0):.0f} ms | "
        f"{result.requests / result.wall:.0f} | {result.server_cpu:.0f}% ; {result.rss:.0f} MiB | "
        f"{fmt_load(result.load_before)} -> {fmt_load(result.load_after)} |"
    )


def pooled(results: list[Load]) -> Load:
    reads, writes = Calls(), Calls()
    for result in results:
        reads.latencies += result.reads.latencies
        writes.latencies += result.writes.latencies
        for calls, into in ((result.reads, reads), (result.writes, writes)):
            for outcome, count in calls.errors.items():
                into.errors[outcome] = into.errors.get(outcome, 0) + count
    wall = sum(r.wall for r in results)
    return Load(
        results[0].name,
        reads,
        writes,
        wall,
        sum(r.server_cpu * r.wall for r in results) / wall,
        max(r.rss for r in results),
        results[0].load_before,
        results[-1].load_after,
    )


def ratio(ours: float, theirs: float) -> str:
    return f"{theirs / ours:.1f}x faster" if ours <= theirs else f"{ours / theirs:.1f}x slower"


def report(ours: Load, base: Load | None, baseline: str | None) -> list[str]:
    lines = [
        (
            f"### API: {READERS} concurrent `GET /api/v1/accounts` callers with {WRITERS} "
            f"concurrent start/stop callers, SQLite (issue 14 item 11)"
        ),
        "",
        f"`tgfleet run --no-worker` (the API alone, one process, SQLite, WARNING logs) with "
        f"{ACCOUNTS} accounts; {READERS} callers x {READS} `GET {READ_PATH}` (a page of 50 "
        f"with the per-state counts) back to back, and {WRITERS} callers alternating "
        f"`POST /api/v1/accounts/{{id}}/start` and `/stop` back to back until the last read "
        f"(at least {MIN_WRITES} each); each caller on its own keep-alive connection, one "
        f"admin JWT. Latency = request written to body read, in this process; an error = "
        f"any status but 200 or no answer in {HTTP_TIMEOUT:.0f} s. {ROUNDS} round(s)"
        + (", alternating with the baseline" if base is not None else "")
        + ". Server, callers and other agents' work share the cores: load average "
        "(1/5/15 min) before -> after each load is in the table. Method in bench/api.py.",
        "",
        (
            "| server | requests (GET + write) | errors GET / write | GET p50 / p99 / max | "
            "write p50 / p99 / max | requests/s | server CPU ; RSS | load average |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    if base is not None:
        lines.append(row(base))
    lines += [row(ours), ""]
    if base is not None:
        lines += [
            (
                f"Baseline: the checkout at {baseline}. This checkout vs the baseline: GET p50 "
                f"{ratio(ours.reads.ms(0.5), base.reads.ms(0.5))}, GET p99 "
                f"{ratio(ours.reads.ms(0.99), base.reads.ms(0.99))}, write p50 "
                f"{ratio(ours.writes.ms(0.5), base.writes.ms(0.5))}, write p99 "
                f"{ratio(ours.writes.ms(0.99), base.writes.ms(0.99))}; errors "
                f"{base.errors} -> {ours.errors}."
            ),
            "",
        ]
    lines += [
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| 0 errors | {ours.errors} of {ours.requests:,} | {verdict(ours.errors == 0)} |",
        (
            f"| GET p99 < {GET_P99_TARGET_MS:.0f} ms | {ours.reads.ms(0.99):.0f} ms | "
            f"{verdict(ours.reads.ms(0.99) < GET_P99_TARGET_MS)} |"
        ),
        (
            f"| write p99 < {WRITE_P99_TARGET_MS:.0f} ms | {ours.writes.ms(0.99):.0f} ms | "
            f"{verdict(ours.writes.ms(0.99) < WRITE_P99_TARGET_MS)} |"
        ),
    ]
    return lines


# ----------------------------------------------------------------------------- main


async def run(workdir: Path) -> list[str]:
    raise_nofile(4 * (READERS + WRITERS) + 1024)
    ours_src = HERE.parent / "src"
    base_src = Path(BASELINE) / "src" if BASELINE else None  # an absolute path
    ours: list[Load] = []
    base: list[Load] = []
    for index in range(ROUNDS):
        if base_src is not None:
            print(f"api: round {index + 1}: baseline ...", flush=True)
            base.append(await measure(workdir, f"baseline-{index}", base_src))
            print(json.dumps(summary(base[-1])), flush=True)
        print(f"api: round {index + 1}: this checkout ...", flush=True)
        ours.append(await measure(workdir, f"ours-{index}", ours_src))
        print(json.dumps(summary(ours[-1])), flush=True)
    mine = pooled(ours)
    mine.name = "this checkout"
    theirs = None
    if base:
        theirs = pooled(base)
        theirs.name = "baseline"
    return report(mine, theirs, BASELINE)


def summary(result: Load) -> dict[str, object]:
    return {
        "name": result.name,
        "requests": result.requests,
        "errors": {"get": result.reads.errors, "write": result.writes.errors},
        "get_ms": [round(result.reads.ms(q)) for q in (0.5, 0.99, 1.0)],
        "write_ms": [round(result.writes.ms(q)) for q in (0.5, 0.99, 1.0)],
        "wall_s": round(result.wall, 1),
        "server_cpu_pct": round(result.server_cpu),
        "cpu_s": round(cpu_seconds(os.getpid()), 1),
    }


def main() -> str:
    from tgfleet.logging import configure_logging

    configure_logging(level="WARNING")  # as bench/run.py does, also when run alone
    with tempfile.TemporaryDirectory(prefix="tgfleet-bench-api-") as tmp:
        lines = asyncio.run(run(Path(tmp)))
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["seed"]:
        seed(Path(sys.argv[2]))
    else:
        print(main())
