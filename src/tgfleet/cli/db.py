"""``tgfleet db``: schema migrations."""

from __future__ import annotations

import asyncio

import typer

from tgfleet import migrations
from tgfleet.cli._runtime import console, fail, load_settings
from tgfleet.exceptions import AppError

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Migrate the database to the latest schema (or to REVISION)."""
    settings = load_settings()
    try:
        migrations.upgrade(settings.effective_database_url, revision)
    except AppError as exc:
        raise fail(exc.message) from exc
    current = asyncio.run(migrations.current_revision(settings.effective_database_url))
    console.print(f"database at revision {current}")


@app.command()
def current() -> None:
    """Print the database's revision and the code's head revision."""
    settings = load_settings()
    at = asyncio.run(migrations.current_revision(settings.effective_database_url))
    head = migrations.head_revision()
    console.print(f"database: {at or '(empty)'}\ncode head: {head}")
    if at != head:
        raise typer.Exit(1)
