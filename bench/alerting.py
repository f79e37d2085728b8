"""Alerting benchmark (issue 8): a mass ban, and how the operators hear of it.

Issue 8: "A mass ban: 10,000 accounts quarantined within a second. Time until the operators
are notified, and how many Telegram messages that takes." Target: delivered within
``group_wait`` + 5 s, at most one message per group key, split only by the 4,096-character
limit.

The Bot API is a recorder that this file serves when run as a script (``python
bench/alerting.py recorder``, a subprocess of its own, so its CPU is not ours): it accepts
``getMe`` and ``sendMessage`` for one token and one chat, answers ``400 message is too
long`` like Telegram when the visible text (tags stripped, entities decoded, stripped,
counted in UTF-16 units) is over 4,096, and records for each message its arrival
(``time.monotonic()``, the same clock in every process on Linux) and its text. It does not
validate the HTML (tests/fakes/telegram_bot_api.py does, in the tests) and never answers
429: real Telegram limits a bot to about 20 messages a minute in one group.

Per database (a fresh SQLite data dir; then PostgreSQL on a scratch database created on
``TGFLEET_BENCH_ALERT_PG`` and dropped after; ``""`` skips it):

1. migrate (``tgfleet.migrations.upgrade``); N accounts ``acct00000``... desired running,
   created through ``account_service.create_accounts`` and recorded ``online`` through
   ``account.runtime.apply`` (batches of ``SEED_BATCH``), on an engine of the bench's own,
   before the app starts;
2. the app in this process: ``create_app(settings)`` and its lifespan, with
   ``alerting_enabled=True``, ``alerting_config`` the YAML below,
   ``alerting_evaluation_interval_seconds=2`` (the default),
   ``alerting_online_ratio_threshold=0`` (only the ban alerts fire) and ``telegram_dcs=""``.
   The configuration: one route, ``group_by: [alertname]``, ``group_wait: 30s``
   (Alertmanager's default; ``TGFLEET_BENCH_ALERT_GROUP_WAIT``), ``group_interval: 10s``,
   ``repeat_interval: 1h``, receiver ``ops`` with one ``telegram_configs`` entry (the default
   message, HTML) pointed at the recorder. The evaluator's ``evaluate`` is wrapped in place
   to time each run and count the firing alerts it returns;
3. after ``WARM_EVALUATIONS`` evaluations with everyone online, the ban: all N recorded
   ``quarantined`` with reason ``banned`` by ``account.runtime.apply`` in ``BAN_TRANSACTIONS``
   transaction(s) on the app's sessionmaker; t0 = when the last one committed;
4. measured: from t0 to the end of the evaluation that first returned N firing alerts (it
   puts them in the dispatcher: the group's ``group_wait`` starts there), to the first
   message the recorder accepted (its ``(1/n)`` says how many follow; meanwhile only the
   recorder's count is polled, every 0.25 s) and to the last; the messages' count and
   visible sizes; that every account label appears exactly once across them; how many
   messages the same lines need when packed greedily up to 4,096 units with their
   ``(k/n)`` markers (what a split by the limit alone gives); the group keys in the
   notification log (``alert_service.notification_history``); then a wait until one
   ``group_interval`` + 3 s after the last message, in which nothing more may arrive. CPU
   is this process's (app, evaluator, aiosqlite threads, and the bench's light polling),
   ``os.times``, from t0 to the last message and over that quiet window (the evaluator
   re-reading N quarantined accounts every 2 s); RSS sampled every 0.25 s from
   ``/proc/self/status``; event-loop lag as the worst overshoot of a 50 ms sleep.

Verdicts: the last message within ``group_wait`` + 5 s of t0; one group key, each account
once, nothing refused, nothing more in the next ``group_interval``; no more messages than
the greedy packing needs.

Baseline, in the same run: the Debian package ``prometheus-alertmanager`` (0.25;
``/usr/bin/prometheus-alertmanager``, skipped with a note when absent) with the same route
and timers and a ``telegram_configs`` receiver (``parse_mode: HTML``, its default message) to
a fresh recorder. The same N alerts (the SQLite run's, read back with
``alert_service.firing_alerts``, new ``starts_at``) are pushed to it as tgfleet's own
``alertmanager_configs`` integration pushes them (one ``POST /api/v2/alerts``); t0 = when
that POST was answered. Measured alike: time to the first and last message, messages, sizes,
labels shown; its CPU and RSS from ``/proc/<pid>``. Alertmanager has no detection step here
(in production a Prometheus scrape and rule evaluation come first), and it cuts an
oversized Telegram message to 4,096 characters rather than splitting it: the comparison is
of timing and message count, not of what the operator can read.

Knobs: ``TGFLEET_BENCH_ALERT_ACCOUNTS`` (10000), ``TGFLEET_BENCH_ALERT_GROUP_WAIT`` (30 s),
``TGFLEET_BENCH_ALERT_PG`` (``postgresql+asyncpg://postgres@127.0.0.1:5432/test``),
``TGFLEET_BENCH_ALERT_DUMP`` (a directory: every message each system sent, as JSON).
Run alone: ``.venv/bin/python bench/run.py alerting``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from _common import bench_settings, cpu_seconds, own_cpu, rss_mib
from tests.harness import free_port, scratch_database, stop_process, telegram_alerting

from tgfleet import migrations
from tgfleet.account import runtime as account_runtime
from tgfleet.account import service as account_service
from tgfleet.account.runtime import StateChange
from tgfleet.alert import service as alert_service
from tgfleet.alert.config import parse_config
from tgfleet.alert.evaluator import Evaluator
from tgfleet.alert.receivers import build_receivers
from tgfleet.alert.schemas import Alert, Notification
from tgfleet.app import create_app
from tgfleet.config import Settings
from tgfleet.kit.clock import utcnow
from tgfleet.kit.data_dir import ensure_data_dir
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.models import AccountState, DesiredState

ACCOUNTS = int(os.environ.get("TGFLEET_BENCH_ALERT_ACCOUNTS", "10000"))
GROUP_WAIT = float(os.environ.get("TGFLEET_BENCH_ALERT_GROUP_WAIT", "30"))
PG_SERVER = os.environ.get(
    "TGFLEET_BENCH_ALERT_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# A directory: each system's accepted messages (arrival, raw text) as JSON, to look at.
DUMP = os.environ.get("TGFLEET_BENCH_ALERT_DUMP")
GROUP_INTERVAL = 10.0
EVALUATION_INTERVAL = 2.0
TARGET_SLACK = 5.0
TELEGRAM_LIMIT = 4096
SEED_BATCH = 1000
BAN_TRANSACTIONS = 1
WARM_EVALUATIONS = 2
QUIET_MARGIN = 3.0
DELIVERY_TIMEOUT = GROUP_WAIT + 60.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
LAG_TICK = 0.05
SAMPLE_EVERY = 0.25
POLL_EVERY = 0.25
TOKEN = "5123456789:AAbench-alerting-token"  # noqa: S105 - the recorder's, nowhere else
CHAT = -1001234567890
LABEL = re.compile(r"\bacct\d{5}\b")
PART = re.compile(r"^\((\d+)/(\d+)\)\n")
ALERTMANAGER = ("prometheus-alertmanager", "alertmanager")
SCRIPT = Path(__file__).resolve()


def label_of(number: int) -> str:
    return f"acct{number:05d}"


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def loadavg() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- the recorder


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def visible_length(text: str, parse_mode: str) -> int:
    """Telegram's measure: the text after entity parsing, stripped, in UTF-16 code units."""
    if parse_mode == "HTML":
        text = html.unescape(re.sub(r"<[^>]*>", "", text))
    return utf16_length(text.strip())


def serve_recorder() -> None:
    """The Bot API recorder (a subprocess): prints ``recorder ready on <port>``."""
    accepted: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body are two writes: with Nagle on, each answer on a keep-alive
        # connection would wait ~40 ms for the client's delayed ACK.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            del format, args

        def _answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/messages":
                with lock:
                    self._answer(200, {"accepted": accepted, "refused": refused})
            elif self.path == "/count":
                with lock:
                    self._answer(200, {"accepted": len(accepted), "refused": len(refused)})
            else:
                self._bot()

        def do_POST(self) -> None:
            self._bot()

        def _bot(self) -> None:
            at = time.monotonic()
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path)
            params: dict[str, Any] = dict(parse_qsl(path.query))
            kind = self.headers.get("Content-Type", "")
            if "json" in kind and raw:
                params.update(json.loads(raw))
            elif "form" in kind:
                params.update(parse_qsl(raw.decode()))
            found = re.fullmatch(r"/bot([^/]+)/(\w+)", path.path)
            if found is None or found.group(1) != TOKEN:
                self._answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                return
            if found.group(2) == "getMe":
                me = {"id": 5123456789, "is_bot": True, "first_name": "bench", "username": "b"}
                self._answer(200, {"ok": True, "result": me})
                return
            if found.group(2) != "sendMessage" or str(params.get("chat_id")) != str(CHAT):
                self._answer(400, {"ok": False, "error_code": 400, "description": "Bad Request"})
                return
            body = str(params.get("text") or "")
            mode = str(params.get("parse_mode") or "")
            record = {"at": at, "text": body, "parse_mode": mode, "raw_bytes": len(raw)}
            if visible_length(body, mode) > TELEGRAM_LIMIT:
                with lock:
                    refused.append(record)
                description = "Bad Request: message is too long"
                self._answer(400, {"ok": False, "error_code": 400, "description": description})
                return
            with lock:
                accepted.append(record)
                number = len(accepted)
            chat = {"id": CHAT, "type": "supergroup", "title": "Alerts"}
            message = {"message_id": number, "date": int(time.time()), "chat": chat}
            self._answer(200, {"ok": True, "result": message})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"recorder ready on {server.server_address[1]}", flush=True)
    server.serve_forever()


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    at: float
    text: str
    visible: str
    size: int  # visible UTF-16 units, Telegram's measure


class Recorder:
    """The recorder subprocess, from the bench's side."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self._http = httpx.AsyncClient(base_url=self.url, timeout=10)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls) -> AsyncIterator[Recorder]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SCRIPT),
            "recorder",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            async with asyncio.timeout(START_TIMEOUT):
                line = (await process.stdout.readline()).decode()
            found = re.fullmatch(r"recorder ready on (\d+)\n", line)
            if found is None:
                raise RuntimeError(f"the recorder did not start: {line!r}")
            recorder = cls(process, int(found.group(1)))
            try:
                yield recorder
            finally:
                await recorder._http.aclose()
        finally:
            await stop_process(process, STOP_TIMEOUT)

    async def count(self) -> tuple[int, int]:
        answer = (await self._http.get("/count")).json()
        return int(answer["accepted"]), int(answer["refused"])

    async def messages(self, dump_as: str = "") -> tuple[list[Message], int]:
        answer = (await self._http.get("/messages")).json()
        if DUMP and dump_as:
            target = Path(DUMP) / (re.sub(r"\W+", "-", dump_as) + ".json")
            await asyncio.to_thread(target.write_text, json.dumps(answer, indent=1))
        found = []
        for record in answer["accepted"]:
            body, mode = record["text"], record["parse_mode"]
            visible = html.unescape(re.sub(r"<[^>]*>", "", body)) if mode == "HTML" else body
            found.append(Message(record["at"], body, visible, visible_length(body, mode)))
        return found, len(answer["refused"])

    async def wait_for_notification(self, timeout: float) -> list[Message]:  # noqa: ASYNC109
        """The first message, then every part its ``(1/n)`` announces."""
        async with asyncio.timeout(timeout):
            while (await self.count())[0] == 0:  # noqa: ASYNC110 - another process's state
                await asyncio.sleep(POLL_EVERY)
            # Only counts while the parts arrive: the texts are fetched (and parsed, on the
            # loop the app runs on) once, at the end.
            first, _ = await self.messages()
            part = PART.match(first[0].text)
            wanted = int(part.group(2)) if part else 1
            while (await self.count())[0] < wanted:  # noqa: ASYNC110 - another process's state
                await asyncio.sleep(POLL_EVERY)
            messages, _ = await self.messages()
            return messages[:wanted]


# ----------------------------------------------------------------------------- measuring


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    started: float  # time.monotonic()
    seconds: float
    firing: int

    @property
    def ended(self) -> float:
        return self.started + self.seconds


def time_evaluations(evaluator: Evaluator, into: list[Evaluation], done: asyncio.Event) -> None:
    """Record each ``evaluate()`` of ``evaluator``: when, how long, how many alerts fire;
    ``done`` is set once ``WARM_EVALUATIONS`` are recorded."""
    original = evaluator.evaluate

    async def timed(now: datetime | None = None) -> list[Alert]:
        started = time.monotonic()
        firing = await original(now)
        into.append(Evaluation(started, time.monotonic() - started, len(firing)))
        if len(into) >= WARM_EVALUATIONS:
            done.set()
        return firing

    # The evaluator's loop calls self.evaluate: an instance attribute wraps it in place.
    evaluator.evaluate = timed  # type: ignore[method-assign]


class Probe:
    """This process's RSS (peak of samples) and the event loop's worst lag, while running."""

    def __init__(self) -> None:
        self.peak_rss = 0.0
        self.worst_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        sampled = 0.0
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_TICK)
            now = time.monotonic()
            self.worst_lag = max(self.worst_lag, now - before - LAG_TICK)
            if now - sampled >= SAMPLE_EVERY:
                self.peak_rss = max(self.peak_rss, rss_mib(os.getpid()))
                sampled = now

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[Probe]:
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclasses.dataclass
class Delivery:
    """What one system sent for the ban, measured from its t0."""

    system: str
    t0: float
    messages: list[Message]
    refused: int
    later: int  # messages in the quiet window after the notification
    cpu_busy: float  # CPU seconds from t0 to the last message
    cpu_quiet: float  # % of a core over the quiet window
    quiet_seconds: float
    rss_before: float
    rss_peak: float
    note: str = ""

    @property
    def first(self) -> float:
        return self.messages[0].at - self.t0

    @property
    def last(self) -> float:
        return self.messages[-1].at - self.t0

    @property
    def labels(self) -> Counter[str]:
        return Counter(found for m in self.messages for found in LABEL.findall(m.visible))

    @property
    def each_label_once(self) -> bool:
        seen = self.labels
        return set(seen) == {label_of(i) for i in range(ACCOUNTS)} and set(seen.values()) == {1}

    @property
    def max_size(self) -> int:
        return max(m.size for m in self.messages)

    def packed(self) -> int:
        """How many messages the same lines need when packed greedily up to 4,096 units,
        each message with its ``(k/n)`` marker: the count a split by the limit alone gives."""
        lines = [
            line for m in self.messages for line in PART.sub("", m.visible, count=1).split("\n")
        ]
        count = len(self.messages)
        for _ in range(3):  # the marker's length depends on the count
            marker = utf16_length(f"({count}/{count})\n") if count > 1 else 0
            packed, used = 1, marker + utf16_length(lines[0])
            for line in lines[1:]:
                size = utf16_length(line)
                if used + 1 + size <= TELEGRAM_LIMIT:
                    used += 1 + size
                else:
                    packed, used = packed + 1, marker + size
            if packed == count:
                break
            count = packed
        return count


@dataclasses.dataclass
class TgfleetRun:
    backend: str
    seed_seconds: float
    ban_seconds: float
    evaluations: list[Evaluation]
    delivery: Delivery
    group_keys: list[str]
    log_rows: int
    alerts: list[Alert]

    def picked_up(self) -> Evaluation | None:
        t0 = self.delivery.t0
        return next((e for e in self.evaluations if e.ended >= t0 and e.firing >= ACCOUNTS), None)

    def before_ban(self) -> list[Evaluation]:
        return [e for e in self.evaluations if e.ended < self.delivery.t0 - self.ban_seconds]

    def steady(self) -> list[Evaluation]:
        picked = self.picked_up()
        if picked is None:
            return []
        return [e for e in self.evaluations if e.started > picked.ended]


# ----------------------------------------------------------------------------- tgfleet


def alerting_yaml(bot_url: str, *extra: str) -> str:
    """The route both systems get (Alertmanager's receiver with ``parse_mode: HTML``)."""
    return telegram_alerting(
        bot_url,
        TOKEN,
        CHAT,
        group_wait=f"{GROUP_WAIT:g}s",
        group_interval=f"{GROUP_INTERVAL:g}s",
        extra=extra,
    )


def alerting_settings(data_dir: Path, database_url: str | None, config: Path) -> Settings:
    return bench_settings(
        data_dir,
        database_url,
        alerting_enabled=True,
        alerting_config=config,
        alerting_evaluation_interval_seconds=EVALUATION_INTERVAL,
        alerting_online_ratio_threshold=0.0,
    )


async def seed(url: str) -> list[uuid.UUID]:
    """N accounts desired running, recorded online, through the services."""
    engine = create_engine(url)
    ids: list[uuid.UUID] = []
    try:
        maker = create_sessionmaker(engine)
        for start in range(0, ACCOUNTS, SEED_BATCH):
            wanted = [
                account_service.NewAccount(label=label_of(i), tg_user_id=None, dc_id=2)
                for i in range(start, min(ACCOUNTS, start + SEED_BATCH))
            ]
            async with unit_of_work(maker) as session:
                created = await account_service.create_accounts(session, wanted, exact_label=True)
                for account in created:
                    account.desired_state = DesiredState.RUNNING
            batch = [a.id for a in created]
            async with unit_of_work(maker) as session:
                at = utcnow()
                await account_runtime.apply(
                    session,
                    [
                        StateChange(a, AccountState.ONLINE, AccountState.STARTING, at, None)
                        for a in batch
                    ],
                )
            ids.extend(batch)
    finally:
        await engine.dispose()
    return ids


async def run_tgfleet(backend: str, database_url: str | None, workdir: Path) -> TgfleetRun:
    data_dir = workdir / "data"
    async with Recorder.running() as recorder:
        config = workdir / "alerting.yml"
        config.write_text(alerting_yaml(recorder.url))
        settings = alerting_settings(data_dir, database_url, config)
        url = settings.effective_database_url
        ensure_data_dir(settings)
        await asyncio.to_thread(migrations.upgrade, url)
        started = time.perf_counter()
        ids = await seed(url)
        seed_seconds = time.perf_counter() - started
        evaluations: list[Evaluation] = []
        app = create_app(settings)
        async with app.router.lifespan_context(app), Probe().watching() as probe:
            runtime = app.state.alerting
            warm = asyncio.Event()
            time_evaluations(runtime.evaluator, evaluations, warm)
            async with asyncio.timeout(START_TIMEOUT):
                await warm.wait()
            rss_before = rss_mib(os.getpid())
            maker = app.state.sessionmaker
            ban_started = time.monotonic()
            size = math.ceil(len(ids) / BAN_TRANSACTIONS)
            for start in range(0, len(ids), size):
                async with unit_of_work(maker) as session:
                    at = utcnow()
                    await account_runtime.apply(
                        session,
                        [
                            StateChange(
                                a, AccountState.QUARANTINED, AccountState.ONLINE, at, None, "banned"
                            )
                            for a in ids[start : start + size]
                        ],
                    )
            t0 = time.monotonic()
            cpu_t0 = own_cpu()
            ban_seconds = t0 - ban_started
            messages = await recorder.wait_for_notification(DELIVERY_TIMEOUT)
            cpu_busy = own_cpu() - cpu_t0
            quiet_from, cpu_from = time.monotonic(), own_cpu()
            quiet_until = messages[-1].at + GROUP_INTERVAL + QUIET_MARGIN
            await asyncio.sleep(max(0.0, quiet_until - quiet_from))
            quiet_seconds = time.monotonic() - quiet_from
            cpu_quiet = (own_cpu() - cpu_from) / quiet_seconds * 100
            everything, refused = await recorder.messages(f"tgfleet {backend}")
            async with unit_of_work(maker, read_only=True) as session:
                rows = await alert_service.notification_history(session, limit=100)
                alerts = await alert_service.firing_alerts(session, utcnow())
            rss_peak = probe.peak_rss
            worst_lag = probe.worst_lag
    delivery = Delivery(
        system=f"tgfleet, {backend}",
        t0=t0,
        messages=messages,
        refused=refused,
        later=len(everything) - len(messages),
        cpu_busy=cpu_busy,
        cpu_quiet=cpu_quiet,
        quiet_seconds=quiet_seconds,
        rss_before=rss_before,
        rss_peak=rss_peak,
        note=f"event-loop lag up to {worst_lag * 1000:.0f} ms",
    )
    return TgfleetRun(
        backend=backend,
        seed_seconds=seed_seconds,
        ban_seconds=ban_seconds,
        evaluations=evaluations,
        delivery=delivery,
        group_keys=sorted({r.group_key for r in rows}),
        log_rows=len(rows),
        alerts=alerts,
    )


# ----------------------------------------------------------------------------- Alertmanager


def alertmanager_binary() -> str | None:
    for name in ALERTMANAGER:
        found = shutil.which(name)
        if found is not None:
            return found
    return None


async def run_alertmanager(binary: str, alerts: Sequence[Alert], workdir: Path) -> Delivery:
    version = await asyncio.create_subprocess_exec(
        binary, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await version.communicate()
    found = re.search(r"version (\S+)", output.decode())
    name = f"Alertmanager {found.group(1) if found else '?'}"
    async with Recorder.running() as recorder:
        config = workdir / "alertmanager.yml"
        config.write_text(alerting_yaml(recorder.url, "parse_mode: HTML"))
        port = free_port()
        with (workdir / "alertmanager.log").open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                binary,
                f"--config.file={config}",
                f"--storage.path={workdir / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient() as http:
                async with asyncio.timeout(START_TIMEOUT):
                    while True:
                        if process.returncode is not None:
                            tail = (workdir / "alertmanager.log").read_text()[-2000:]
                            raise RuntimeError(f"alertmanager exited: {tail}")
                        with contextlib.suppress(httpx.HTTPError):
                            if (await http.get(f"{url}/-/ready", timeout=1)).status_code == 200:
                                break
                        await asyncio.sleep(0.1)
                push = parse_config(
                    "route: {receiver: upstream}\nreceivers:\n  - name: upstream\n"
                    f"    alertmanager_configs:\n      - url: {url}\n        firing_ttl: 1h\n"
                )
                receiver = build_receivers(push, http)["upstream"]
                now = utcnow()
                fresh = tuple(
                    Alert(a.labels, a.annotations, now, None, a.generator_url) for a in alerts
                )
                notification = Notification(
                    receiver="upstream",
                    group_key="bench:{}",
                    group_labels={},
                    status="firing",
                    alerts=fresh,
                    common_labels={},
                    common_annotations={},
                    at=now,
                )
                rss_before = rss_mib(process.pid)
                cpu_start = cpu_seconds(process.pid)
                results = await receiver.notify(notification)
                t0 = time.monotonic()
                if not all(r.ok for r in results):
                    raise RuntimeError(f"the push to Alertmanager failed: {results}")
                peak = rss_mib(process.pid)
                async with asyncio.timeout(DELIVERY_TIMEOUT):
                    while (await recorder.count()) == (0, 0):
                        peak = max(peak, rss_mib(process.pid))
                        await asyncio.sleep(POLL_EVERY)
                messages, refused = await recorder.messages()
                cpu_busy = cpu_seconds(process.pid) - cpu_start
                quiet_from, cpu_from = time.monotonic(), cpu_seconds(process.pid)
                while time.monotonic() < quiet_from + GROUP_INTERVAL + QUIET_MARGIN:
                    peak = max(peak, rss_mib(process.pid))
                    await asyncio.sleep(POLL_EVERY)
                quiet_seconds = time.monotonic() - quiet_from
                cpu_quiet = (cpu_seconds(process.pid) - cpu_from) / quiet_seconds * 100
                everything, refused_all = await recorder.messages(name)
        finally:
            await stop_process(process, STOP_TIMEOUT)
    return Delivery(
        system=name,
        t0=t0,
        messages=messages,
        refused=refused_all,
        later=len(everything) - len(messages) + refused_all - refused,
        cpu_busy=cpu_busy,
        cpu_quiet=cpu_quiet,
        quiet_seconds=quiet_seconds,
        rss_before=rss_before,
        rss_peak=peak,
    )


# ----------------------------------------------------------------------------- the report


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def delivery_row(d: Delivery, baseline: Delivery | None) -> str:
    if not d.messages:
        return f"| {d.system} | nothing delivered | | | | | | | |"
    sizes = [m.size for m in d.messages]
    shown = d.labels
    repeated = sum(1 for n in shown.values() if n > 1)
    labels = (
        f"all {ACCOUNTS:,}, each once"
        if d.each_label_once
        else f"{len(shown):,} of {ACCOUNTS:,}"
        + (f" ({repeated:,} twice or more)" if repeated else "")
    )
    ratio = f"{d.first / baseline.first:.2f}x" if baseline and baseline.messages else "-"
    return (
        f"| {d.system} | {seconds(d.first)} | {seconds(d.last)} | {len(d.messages)}"
        f" (+{d.refused} refused) | {statistics.mean(sizes):,.0f} / {max(sizes):,} |"
        f" {labels} | {d.later} | {d.cpu_busy:.2f} s; {d.cpu_quiet:.1f}% |"
        f" {d.rss_before:.0f} -> {d.rss_peak:.0f} MiB | {ratio} |"
    )


def report(
    runs: list[TgfleetRun], baseline: Delivery | None, notes: list[str], loads: tuple[str, str]
) -> str:
    default_wait = " (Alertmanager's default)" if GROUP_WAIT == 30 else ""
    lines = [
        f"### Alerting: a mass ban of {ACCOUNTS:,} accounts (issue 8)",
        "",
        (
            f"{ACCOUNTS:,} accounts desired running and online, then all recorded `quarantined`"
            f" (reason `banned`) by `account.runtime.apply` in {BAN_TRANSACTIONS} transaction(s);"
            " t0 = the commit. The app (`create_app`, in this process) evaluates every"
            f" {EVALUATION_INTERVAL:g} s; route `group_by: [alertname]`, `group_wait:"
            f" {GROUP_WAIT:g}s`{default_wait}, `group_interval: {GROUP_INTERVAL:g}s`;"
            " a Telegram receiver with the default message, to a local Bot API recorder"
            " (subprocess; 4,096 limit enforced, no 429s). Baseline: Debian's Alertmanager with"
            " the same route and timers and its `telegram_configs` receiver to a fresh recorder,"
            " the same alerts pushed in one `POST /api/v2/alerts` (t0 = answered). Method in"
            f" bench/alerting.py. Load average (1/5/15 min) at the start {loads[0]}, at the end"
            f" {loads[1]}."
        ),
        "",
        (
            "| system | t0 -> first message | t0 -> last message | messages | mean / max size"
            " (UTF-16) | accounts shown | sent in the next group_interval | CPU t0 -> last;"
            " quiet | RSS before -> peak | first message vs Alertmanager |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(delivery_row(r.delivery, baseline) for r in runs)
    if baseline is not None:
        lines.append(delivery_row(baseline, None).replace("| - |", "| 1.00x (baseline) |"))
    lines.append("")
    for run in runs:
        d = run.delivery
        picked = run.picked_up()
        warm = run.before_ban()
        steady = run.steady()
        parts = [
            (
                f"- **{d.system}**: seeding {ACCOUNTS:,} accounts {run.seed_seconds:.1f} s; the"
                f" ban (write of {ACCOUNTS:,} changes, commit included) {run.ban_seconds:.2f} s"
            )
        ]
        if warm:
            median = statistics.median(e.seconds for e in warm)
            parts.append(f"evaluations with everyone online {median * 1000:.0f} ms (median)")
        if picked is not None:
            flush = d.messages[0].at - (picked.ended + GROUP_WAIT) if d.messages else math.nan
            parts.append(
                f"the evaluation that picked up the {ACCOUNTS:,} alerts started"
                f" {picked.started - d.t0:+.2f} s from t0 and took {picked.seconds:.2f} s"
                f" (ended t0 + {picked.ended - d.t0:.2f} s); group_wait then ran to"
                f" t0 + {picked.ended - d.t0 + GROUP_WAIT:.2f} s; flush to first message"
                f" {flush:.2f} s; first to last message"
                f" {d.messages[-1].at - d.messages[0].at:.2f} s"
            )
        else:
            parts.append(f"no evaluation returned {ACCOUNTS:,} firing alerts")
        if steady:
            parts.append(
                f"evaluations with {ACCOUNTS:,} firing: median"
                f" {statistics.median(e.seconds for e in steady) * 1000:.0f} ms, max"
                f" {max(e.seconds for e in steady) * 1000:.0f} ms ({len(steady)} runs);"
                f" CPU over the quiet {d.quiet_seconds:.0f} s {d.cpu_quiet:.1f}% of a core"
            )
        if d.messages:
            sample = next(
                (line for line in d.messages[-1].visible.split("\n") if LABEL.search(line)), ""
            )
            parts.append(f"one line per account, e.g. `{sample}` ({utf16_length(sample)} units)")
        parts.append(
            f"notification log: {run.log_rows} row(s), group key(s)"
            f" {', '.join(f'`{k}`' for k in run.group_keys) or 'none'}; {d.note}"
        )
        lines.append("; ".join(parts) + ".")
    if baseline is not None and baseline.messages:
        first = baseline.messages[0]
        shown = len(baseline.labels)
        lines.append(
            f"- **{baseline.system}**: {len(baseline.messages)} message(s) of"
            f" {first.size:,} visible characters naming {shown:,} of the {ACCOUNTS:,}"
            f" accounts (its default template shows each alert's labels and annotations, so an"
            f" account is named twice); {baseline.refused} refused as too long; CPU t0 -> first"
            f" message {baseline.cpu_busy:.2f} s."
        )
        quiet = [r for r in runs if r.delivery.messages]
        if quiet and baseline.cpu_quiet > 0:
            ratios = ", ".join(
                f"{r.backend} {r.delivery.cpu_quiet:.1f}% vs {baseline.cpu_quiet:.1f}% of a core"
                f" ({r.delivery.cpu_quiet / baseline.cpu_quiet:.0f}x)"
                for r in quiet
            )
            lines.append(
                f"- CPU while {ACCOUNTS:,} alerts stay firing (the quiet window), tgfleet vs"
                f" Alertmanager: {ratios} (tgfleet re-reads the fleet every"
                f" {EVALUATION_INTERVAL:g} s; Alertmanager holds pushed alerts until they"
                " expire)."
            )
    lines.extend(f"- {note}" for note in notes)
    lines.extend(
        [
            (
                "- Not measured: the recorder never answers 429. Telegram allows a bot about 20"
                " messages a minute in one group, and a delivery has 120 s"
                " (`DeliveryPolicy.deadline`) for all its messages; a notification of more parts"
                " than that allows is cut short, not logged, and resumes at its first"
                " undelivered part at the next flush (tests/alert/test_receivers.py proves the"
                " resumption; the pacing against real Telegram is not measured)."
            ),
            "",
            "| target | measured | verdict |",
            "|---|---|---|",
        ]
    )
    for run in runs:
        d = run.delivery
        if not d.messages:
            lines.append(f"| {d.system}: delivered | nothing | **FAIL** |")
            continue
        in_time = d.last <= GROUP_WAIT + TARGET_SLACK
        lines.append(
            f"| {d.system}: last message within group_wait + {TARGET_SLACK:g} s"
            f" ({GROUP_WAIT + TARGET_SLACK:g} s) of t0 | {seconds(d.last)} | {verdict(in_time)} |"
        )
        grouped = (
            len(run.group_keys) == 1
            and d.each_label_once
            and d.max_size <= TELEGRAM_LIMIT
            and d.later == 0
            and d.refused == 0
        )
        lines.append(
            f"| {d.system}: one group key, every account once, none repeated, none refused |"
            f" {len(run.group_keys)} group key(s) in the log; each of the {ACCOUNTS:,} accounts"
            f" once: {d.each_label_once}; largest message {d.max_size:,} units; {d.refused}"
            f" refused; {d.later} more in the next group_interval | {verdict(grouped)} |"
        )
        packed = d.packed()
        lower = math.ceil(sum(m.size for m in d.messages) / TELEGRAM_LIMIT)
        lines.append(
            f"| {d.system}: messages = what the 4,096 limit needs (the same lines packed"
            f" greedily, with their `(k/n)` markers) | {len(d.messages)} sent, {packed} needed"
            f" ({(len(d.messages) / packed - 1) * 100:+.1f}%; total size / 4,096: {lower}) |"
            f" {verdict(len(d.messages) <= packed)} |"
        )
    return "\n".join(lines)


async def bench() -> str:
    loads = [loadavg()]
    notes: list[str] = []
    runs: list[TgfleetRun] = []
    baseline: Delivery | None = None
    with tempfile.TemporaryDirectory(prefix="tgfleet-bench-alerting-") as tmp:
        root = Path(tmp)
        (root / "sqlite").mkdir()
        runs.append(await run_tgfleet("SQLite", None, root / "sqlite"))
        if PG_SERVER:
            (root / "pg").mkdir()
            try:
                async with scratch_database(PG_SERVER, f"bench_alerting_{os.getpid()}") as url:
                    runs.append(await run_tgfleet("PostgreSQL", url, root / "pg"))
            except OSError as exc:
                notes.append(f"PostgreSQL skipped: {PG_SERVER} unreachable ({exc})")
        binary = alertmanager_binary()
        if binary is None:
            notes.append(
                "Alertmanager baseline skipped: no prometheus-alertmanager / alertmanager"
                " binary (Debian package prometheus-alertmanager)"
            )
        else:
            (root / "am").mkdir()
            baseline = await run_alertmanager(binary, runs[0].alerts, root / "am")
    loads.append(loadavg())
    return report(runs, baseline, notes, (loads[0], loads[1]))


def main() -> str:
    return asyncio.run(bench())


if __name__ == "__main__":
    if sys.argv[1:] == ["recorder"]:
        serve_recorder()
    else:
        print(main())
