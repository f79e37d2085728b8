"""``tgfleet run``: the all-in-one process (migrate, ensure an admin, serve)."""

from __future__ import annotations

import asyncio

import typer
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet import migrations
from tgfleet.app import create_app
from tgfleet.auth import service as auth_service
from tgfleet.cli._runtime import cli_audit_context, console, fail, run_in_session
from tgfleet.config import Settings, ensure_data_dir
from tgfleet.exceptions import AppError
from tgfleet.logging import configure_logging


def run(
    host: str | None = typer.Option(None, help="listen address (default TGFLEET_HOST)"),
    port: int | None = typer.Option(None, help="listen port (default TGFLEET_PORT)"),
) -> None:
    """Migrate the database, create an admin if there is none, and serve the API."""
    try:
        settings = Settings()
    except ValueError as exc:
        raise fail(f"invalid settings: {exc}", 2) from exc
    configure_logging(level=settings.log_level, json=settings.effective_log_json)
    try:
        ensure_data_dir(settings)
        migrations.upgrade(settings.effective_database_url)
        security = auth_service.Security.from_settings(settings)
    except AppError as exc:
        raise fail(exc.message) from exc

    async def work(session: AsyncSession) -> tuple[str, str] | None:
        return await auth_service.ensure_admin(session, security, cli_audit_context())

    created = run_in_session(settings, work)
    listen_host = host or settings.host
    listen_port = port or settings.port
    if created:
        name, password = created
        console.print(
            f"\n[bold]Created user {name!r}. Its password is shown only this once:[/bold]\n\n"
            f"    {password}\n\nChange it after logging in (POST /api/v1/auth/password).\n",
            highlight=False,
        )
    console.print(f"tgfleet serving on http://{listen_host}:{listen_port}  (API docs: /docs)")
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=listen_host,
            port=listen_port,
            log_config=None,
            access_log=False,
            server_header=False,
        )
    )
    asyncio.run(server.serve())
