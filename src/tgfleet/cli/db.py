"""``tgfleet db``: schema migrations."""

from __future__ import annotations

import typer

from tgfleet import migrations
from tgfleet.cli._runtime import console, load_settings, migrate, schema_revision

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Migrate the database to the latest schema (or to REVISION)."""
    reached = migrate(load_settings(), revision)
    console.print(f"database at revision {reached}")


@app.command()
def current() -> None:
    """Print the database's revision and the code's head revision."""
    at = schema_revision(load_settings())
    head = migrations.head_revision()
    console.print(f"database: {at or '(empty)'}\ncode head: {head}")
    if at != head:
        raise typer.Exit(1)
