"""The ``tgfleet`` command line: one typer app, one module per verb group.

An error a command did not expect is one line on stderr and exit status 1, never a
traceback: typer's pretty tracebacks printed hundreds of lines with every frame's local
variables (the Settings, passwords). The traceback, without locals, goes to the log: at
ERROR in the serving commands (``run``, ``api``, ``worker``), at DEBUG elsewhere
(``TGFLEET_LOG_LEVEL=DEBUG`` shows it).
"""

from __future__ import annotations

import logging
import sys

import typer

from tgfleet import __version__
from tgfleet.cli import (
    _runtime,
    account,
    alert,
    audit,
    backup,
    db,
    sandbox,
    session,
    silence,
    user,
    vault,
)
from tgfleet.cli.run import run
from tgfleet.cli.worker import api, worker
from tgfleet.logging import get_logger

app = typer.Typer(
    name="tgfleet",
    help="Control plane for fleets of Telegram user accounts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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
app.add_typer(backup.app, name="backup")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, not a traceback
        level = logging.ERROR if _runtime.serving else logging.DEBUG
        get_logger("tgfleet.cli").log(
            level, "cli.unexpected_error", error=type(exc).__name__, exc_info=exc
        )
        _runtime.fail(_runtime.describe_error(exc))
        sys.exit(1)
