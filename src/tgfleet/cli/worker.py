"""``tgfleet worker`` and ``tgfleet api``: the two halves of ``tgfleet run`` as separate
processes, for PostgreSQL deployments with several replicas of each (DESIGN §1, §8)."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import typer

from tgfleet.cli import _runtime
from tgfleet.cli._runtime import console, fail

if TYPE_CHECKING:
    import socket

    from tgfleet.config import Settings
    from tgfleet.vault.service import Vault


def worker(worker_id: str | None) -> None:
    """Run the account runtime alone (`tgfleet worker`, its options in ``workers``): lease
    accounts (PostgreSQL), run their clients, and on SIGTERM disconnect them and hand every
    account over. Needs a migrated database."""
    from tgfleet.cli._local import (
        load_audit_keys,
        load_settings,
        load_vault,
        require_current_schema,
    )
    from tgfleet.kit.listen import ListenError, open_listener
    from tgfleet.worker.identity import WorkerIdInUse

    settings = load_settings(log_level=None)
    _runtime.serving = True
    require_telegram_app(settings)
    if not settings.effective_database_url.startswith("postgresql"):
        raise fail(
            "tgfleet worker needs PostgreSQL (TGFLEET_DATABASE_URL=postgresql+asyncpg://...): "
            "on SQLite, `tgfleet run` is the one process that runs accounts",
            2,
        )
    try:
        sock = open_listener(
            settings.worker_metrics_host,
            settings.worker_metrics_port,
            hint="each worker on a host needs its own TGFLEET_WORKER_METRICS_PORT (0: any free)",
        )
    except ListenError as exc:
        raise fail(exc.message, 2) from exc
    with sock:
        require_current_schema(settings)
        vault = load_vault(settings)
        load_audit_keys(settings)
        try:
            asyncio.run(_serve_worker(settings, vault, worker_id or settings.worker_id, sock))
        except WorkerIdInUse as exc:
            raise fail(exc.message, 2) from exc


def require_telegram_app(settings: Settings) -> None:
    """In production the clients must present the operator's own Telegram app: without
    ``TGFLEET_TELEGRAM_API_ID``/``_HASH`` they would connect as a placeholder. Exit 2."""
    from tgfleet.config import Environment

    if settings.env is Environment.PROD and settings.telegram_api_id is None:
        raise fail(
            "TGFLEET_ENV=prod needs TGFLEET_TELEGRAM_API_ID and TGFLEET_TELEGRAM_API_HASH "
            "(your app's, from my.telegram.org) to run accounts; refusing to start",
            2,
        )


async def _serve_worker(
    settings: Settings, vault: Vault, requested_id: str | None, sock: socket.socket
) -> None:
    from tgfleet.kit.listen import format_address
    from tgfleet.process import Role, running

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running(
        settings, Role.WORKER, vault=vault, worker_id=requested_id, worker_socket=sock
    ) as process:
        supervisor, http = process.supervisor, process.worker_http
        if supervisor is None or http is None:
            msg = "the worker role started without its account runtime or its port"
            raise RuntimeError(msg)
        console.print(
            f"tgfleet worker {supervisor.worker_id} running; /metrics and probes on "
            f"{format_address(settings.worker_metrics_host, http.port)}",
            highlight=False,
        )
        await stop.wait()


def api(
    host: str | None = typer.Option(None, help="listen address (default TGFLEET_HOST)"),
    port: int | None = typer.Option(
        None, min=0, max=65535, help="listen port (default TGFLEET_PORT; 0 picks a free one)"
    ),
) -> None:
    """Serve the API alone; accounts run in `tgfleet worker` processes.

    Any number of replicas. Migrates the database and creates an admin if there is none,
    as `run` does.

    \b
    Example:
      TGFLEET_DATABASE_URL=postgresql+asyncpg://... tgfleet api --port 8000
    """
    from tgfleet.cli.run import run

    run(host=host, port=port, demo=False, worker=False)
