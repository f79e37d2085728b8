"""Health of one tgfleet process and of the fleet it sees (docs/health.md is the contract).

:class:`HealthService` is built once per process and answers three questions:

* :meth:`~HealthService.live` (``/livez``): is this process's event loop answering? Nothing
  else: a liveness probe that looks at the database restarts every pod when the database
  goes away, which cures nothing.
* :meth:`~HealthService.ready` (``/readyz``): should this process get traffic (or, for a
  worker, hold accounts)? The database answers, its schema is one this code runs on (its
  head or ahead of it: `tgfleet.migrations.Fit`), the keyring has a usable key, and for a
  worker its lease is fresh.
* :meth:`~HealthService.health` (``/health``): every component, in
  ``application/health+json`` (draft-inadarei-api-health-check-06), for humans and
  monitoring. Checks run in parallel, each within ``TGFLEET_HEALTH_CHECK_TIMEOUT_SECONDS``;
  the document is reused for ``TGFLEET_HEALTH_CACHE_SECONDS`` and concurrent callers share
  one computation.

A check that overruns its time limit is reported as failed at once and left to finish in
the background (cancelled, and awaited by :meth:`~HealthService.close`): a database call
blocked in a driver thread cannot hold a response past its limit.

This module runs the checks and assembles the answers; the checks themselves, one module
per thing probed (database, keyring, disk, fleet, Telegram, alerting), are in
:mod:`tgfleet.health.checks`.

Outputs are written in our own words with exception *type names* only: an exception's
message may carry a DSN, a host or a path, and these routes are open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Literal

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tgfleet import __version__, metrics
from tgfleet.config import Settings
from tgfleet.health.checks import alerting, database, disk, fleet, keyring, telegram
from tgfleet.health.checks.result import COMPONENT, DATASTORE, SYSTEM, result
from tgfleet.health.delivery import DeliveryRecord
from tgfleet.health.network import NetworkMonitor
from tgfleet.health.schemas import CheckResult, Status, http_status, worst
from tgfleet.logging import get_logger
from tgfleet.vault.service import Vault

log = get_logger(__name__)

Role = Literal["api", "worker", "all"]

#: Seconds :meth:`HealthService.close` waits for checks that overran their limit.
CLOSE_TIMEOUT: Final = 10.0

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
    #: How long each check took, in seconds (not in the document: the draft has no field).
    seconds: dict[str, float] = field(default_factory=dict)


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
        self._vault = vault
        self._lease_ready = lease_ready
        self._timeout = settings.health_check_timeout_seconds
        self._answer: _Answer | None = None
        self._inflight: asyncio.Task[_Answer] | None = None
        self._stragglers: set[asyncio.Task[list[CheckResult]]] = set()
        self._last_status: dict[str, Status] = {}
        # The health document's checks, in its order; each module of tgfleet.health.checks
        # probes one thing.
        self._checks = (
            _Check(
                "database:responseTime",
                DATASTORE,
                partial(database.response_time, engine, self._timeout),
                "the database did not answer",
            ),
            _Check(
                "database:migrations",
                DATASTORE,
                partial(database.schema_revision, engine),
                "the schema revision could not be read",
            ),
            _Check(
                "vault:keyring",
                COMPONENT,
                partial(keyring.keyring_reloaded, vault),
                "the keyring check failed",
            ),
            _Check(
                "disk:free",
                SYSTEM,
                lambda: disk.disk_free(self.settings),
                "free space could not be read",
            ),
            _Check(
                "workers:alive",
                COMPONENT,
                partial(fleet.workers_alive, engine, sessionmaker, supervisor_running),
                "workers could not be read",
            ),
            _Check(
                "fleet:onlineRatio",
                COMPONENT,
                lambda: fleet.online_ratio(sessionmaker, self.settings),
                "the fleet could not be read",
            ),
            _Check(
                "telegram:reachability",
                SYSTEM,
                lambda: telegram.telegram_reachability(self.network),
                "the network monitor could not be read",
            ),
            _Check(
                "alerting:lastDelivery",
                COMPONENT,
                lambda: alerting.last_delivery(self.delivery),
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
                partial(database.response_time, self._engine, self._timeout),
                "the database did not answer",
            ),
            _Check(
                "migrations",
                DATASTORE,
                partial(database.schema_revision, self._engine),
                "the revision could not be read",
            ),
            _Check(
                "keyring",
                COMPONENT,
                partial(keyring.keyring_loaded, self._vault),
                "the keyring check failed",
            ),
        ]
        if self._lease_ready is not None:
            checks.append(
                _Check(
                    "leases",
                    COMPONENT,
                    partial(fleet.lease_fresh, self._lease_ready),
                    "lease check failed",
                )
            )
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
        answer = await self._latest()
        return answer.document, answer.status_code

    async def health_timed(self) -> tuple[dict[str, Any], dict[str, float]]:
        """The health document (as :meth:`health`, the same cache) and how long each of its
        checks took, in seconds: the console's health page shows both."""
        answer = await self._latest()
        return answer.document, dict(answer.seconds)

    async def _latest(self) -> _Answer:
        answer = self._answer
        cache = self.settings.health_cache_seconds
        if answer is not None and cache > 0 and time.monotonic() - answer.at < cache:
            return answer
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._compute(), name="health:document")
        return await asyncio.shield(self._inflight)

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
        timings: dict[str, float] = {}
        statuses: list[Status] = []
        for check, (results, seconds) in zip(self._checks, answers, strict=True):
            timings[check.name] = seconds
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
        answer = _Answer(document, http_status(overall), time.monotonic(), timings)
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


def _failed(check: _Check, output: str) -> CheckResult:
    return result(check.component_type, Status.FAIL, None, None, output=output)
