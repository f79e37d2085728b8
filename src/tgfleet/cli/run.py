"""``tgfleet run``: the all-in-one process (migrate, ensure an admin, serve)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import typer

from tgfleet.auth import service as auth_service
from tgfleet.cli._runtime import (
    cli_audit_context,
    console,
    load_settings,
    load_vault,
    migrate,
    run_in_session,
    security_for,
)
from tgfleet.config import Environment, Settings
from tgfleet.vault.keyring import init_key_file

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


def run(
    host: str | None = typer.Option(None, help="listen address (default TGFLEET_HOST)"),
    port: int | None = typer.Option(
        None, min=0, max=65535, help="listen port (default TGFLEET_PORT; 0 picks a free one)"
    ),
) -> None:
    """Migrate the database, create an admin if there is none, and serve the API."""
    # The web stack is imported here, not at module level, so other commands start fast.
    import uvicorn

    from tgfleet.app import create_app

    settings = load_settings(log_level=None)
    security = security_for(settings)
    _ensure_dev_vault_key(settings)
    load_vault(settings)  # no usable key: stop here with the message, before serving
    migrate(settings)

    async def work(session: AsyncSession) -> tuple[str, str] | None:
        return await auth_service.ensure_admin(session, security, cli_audit_context())

    created = run_in_session(settings, work)
    listen_host = host if host is not None else settings.host
    listen_port = port if port is not None else settings.port
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
