"""``tgfleet worker`` and ``tgfleet api``: the two halves of ``tgfleet run`` as separate
processes, for PostgreSQL deployments with several replicas of each (DESIGN §1, §8)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import typer

from tgfleet import __version__, metrics, migrations
from tgfleet.cli._runtime import console, fail, load_settings, load_vault, schema_revision
from tgfleet.config import Settings
from tgfleet.kit.db import create_engine, create_sessionmaker
from tgfleet.vault.service import Vault


def worker(
    worker_id: str | None = typer.Option(
        None, "--id", help="this worker's id (default TGFLEET_WORKER_ID, else the host name)"
    ),
) -> None:
    """Run the account runtime alone: lease accounts (PostgreSQL), run their clients, and on
    SIGTERM disconnect them and hand every account over. Needs a migrated database."""
    settings = load_settings(log_level=None)
    if not settings.effective_database_url.startswith("postgresql"):
        raise fail(
            "tgfleet worker needs PostgreSQL (TGFLEET_DATABASE_URL=postgresql+asyncpg://...): "
            "on SQLite, `tgfleet run` is the one process that runs accounts",
            2,
        )
    _require_current_schema(settings)
    vault = load_vault(settings)
    asyncio.run(_serve_worker(settings, vault, worker_id))


def _require_current_schema(settings: Settings) -> None:
    current, head = schema_revision(settings), migrations.head_revision()
    if current != head:
        raise fail(
            f"the database is at revision {current or '(empty)'}, the code expects {head}: "
            "run `tgfleet db upgrade` first",
            2,
        )


async def _serve_worker(settings: Settings, vault: Vault, worker_id: str | None) -> None:
    from tgfleet.worker.supervisor import Supervisor  # heavy (Telethon): only when serving

    engine = create_engine(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    from tgfleet.health.network import NetworkMonitor
    from tgfleet.health.service import HealthService
    from tgfleet.telemetry.service import LoopLagMonitor
    from tgfleet.worker.http import WorkerHttp, build_app

    sessionmaker = create_sessionmaker(engine)
    supervisor = Supervisor(settings, sessionmaker, vault, worker_id=worker_id)
    leases = supervisor.leases
    network = NetworkMonitor.from_settings(settings)
    health = HealthService(
        settings,
        engine,
        sessionmaker,
        vault,
        role="worker",
        lease_ready=leases.fresh if leases is not None else None,
        network=network,
    )
    metrics.configure(
        per_account=settings.metrics_per_account, version=__version__, roles=("worker",)
    )
    http = WorkerHttp(
        build_app(settings, engine=engine, supervisor=supervisor, health=health),
        settings.worker_metrics_host,
        settings.worker_metrics_port,
    )
    loop_lag = LoopLagMonitor()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        port = await http.start()
        network.start()
        loop_lag.start()
        await supervisor.start()
        console.print(
            f"tgfleet worker {supervisor.worker_id} running; /metrics and probes on "
            f"{settings.worker_metrics_host}:{port}",
            highlight=False,
        )
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await supervisor.stop()
        await loop_lag.stop()
        await network.stop()
        await http.stop()
        await health.close()
        await engine.dispose()


def api(
    host: str | None = typer.Option(None, help="listen address (default TGFLEET_HOST)"),
    port: int | None = typer.Option(
        None, min=0, max=65535, help="listen port (default TGFLEET_PORT; 0 picks a free one)"
    ),
) -> None:
    """Serve the API alone (any number of replicas); accounts run in `tgfleet worker`
    processes. Migrates the database and creates an admin if there is none, as `run` does."""
    from tgfleet.cli.run import run

    run(host=host, port=port, demo=False, worker=False)
