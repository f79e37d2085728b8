"""Health of one tgfleet process and of the fleet it sees (docs/health.md is the contract).

:class:`HealthService` is built once per process and answers three questions:

* :meth:`~HealthService.live` (``/livez``): is this process's event loop answering? Nothing
  else: a liveness probe that looks at the database restarts every pod when the database
  goes away, which cures nothing.
* :meth:`~HealthService.ready` (``/readyz``): should this process get traffic (or, for a
  worker, hold accounts)? The database answers, its schema is the one this code expects,
  the keyring has a usable key, and for a worker its lease is fresh.
* :meth:`~HealthService.health` (``/health``): every component, in
  ``application/health+json`` (draft-inadarei-api-health-check-06), for humans and
  monitoring. Checks run in parallel, each within ``TGFLEET_HEALTH_CHECK_TIMEOUT_SECONDS``;
  the document is reused for ``TGFLEET_HEALTH_CACHE_SECONDS`` and concurrent callers share
  one computation.

A check that overruns its time limit is reported as failed at once and left to finish in
the background (cancelled, and awaited by :meth:`~HealthService.close`): a database call
blocked in a driver thread cannot hold a response past its limit.

Outputs are written in our own words with exception *type names* only: an exception's
message may carry a DSN, a host or a path, and these routes are open.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from tgfleet import __version__, metrics, migrations
from tgfleet.account import service as account_service
from tgfleet.config import Settings
from tgfleet.health.delivery import DeliveryRecord
from tgfleet.health.network import NetworkMonitor
from tgfleet.health.schemas import CheckResult, Status, http_status, worst
from tgfleet.kit.clock import isoformat, utcnow
from tgfleet.kit.db import READ_ONLY_OPTION, unit_of_work
from tgfleet.lease import service as lease_service
from tgfleet.logging import get_logger
from tgfleet.vault.service import Vault

log = get_logger(__name__)

Role = Literal["api", "worker", "all"]

DATASTORE: Final = "datastore"
COMPONENT: Final = "component"
SYSTEM: Final = "system"

#: Telegram probe results older than this many probe intervals warn (the monitor stalled).
STALE_INTERVALS: Final = 3
#: A worker that stopped renewing its lease without draining (killed, frozen, cut off)
#: makes ``workers:alive`` warn for this long after its lease expired; its row stays in the
#: worker table for a day, which would keep the warning long after anyone can act on it.
DEAD_WORKER_WINDOW_SECONDS: Final = 3600.0
#: Seconds :meth:`HealthService.close` waits for checks that overran their limit.
CLOSE_TIMEOUT: Final = 10.0
#: Worker ids named in a ``workers:alive`` output, at most.
NAMED_WORKERS: Final = 5

_DESCRIPTIONS: Final[dict[str, str]] = {
    "api": "tgfleet API and console",
    "worker": "tgfleet worker (account runtime)",
    "all": "tgfleet run: API, console and account runtime in one process",
}


@dataclass(frozen=True, slots=True)
class _Check:
    #: ``component:measurement``: the key in ``checks`` and the metrics' ``check`` label.
    name: str
    component_type: str
    run: Callable[[], Coroutine[Any, Any, list[CheckResult]]]
    #: What an exception means, in words; the exception's type name is appended.
    failure: str


@dataclass(frozen=True, slots=True)
class _Answer:
    document: dict[str, Any]
    status_code: int
    at: float  # time.monotonic() when computed


class HealthService:
    """Liveness, readiness and the health document of one process.

    ``role`` is ``"api"`` (``tgfleet api``), ``"worker"`` (``tgfleet worker``) or ``"all"``
    (``tgfleet run``). A worker passes ``lease_ready`` (its lease loop's ``fresh``:
    readiness fails while it is fenced). On SQLite, ``supervisor_running`` tells whether
    the account runtime runs in this process (``tgfleet run``); on PostgreSQL the worker
    table says which workers are alive. ``network`` is the process's
    :class:`~tgfleet.health.network.NetworkMonitor` (its owner starts and stops it; None or
    no DCs: the Telegram check says the monitor is off). ``delivery`` is where the alert
    engine records its notifications (one is made when not given).
    """

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: Vault,
        *,
        role: Role = "api",
        lease_ready: Callable[[], bool] | None = None,
        supervisor_running: Callable[[], bool] | None = None,
        network: NetworkMonitor | None = None,
        delivery: DeliveryRecord | None = None,
    ) -> None:
        self.settings = settings
        self.role: Role = role
        self.network = network
        self.delivery = delivery if delivery is not None else DeliveryRecord()
        self._engine = engine
        self._sessionmaker = sessionmaker
        self._vault = vault
        self._lease_ready = lease_ready
        self._supervisor_running = supervisor_running
        self._timeout = settings.health_check_timeout_seconds
        self._answer: _Answer | None = None
        self._inflight: asyncio.Task[_Answer] | None = None
        self._stragglers: set[asyncio.Task[list[CheckResult]]] = set()
        self._last_status: dict[str, Status] = {}
        self._checks = (
            _Check(
                "database:responseTime",
                DATASTORE,
                self._database_response_time,
                "the database did not answer",
            ),
            _Check(
                "database:migrations",
                DATASTORE,
                self._migrations,
                "the schema revision could not be read",
            ),
            _Check("vault:keyring", COMPONENT, self._keyring_reloaded, "the keyring check failed"),
            _Check("disk:free", SYSTEM, self._disk_free, "free space could not be read"),
            _Check("workers:alive", COMPONENT, self._workers_alive, "workers could not be read"),
            _Check(
                "fleet:onlineRatio", COMPONENT, self._online_ratio, "the fleet could not be read"
            ),
            _Check(
                "telegram:reachability",
                SYSTEM,
                self._telegram_reachability,
                "the network monitor could not be read",
            ),
            _Check(
                "alerting:lastDelivery",
                COMPONENT,
                self._last_delivery,
                "the delivery record could not be read",
            ),
        )

    # ------------------------------------------------------------------ the three answers

    def live(self) -> dict[str, str]:
        """Always pass: answering at all proves the process and its event loop run."""
        return {"status": Status.PASS.value}

    async def ready(self) -> tuple[dict[str, Any], int]:
        """Readiness document and HTTP status (200 or 503). Not cached: it is cheap, and a
        probe must see a recovery at once."""
        checks = [
            _Check(
                "database",
                DATASTORE,
                self._database_response_time,
                "the database did not answer",
            ),
            _Check("migrations", DATASTORE, self._migrations, "the revision could not be read"),
            _Check("keyring", COMPONENT, self._keyring_loaded, "the keyring check failed"),
        ]
        if self._lease_ready is not None:
            checks.append(_Check("leases", COMPONENT, self._lease_fresh, "lease check failed"))
        answers = await asyncio.gather(*(self._run(check) for check in checks))
        statuses: dict[str, Status] = {}
        output: dict[str, str] = {}
        for check, (results, _seconds) in zip(checks, answers, strict=True):
            # Readiness is yes or no: a slow but answering database (warn) is ready.
            failed = [r for r in results if r.status is Status.FAIL]
            statuses[check.name] = Status.FAIL if failed else Status.PASS
            if failed:
                output[check.name] = failed[0].output or "failed"
        overall = worst(statuses.values())
        if overall is Status.FAIL:
            log.warning("health.not_ready", checks=sorted(output))
        document: dict[str, Any] = {
            "status": overall.value,
            "checks": {name: status.value for name, status in statuses.items()},
        }
        if output:
            document["output"] = output
        return document, http_status(overall)

    async def health(self) -> tuple[dict[str, Any], int]:
        """The health document and its HTTP status (200 for pass and warn, 503 for fail).

        Reused while younger than ``TGFLEET_HEALTH_CACHE_SECONDS``; callers that arrive
        while it is being computed wait for that one computation (single flight), which a
        caller that goes away does not cancel."""
        answer = self._answer
        cache = self.settings.health_cache_seconds
        if answer is not None and cache > 0 and time.monotonic() - answer.at < cache:
            return answer.document, answer.status_code
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._compute(), name="health:document")
        answer = await asyncio.shield(self._inflight)
        return answer.document, answer.status_code

    async def close(self) -> None:
        """Cancel a computation in flight and the checks that overran their limit, and wait
        for them (at most :data:`CLOSE_TIMEOUT` seconds)."""
        tasks: set[asyncio.Task[Any]] = set(self._stragglers)
        if self._inflight is not None and not self._inflight.done():
            tasks.add(self._inflight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)

    # ------------------------------------------------------------------ machinery

    async def _compute(self) -> _Answer:
        answers = await asyncio.gather(*(self._run(check) for check in self._checks))
        checks: dict[str, list[dict[str, Any]]] = {}
        statuses: list[Status] = []
        for check, (results, seconds) in zip(self._checks, answers, strict=True):
            status = worst(r.status for r in results)
            statuses.append(status)
            metrics.HEALTH_CHECK_STATUS.labels(check.name).set(metrics.status_value(status))
            metrics.HEALTH_CHECK_DURATION.labels(check.name).observe(seconds)
            self._log_change(check.name, status, results)
            checks[check.name] = [r.to_json() for r in results]
        overall = worst(statuses)
        document = {
            "status": overall.value,
            "version": __version__,
            "serviceId": "tgfleet",
            "description": _DESCRIPTIONS[self.role],
            "checks": checks,
        }
        answer = _Answer(document, http_status(overall), time.monotonic())
        self._answer = answer
        return answer

    async def _run(self, check: _Check) -> tuple[list[CheckResult], float]:
        """Run one check within the time limit; never raises (but for cancellation)."""
        started = time.perf_counter()
        task = asyncio.create_task(check.run(), name=f"health:{check.name}")
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
        except asyncio.CancelledError:
            self._abandon(task)
            raise
        seconds = time.perf_counter() - started
        if not done:
            self._abandon(task)
            return [_failed(check, f"timed out after {self._timeout:g} s")], seconds
        if task.cancelled():
            return [_failed(check, "cancelled")], seconds
        error = task.exception()
        if error is not None:
            return [_failed(check, f"{check.failure} ({type(error).__name__})")], seconds
        return task.result(), seconds

    def _abandon(self, task: asyncio.Task[list[CheckResult]]) -> None:
        task.cancel()
        self._stragglers.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[list[CheckResult]]) -> None:
        self._stragglers.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an overrun check's error was already reported

    def _log_change(self, name: str, status: Status, results: list[CheckResult]) -> None:
        previous = self._last_status.get(name)
        self._last_status[name] = status
        if status is previous:
            return
        if status is Status.PASS:
            if previous is not None:
                log.info("health.check_recovered", check=name)
            return
        output = next((r.output for r in results if r.status is status and r.output), None)
        log.warning("health.check_degraded", check=name, status=status.value, output=output)

    # ------------------------------------------------------------------ database

    async def _database_response_time(self) -> list[CheckResult]:
        started = time.perf_counter()
        async with _reading(self._engine) as connection:
            await connection.execute(text("SELECT 1"))
        elapsed = time.perf_counter() - started
        slow = elapsed > self._timeout / 2
        return [
            _result(
                DATASTORE,
                Status.WARN if slow else Status.PASS,
                round(elapsed * 1000, 2),
                "ms",
                component_id=self._engine.dialect.name,
                output=f"slow: over half the check limit of {self._timeout:g} s" if slow else None,
            )
        ]

    async def _migrations(self) -> list[CheckResult]:
        async with _reading(self._engine) as connection:
            revision = await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
        expected = await asyncio.to_thread(migrations.head_revision)  # cached after once
        current = revision == expected
        return [
            _result(
                DATASTORE,
                Status.PASS if current else Status.FAIL,
                revision,
                None,
                output=None
                if current
                else f"the schema is at revision {revision or 'none (empty database)'} but this "
                f"version of tgfleet expects {expected}: run `tgfleet db upgrade` (or the "
                "tgfleet version that matches the schema)",
            )
        ]

    # ------------------------------------------------------------------ keys

    async def _keyring_loaded(self) -> list[CheckResult]:
        """The keyring in memory has an active, usable key (no I/O)."""
        keyring = self._vault.keyring
        usable = keyring.active.usable
        return [
            _result(
                COMPONENT,
                Status.PASS if usable else Status.FAIL,
                len(keyring.usable_ids()),
                "keys",
                component_id=keyring.source.value,
                output=None if usable else "the active key-encryption key is not usable",
            )
        ]

    async def _keyring_reloaded(self) -> list[CheckResult]:
        """As the readiness check, and the key file still loads if it changed (another
        process rotated): a warning, since this process keeps working with its keys."""
        try:
            await self._vault.current()
        except Exception as exc:  # noqa: BLE001 - any failure to reload is the finding
            keyring = self._vault.keyring
            return [
                _result(
                    COMPONENT,
                    Status.WARN,
                    len(keyring.usable_ids()),
                    "keys",
                    component_id=keyring.source.value,
                    output=f"the key file changed and could not be loaded "
                    f"({type(exc).__name__}); this process goes on with the keys it loaded",
                )
            ]
        return await self._keyring_loaded()

    # ------------------------------------------------------------------ host

    async def _disk_free(self) -> list[CheckResult]:
        usage = await asyncio.to_thread(shutil.disk_usage, self.settings.data_dir)
        warn_below = self.settings.health_disk_warn_bytes
        fail_below = self.settings.health_disk_fail_bytes
        if usage.free < fail_below:
            status = Status.FAIL
        elif usage.free < warn_below:
            status = Status.WARN
        else:
            status = Status.PASS
        output = (
            f"{_size(usage.free)} free in the data directory (warn below {_size(warn_below)}, "
            f"fail below {_size(fail_below)})"
        )
        return [
            _result(
                SYSTEM,
                status,
                usage.free,
                "bytes",
                component_id="data_dir",
                output=None if status is Status.PASS else output,
            )
        ]

    # ------------------------------------------------------------------ fleet

    async def _workers_alive(self) -> list[CheckResult]:
        if self._engine.dialect.name != "postgresql":
            return [self._runtime_in_process()]
        async with unit_of_work(self._sessionmaker, read_only=True) as session:
            workers = await lease_service.list_workers(session)
            summary = await account_service.fleet_summary(session)
        now = utcnow()
        alive = [w for w in workers if w.alive]
        dead = [
            w.id
            for w in workers
            if w.state == "running"
            and not w.alive
            and (now - w.expires_at).total_seconds() < DEAD_WORKER_WINDOW_SECONDS
        ]
        running = summary.desired.get("running", 0)
        if not alive:
            status = Status.FAIL if running else Status.WARN
            output = (
                f"no worker is alive and {running} accounts are desired running"
                if running
                else "no worker is alive (no account is desired running)"
            )
        elif dead:
            status = Status.WARN
            named = ", ".join(dead[:NAMED_WORKERS]) + (", ..." if len(dead) > NAMED_WORKERS else "")
            output = (
                f"{len(dead)} registered workers stopped renewing their lease without "
                f"draining in the last hour: {named}"
            )
        else:
            status, output = Status.PASS, None
        return [_result(COMPONENT, status, len(alive), "workers", output=output)]

    def _runtime_in_process(self) -> CheckResult:
        """SQLite: the one ``tgfleet run`` process is the only worker there is."""
        if self._supervisor_running is None:
            return _result(
                COMPONENT,
                Status.WARN,
                0,
                "workers",
                output="no account runtime in this process (on SQLite `tgfleet run` runs the "
                "accounts; this process serves the API only)",
            )
        if self._supervisor_running():
            return _result(COMPONENT, Status.PASS, 1, "workers")
        return _result(
            COMPONENT,
            Status.FAIL,
            0,
            "workers",
            output="the account runtime of this process is not running",
        )

    async def _online_ratio(self) -> list[CheckResult]:
        async with unit_of_work(self._sessionmaker, read_only=True) as session:
            summary = await account_service.fleet_summary(session)
        running = summary.desired.get("running", 0)
        if not running:
            return [
                _result(
                    COMPONENT,
                    Status.PASS,
                    1.0,
                    "ratio",
                    output="no account is desired running",
                )
            ]
        ratio = summary.running_online / running
        warn_below = self.settings.health_online_warn_ratio
        fail_below = self.settings.health_online_fail_ratio
        if ratio < fail_below:
            status = Status.FAIL
        elif ratio < warn_below:
            status = Status.WARN
        else:
            status = Status.PASS
        output = (
            f"{summary.running_online} of {running} accounts desired running are online "
            f"(warn below {warn_below:g}, fail below {fail_below:g})"
        )
        return [
            _result(
                COMPONENT,
                status,
                round(ratio, 4),
                "ratio",
                output=None if status is Status.PASS else output,
            )
        ]

    # ------------------------------------------------------------------ outside world

    async def _telegram_reachability(self) -> list[CheckResult]:
        """The network monitor's last probes, one entry per DC (no probe is made here)."""
        snapshot = self.network.snapshot() if self.network is not None else None
        if snapshot is None or not snapshot.enabled:
            return [
                _result(
                    SYSTEM,
                    Status.PASS,
                    None,
                    None,
                    output="network monitor off (TGFLEET_TELEGRAM_DCS is empty)",
                )
            ]
        now = utcnow()
        stale_after = STALE_INTERVALS * snapshot.interval
        probes = [snapshot.probes.get(dc) for dc in sorted(snapshot.dcs)]
        fresh = [p for p in probes if p is not None and _age(now, p.probed_at) <= stale_after]
        all_down = len(fresh) == len(probes) and not any(p.up for p in fresh)
        down_status = Status.FAIL if all_down else Status.WARN
        results: list[CheckResult] = []
        for dc in sorted(snapshot.dcs):
            host, port = snapshot.dcs[dc]
            probe = snapshot.probes.get(dc)
            if probe is None:
                results.append(
                    _result(
                        SYSTEM,
                        Status.WARN,
                        None,
                        "ms",
                        component_id=f"dc{dc}",
                        output="not probed yet",
                    )
                )
                continue
            latency = round(probe.latency * 1000, 2) if probe.latency is not None else None
            age = _age(now, probe.probed_at)
            if age > stale_after:
                status = Status.WARN
                output: str | None = (
                    f"the last probe is {age:.0f} s old (probes run every "
                    f"{snapshot.interval:g} s): the network monitor is not running"
                )
            elif probe.up:
                status, output = Status.PASS, None
            else:
                status = down_status
                output = f"TCP connect to {host}:{port} failed ({probe.error})"
            results.append(
                _result(
                    SYSTEM,
                    status,
                    latency,
                    "ms",
                    component_id=f"dc{dc}",
                    output=output,
                    at=probe.probed_at,
                )
            )
        return results

    async def _last_delivery(self) -> list[CheckResult]:
        attempt = self.delivery.last_attempt
        success = self.delivery.last_success
        last_success = isoformat(success) if success is not None else None
        if attempt is None:
            return [_result(COMPONENT, Status.PASS, None, None, output="no notification sent yet")]
        if attempt.ok:
            return [_result(COMPONENT, Status.PASS, last_success, None, at=attempt.at)]
        return [
            _result(
                COMPONENT,
                Status.WARN,
                last_success,
                None,
                output=f"the last notification failed at {isoformat(attempt.at)} "
                f"({attempt.error or 'unknown error'})",
                at=attempt.at,
            )
        ]

    async def _lease_fresh(self) -> list[CheckResult]:
        fresh = self._lease_ready is not None and self._lease_ready()
        return [
            _result(
                COMPONENT,
                Status.PASS if fresh else Status.FAIL,
                fresh,
                None,
                output=None
                if fresh
                else "the worker's lease is not fresh (not renewed for half its TTL, or fenced)",
            )
        ]


@asynccontextmanager
async def _reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose transaction only reads: on SQLite a deferred ``BEGIN`` (the
    engine's default is ``BEGIN IMMEDIATE``), so a probe neither takes the write lock nor
    waits behind a writer that holds it (WAL readers never block)."""
    async with engine.connect() as connection:
        await connection.execution_options(**{READ_ONLY_OPTION: True})
        yield connection


def _result(
    component_type: str,
    status: Status,
    value: Any,
    unit: str | None,
    *,
    component_id: str | None = None,
    output: str | None = None,
    at: datetime | None = None,
) -> CheckResult:
    return CheckResult(
        component_id=component_id,
        component_type=component_type,
        observed_value=value,
        observed_unit=unit,
        status=status,
        time=isoformat(at if at is not None else utcnow()),
        output=output,
    )


def _failed(check: _Check, output: str) -> CheckResult:
    return _result(check.component_type, Status.FAIL, None, None, output=output)


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
