"""``tgfleet db``: schema migrations (Alembic and the ORM imported inside the commands)."""

from __future__ import annotations

import typer

from tgfleet.cli._runtime import console

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Migrate the database to the latest schema (or to REVISION).

    \b
    Example:
      tgfleet db upgrade
    """
    from tgfleet.cli._local import load_settings, migrate

    reached = migrate(load_settings(), revision)
    console.print(f"database at revision {reached}")


@app.command("downgrade")
def downgrade_command(
    revision: str = typer.Argument(..., help="target revision (the older release's head)"),
) -> None:
    """Take the database back to an older release's REVISION.

    Before starting a release older than the schema when it cannot run on it (docs/deploy.md
    "Upgrades and rollback"). Run it with the newer release, which holds the steps back; it
    drops what they added. Back up first.

    \b
    Example:
      tgfleet backup create before-downgrade.tar
      tgfleet db downgrade 0011_traffic_minute
    """
    from tgfleet.cli._local import downgrade, load_settings

    reached = downgrade(load_settings(), revision)
    console.print(f"database at revision {reached or '(empty)'}")


@app.command()
def current() -> None:
    """Print the database's revision and this code's head.

    Exits 1 unless this code can run against the database (at its head, or ahead of it by
    additive migrations only).

    \b
    Example:
      tgfleet db current
    """
    from tgfleet import migrations
    from tgfleet.cli._local import load_settings, schema_state

    state = schema_state(load_settings())
    head = migrations.head_revision()
    console.print(
        f"database: {state.revision or '(empty)'}\ncode head: {head}\n{state.describe()}",
        highlight=False,
    )
    if not state.fit.runs:
        raise typer.Exit(1)
