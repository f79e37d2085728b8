"""``tgfleet run``: the all-in-one process (migrate, ensure an admin, serve)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import typer

from tgfleet.auth import service as auth_service
from tgfleet.cli import _runtime
from tgfleet.cli._local import (
    cli_audit_context,
    load_audit_keys,
    load_settings,
    load_vault,
    migrate,
    run_in_session,
    security_for,
)
from tgfleet.cli._runtime import console, fail
from tgfleet.cli.worker import require_telegram_app
from tgfleet.config import Environment, Settings
from tgfleet.exceptions import AppError
from tgfleet.kit.db import create_sessionmaker, engine_for, unit_of_work
from tgfleet.kit.listen import ListenError, bound_port, format_address, open_listener
from tgfleet.vault.keyring import init_key_file
from tgfleet.worker import identity
from tgfleet.worker.identity import WorkerIdInUse

if TYPE_CHECKING:
    import socket
    from collections.abc import Awaitable, Callable

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from tgfleet.audit.schemas import AuditContext
    from tgfleet.auth.service import Security
    from tgfleet.process import Process

DEMO_USER = "demo"


def run(
    host: str | None = typer.Option(None, help="listen address (default TGFLEET_HOST)"),
    port: int | None = typer.Option(
        None, min=0, max=65535, help="listen port (default TGFLEET_PORT; 0 picks a free one)"
    ),
    demo: bool = typer.Option(
        False,
        "--demo",
        help="also run the built-in sandbox with 20 demo accounts chatting in 5 groups",
    ),
    worker: bool = typer.Option(
        True, "--worker/--no-worker", help="run the account runtime in this process"
    ),
) -> None:
    """Serve the API and run the accounts in one process.

    Migrates the database and creates an admin if there is none first (the embedded
    default: SQLite, one process).

    \b
    Examples:
      tgfleet run --demo
      tgfleet run --host 0.0.0.0 --port 8000
    """
    # The web stack is imported here, not at module level, so other commands start fast.
    import uvicorn

    from tgfleet.app import create_app
    from tgfleet.process import Role

    class _AnnouncingServer(uvicorn.Server):
        """uvicorn that prints ``announcement`` once it accepts requests (after the app's
        start-up), not before: the line is the operator's signal that the API answers.
        ``started`` runs then too."""

        def __init__(
            self,
            config: uvicorn.Config,
            announcement: str,
            started: Callable[[], Awaitable[None]],
        ) -> None:
            super().__init__(config)
            self._announcement = announcement
            self._started = started

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                await self._started()
                console.print(self._announcement, highlight=False)

    settings = load_settings(log_level=None)
    _runtime.serving = True
    if demo:  # the demo's Telegram is its sandbox: never probe the real DCs (see below)
        settings = settings.model_copy(update={"telegram_dcs": ""})
    elif worker:
        require_telegram_app(settings)
    listen_host = host if host is not None else settings.host
    # Bound before anything is created or announced: a busy port changes nothing.
    try:
        sock = open_listener(
            listen_host,
            port if port is not None else settings.port,
            hint="pick another with --port or TGFLEET_PORT",
        )
    except ListenError as exc:
        raise fail(exc.message, 2) from exc
    with sock:
        listen_port = bound_port(sock)
        security = security_for(settings)
        _ensure_dev_vault_key(settings)
        load_vault(settings)  # no usable key: stop here with the message, before serving
        load_audit_keys(settings)  # likewise for the audit key
        migrate(settings)

        async def work(session: AsyncSession) -> tuple[str, str] | None:
            return await auth_service.ensure_admin(session, security, cli_audit_context())

        created = run_in_session(settings, work)
        if created:
            name, password = created
            console.print(
                f"\n[bold]Created user {name!r}. Its password is shown only this once:[/bold]"
                f"\n\n    {password}\n\nChange it after signing in "
                "(POST /api/v1/auth/password).\n",
                highlight=False,
            )
        address = format_address(listen_host, listen_port)

        async def serve() -> None:
            # On PostgreSQL the embedded worker registers as a worker: it takes an id no
            # live worker holds, under the lock `tgfleet worker` takes, held until its
            # registration (the app's start-up) is done.
            async with contextlib.AsyncExitStack() as identity_lock:
                app_settings = settings
                if worker and settings.effective_database_url.startswith("postgresql"):
                    engine = engine_for(settings)
                    identity_lock.push_async_callback(engine.dispose)
                    await identity_lock.enter_async_context(identity.start_lock(engine))
                    worker_id = await identity.claim(
                        create_sessionmaker(engine),
                        settings.worker_id,
                        identity.Process.current(),
                        ttl=settings.lease_ttl_seconds,
                    )
                    app_settings = settings.model_copy(update={"worker_id": worker_id})
                if demo:
                    context = cli_audit_context()
                    application = create_app(
                        app_settings,
                        role=Role.DEMO if worker else Role.API,
                        demo_context=context,
                        started=_demo_announcement(security, context, listen_host, listen_port),
                    )
                else:
                    application = create_app(app_settings, run_worker=worker)
                server = _AnnouncingServer(
                    uvicorn.Config(
                        application,
                        log_config=None,
                        access_log=False,
                        server_header=False,
                        proxy_headers=False,  # the app decides (TGFLEET_TRUSTED_PROXIES)
                        timeout_graceful_shutdown=3,  # then the worker's 6 s: gone within 10 s
                    ),
                    f"tgfleet serving on http://{address}  (console: http://{address}/ ,"
                    " API docs: /docs)",
                    started=identity_lock.aclose,
                )
                await server.serve(sockets=[sock])

        try:
            asyncio.run(serve())
        except WorkerIdInUse as exc:
            raise fail(exc.message, 2) from exc


def _demo_announcement(
    security: Security, context: AuditContext, host: str, port: int
) -> Callable[[Process], Awaitable[None]]:
    """Once the demo runs (its fleet seeded, the account runtime started): a fresh password
    for the ``demo`` admin, the runtime woken to pick the fleet up, and how to look at it."""

    async def announce(process: Process) -> None:
        demo = process.demo
        if demo is None:
            msg = "the demo role started without its demo"
            raise RuntimeError(msg)
        password = await _demo_login(process.components.sessionmaker, security, context)
        if process.supervisor is not None:
            process.supervisor.wake()
        console.print(
            f"\n[bold]Console:[/bold]  http://{format_address(host, port)}/\n"
            f"  Sign in as [bold]demo[/bold] with password [bold]{password}[/bold]\n"
            f"  Demo: {len(demo.fleet.account_ids)} accounts in {len(demo.world.groups)} "
            f"groups on the sandbox at 127.0.0.1:{demo.sandbox.port} (control API "
            f":{demo.sandbox.control_port}).\n"
            f"  API:  http://{format_address(host, port)}/docs (the same user and password"
            " for POST /api/v1/auth/login).\n"
            f"  CLI:  tgfleet login --server http://{format_address(host, port)} -u demo\n",
            highlight=False,
        )

    return announce


async def _demo_login(
    sessionmaker: async_sessionmaker[AsyncSession], security: Security, context: AuditContext
) -> str:
    """A ``demo`` admin with a fresh password for this run (shown once, audited)."""
    async with unit_of_work(sessionmaker) as session:
        try:
            await auth_service.get_user(session, DEMO_USER)
        except AppError:
            _, created = await auth_service.create_user(
                session, security, context, username=DEMO_USER, role="admin", password=None
            )
            if created is None:
                msg = "no password was generated for the demo user"
                raise RuntimeError(msg) from None
            return created
        password = await auth_service.reset_password(session, security, context, DEMO_USER, None)
        if password is None:
            msg = "no password was generated for the demo user"
            raise RuntimeError(msg)
        return password


def _ensure_dev_vault_key(settings: Settings) -> None:
    """In dev, with no key configured at all, create the key file so `make run` just works.
    Production (TGFLEET_ENV=prod) never invents a key: it refuses to start instead."""
    configured = settings.vault_key or settings.vault_passphrase
    key_file = settings.effective_vault_key_file
    if settings.env is not Environment.DEV or configured or key_file.exists():
        return
    keyring = init_key_file(key_file)
    console.print(
        f"Created the vault key file {key_file} (key {keyring.active.id}). Back it up: "
        "without it no imported session can be decrypted."
    )
