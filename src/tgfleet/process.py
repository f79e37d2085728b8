"""The composition root: every long-lived part of a tgfleet process, built once for its role
and assembled on one ``AsyncExitStack``.

The roles: ``api`` (`tgfleet api`, `tgfleet run --no-worker`), ``run`` (the API with the
account runtime in the same process), ``demo`` (``run`` with the demo sandbox and its fleet)
and ``worker`` (`tgfleet worker`: the account runtime alone, with its probe-and-metrics port).

Start order, the same for every role (a part a role does not run is skipped)::

    data dir check, engine, loop-lag monitor, health service, worker HTTP port,
    network monitor, alerting, audit checkpoints, housekeeping, console live
    feed, demo, account runtime (supervisor)

Shutdown is the exact reverse, declared nowhere else: the account runtime disconnects its
clients first (while the database, the demo's Telegram and the monitors are still up), the
engine is disposed last. A part that fails to start unwinds the ones already started.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tgfleet import __version__, metrics
from tgfleet.account.housekeeping import Housekeeping
from tgfleet.audit.checkpoint import audit_runtime
from tgfleet.auth.service import Security
from tgfleet.components import Components
from tgfleet.config import Settings
from tgfleet.health.network import NetworkMonitor
from tgfleet.health.service import HealthService
from tgfleet.kit.data_dir import ensure_data_dir
from tgfleet.kit.db import create_sessionmaker, engine_for
from tgfleet.logging import get_logger
from tgfleet.telemetry.service import FleetGauges, LoopLagMonitor
from tgfleet.vault.service import Vault

if TYPE_CHECKING:
    import socket

    from tgfleet.account.live import Broadcaster
    from tgfleet.alert.runtime import AlertingRuntime
    from tgfleet.audit.schemas import AuditContext
    from tgfleet.demo.fleet import Demo
    from tgfleet.worker.http import WorkerHttp
    from tgfleet.worker.supervisor import Supervisor

#: The API's "app.started" and "app.stopped" lines keep the logger they always had.
log = get_logger("tgfleet.app")


class Role(StrEnum):
    API = "api"
    RUN = "run"
    DEMO = "demo"
    WORKER = "worker"

    @property
    def runs_accounts(self) -> bool:
        return self is not Role.API

    @property
    def serves_api(self) -> bool:
        return self is not Role.WORKER


@dataclass(frozen=True, slots=True)
class Process:
    """A running process: what its routes use (``components``) and the parts only the
    process itself drives; ``None`` for a part its role does not run."""

    role: Role
    components: Components
    network: NetworkMonitor
    supervisor: Supervisor | None = None
    demo: Demo | None = None
    worker_http: WorkerHttp | None = None


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    role: Role,
    *,
    vault: Vault | None = None,
    worker_id: str | None = None,
    worker_socket: socket.socket | None = None,
    demo_context: AuditContext | None = None,
) -> AsyncIterator[Process]:
    """Start every part of ``role`` (see the module's start order), yield them, stop them in
    the reverse order. ``vault`` is loaded here unless given; the worker role claims
    ``worker_id`` (or a free id) and serves its port on ``worker_socket``; the demo (the
    ``demo`` role, or ``api`` given a ``demo_context``) seeds its fleet audited as
    ``demo_context``."""
    async with contextlib.AsyncExitStack() as stack:
        announced: list[bool] = []

        def stopped() -> None:  # an API that logged "app.started" logs this as its last line
            if announced:
                log.info("app.stopped")

        stack.callback(stopped)
        ensure_data_dir(settings)
        engine = engine_for(settings)
        stack.push_async_callback(engine.dispose)
        sessionmaker = create_sessionmaker(engine)
        # Held from choosing the worker's id until it is registered (in supervisor.start):
        # a worker starting at the same moment then sees it held and picks another.
        identity_lock = await stack.enter_async_context(contextlib.AsyncExitStack())
        if role is Role.WORKER:
            worker_id = await _claim_worker_id(
                settings, engine, sessionmaker, worker_id, identity_lock
            )
        security = Security.from_settings(settings) if role.serves_api else None
        if vault is None:
            vault = await asyncio.to_thread(Vault.load, settings)
        supervisor = _supervisor(settings, sessionmaker, vault, role, worker_id)
        # Read by readiness and the fleet gauges: true from the runtime's start until its stop.
        runtime_up: list[bool] = []
        await stack.enter_async_context(LoopLagMonitor())
        network = NetworkMonitor.from_settings(settings)  # off when TGFLEET_TELEGRAM_DCS=""
        health = _health(
            settings, engine, sessionmaker, vault, role, supervisor, network, runtime_up
        )
        stack.push_async_callback(health.close)
        metrics.configure(
            per_account=settings.metrics_per_account,
            version=__version__,
            roles=_metric_roles(role),
        )
        fleet_gauges = (
            FleetGauges(
                sessionmaker,
                refresh_seconds=settings.metrics_fleet_refresh_seconds,
                capacity=settings.worker_capacity,
                runtime_running=lambda: bool(runtime_up),
            )
            if role.serves_api
            else None
        )

        def components(
            alerting: AlertingRuntime | None = None, broadcaster: Broadcaster | None = None
        ) -> Components:
            return Components(
                settings=settings,
                engine=engine,
                sessionmaker=sessionmaker,
                vault=vault,
                health=health,
                security=security,
                fleet_gauges=fleet_gauges,
                alerting=alerting,
                observe_runtime=supervisor.observe_metrics if supervisor is not None else None,
                broadcaster=broadcaster,
            )

        worker_http = None
        if role is Role.WORKER:
            worker_http = await stack.enter_async_context(_worker_http(components(), worker_socket))
        await stack.enter_async_context(network)
        alerting = demo = broadcaster = None
        if role.serves_api:
            if settings.alerting_enabled:
                from tgfleet.alert.runtime import AlertingRuntime

                alerting = await stack.enter_async_context(
                    AlertingRuntime(
                        settings, engine, sessionmaker, network=network, delivery=health.delivery
                    )
                )
            log.info(
                "app.started",
                version=__version__,
                env=settings.env.value,
                worker=role.runs_accounts,
            )
            announced.append(True)
            # The audit key is loaded first: a bad one stops the start, not the first change.
            await stack.enter_async_context(audit_runtime(settings, sessionmaker))
            await stack.enter_async_context(Housekeeping(settings, sessionmaker))
            broadcaster = await stack.enter_async_context(_broadcaster(settings, sessionmaker))
        if role is Role.DEMO or demo_context is not None:  # `run --demo [--no-worker]`
            demo = await _start_demo(stack, settings, sessionmaker, vault, network, demo_context)
        if supervisor is not None:
            await stack.enter_async_context(
                supervisor if role is not Role.WORKER else _failing_quietly(supervisor)
            )
            runtime_up.append(True)
            stack.callback(runtime_up.clear)  # stopping: no longer counted as running
        await identity_lock.aclose()
        yield Process(
            role=role,
            components=components(alerting, broadcaster),
            network=network,
            supervisor=supervisor,
            demo=demo,
            worker_http=worker_http,
        )


def _broadcaster(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> Broadcaster:
    from tgfleet.account.live import Broadcaster

    url = settings.effective_database_url
    return Broadcaster(sessionmaker, listen_url=url if url.startswith("postgresql") else None)


def _worker_http(components: Components, sock: socket.socket | None) -> WorkerHttp:
    from tgfleet.worker.http import WorkerHttp, build_app

    if sock is None:
        msg = "the worker role needs its listening socket"
        raise ValueError(msg)
    return WorkerHttp(build_app(components), sock)


async def _claim_worker_id(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    requested: str | None,
    identity_lock: contextlib.AsyncExitStack,
) -> str:
    from tgfleet.worker import identity

    await identity_lock.enter_async_context(identity.start_lock(engine))
    return await identity.claim(
        sessionmaker, requested, identity.Process.current(), ttl=settings.lease_ttl_seconds
    )


def _supervisor(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    role: Role,
    worker_id: str | None,
) -> Supervisor | None:
    if not role.runs_accounts:
        return None
    from tgfleet.worker.supervisor import Supervisor  # heavy (Telethon): only when it runs

    if role is Role.WORKER:
        return Supervisor(settings, sessionmaker, vault, worker_id=worker_id)
    return Supervisor(settings, sessionmaker, vault)


def _health(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    role: Role,
    supervisor: Supervisor | None,
    network: NetworkMonitor,
    runtime_up: list[bool],
) -> HealthService:
    if role is Role.WORKER:
        leases = supervisor.leases if supervisor is not None else None
        return HealthService(
            settings,
            engine,
            sessionmaker,
            vault,
            role="worker",
            lease_ready=leases.fresh if leases is not None else None,
            network=network,
        )
    # Readiness does not follow the embedded worker's lease: fenced accounts must not take
    # the API and console (where an operator looks) out of service.
    return HealthService(
        settings,
        engine,
        sessionmaker,
        vault,
        role="all" if role.runs_accounts else "api",
        supervisor_running=(lambda: bool(runtime_up)) if role.runs_accounts else None,
        network=network,
    )


def _metric_roles(role: Role) -> tuple[str, ...]:
    if role is Role.WORKER:
        return ("worker",)
    return ("api", "worker") if role.runs_accounts else ("api",)


async def _start_demo(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    vault: Vault,
    network: NetworkMonitor,
    context: AuditContext | None,
) -> Demo:
    from tgfleet.demo.fleet import start_demo

    if context is None:
        msg = "the demo role needs the audit context its fleet is seeded as"
        raise ValueError(msg)
    demo = await start_demo(sessionmaker, vault, context, settings.data_dir / "demo")
    stack.push_async_callback(demo.stop)
    # The demo's Telegram is the sandbox: probe it instead of the real DCs.
    network.retarget({demo.world.dc_id: ("127.0.0.1", demo.sandbox.port)})
    return demo


@contextlib.asynccontextmanager
async def _failing_quietly(supervisor: Supervisor) -> AsyncIterator[Supervisor]:
    """`tgfleet worker`'s runtime: an error while it drains does not fail the process (the
    parts after it still stop; the exit status stays 0, as the worker always had it)."""
    try:
        await supervisor.start()
        yield supervisor
    finally:
        with contextlib.suppress(Exception):
            await supervisor.stop()
