"""The ``tgfleet`` command line: one typer app, one module per verb group."""

from __future__ import annotations

import typer

from tgfleet import __version__
from tgfleet.cli import account, alert, audit, db, sandbox, session, silence, user, vault
from tgfleet.cli.run import run
from tgfleet.cli.worker import api, worker

app = typer.Typer(
    name="tgfleet",
    help="Control plane for fleets of Telegram user accounts.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command()(run)
app.command()(api)
app.command()(worker)
app.add_typer(db.app, name="db")
app.add_typer(user.app, name="user")
app.add_typer(audit.app, name="audit")
app.add_typer(vault.app, name="vault")
app.add_typer(session.app, name="session")
app.add_typer(account.app, name="account")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(silence.app, name="silence")
app.add_typer(alert.app, name="alert")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
