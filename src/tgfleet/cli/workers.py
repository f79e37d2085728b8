"""``tgfleet worker``: run a worker (bare, as the deployments do), or look at the workers
(``tgfleet worker list``, through the API)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer
from rich.console import Group as RenderGroup
from rich.console import RenderableType
from rich.text import Text

from tgfleet.cli import _remote
from tgfleet.cli._output import INTERVAL, OUTPUT, WATCH, Column, Output, ago, emit, table, watch
from tgfleet.cli._runtime import EXIT_USAGE, console, err_console, fail

WORKERS = "/api/v1/workers"

app = typer.Typer(
    help="Workers: `tgfleet worker` runs one (PostgreSQL); `tgfleet worker list` shows them.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback()
def run_worker(
    ctx: typer.Context,
    worker_id: str | None = typer.Option(
        None,
        "--id",
        help="this worker's id (default TGFLEET_WORKER_ID, else the host name, or "
        "<host>-2, <host>-3... when a live worker on this host holds it)",
    ),
) -> None:
    """Run the account runtime alone: lease accounts (PostgreSQL), run their clients, and on
    SIGTERM disconnect them and hand every account over. Needs a migrated database.

    \b
    Examples:
      tgfleet worker --id worker-1
      tgfleet worker list --watch
    """
    if ctx.invoked_subcommand is not None:
        if worker_id is not None:
            raise typer.BadParameter("--id is for running a worker", param_hint="--id")
        return
    from tgfleet.cli.worker import worker

    worker(worker_id)


def _liveness(item: Mapping[str, Any]) -> str:
    """``running``, ``expired`` (running, but its lease ran out: the process is gone or
    stuck) or ``stopped`` (drained)."""
    if item.get("state") == "running" and not item.get("alive"):
        return "expired"
    return str(item.get("state") or "")


LIVENESS_STYLES = {"running": "green", "expired": "red", "stopped": "dim"}

COLUMNS = (
    Column("id", "id", key=True),
    Column("state", _liveness, style=LIVENESS_STYLES.get, min_width=7),
    Column("accounts", lambda w: f"{w.get('accounts_held', 0)}/{w.get('capacity', 0)}"),
    Column("heartbeat", lambda w: ago(w.get("heartbeat_at"))),
    Column("version", "version"),
    Column("host", "host"),
    Column("pid", "pid", wide=True),
    Column("epoch", "epoch", wide=True),
    Column("started", lambda w: ago(w.get("started_at")), wide=True),
    Column("expires", "expires_at", wide=True),
)


@app.command("list")
def list_workers(
    output: Output = OUTPUT, watching: bool = WATCH, interval: float = INTERVAL
) -> None:
    """The workers sharing the fleet (PostgreSQL): liveness, accounts held of their capacity,
    last heartbeat, version and host. On SQLite `tgfleet run` runs every account and none
    is listed. On a terminal, the accounts no live worker holds are counted under the table.

    \b
    Examples:
      tgfleet worker list
      tgfleet worker list --watch
      tgfleet worker list -o json | jq -r '.[] | select(.alive | not) | .id'
    """
    with _remote.client("worker list") as api:
        if watching:
            if output in {Output.JSON, Output.YAML}:
                raise fail("--watch prints tables: use -o table or -o wide", EXIT_USAGE)

            def once() -> RenderableType:
                found = api.get(WORKERS)
                grid = table(found["items"], COLUMNS, wide=output is Output.WIDE)
                return RenderGroup(grid, Text(_summary(found), style="dim"))

            watch(once, interval)
            return
        found = api.get(WORKERS)
    emit(found["items"], COLUMNS, output, empty=_summary(found))
    if output in {Output.TABLE, Output.WIDE} and found["items"] and console.is_terminal:
        err_console.print(_summary(found), style="dim", highlight=False)


def _summary(found: Mapping[str, Any]) -> str:
    """``2 of 3 workers alive; 0 accounts desired running unassigned``."""
    items = found.get("items") or []
    unassigned = f"{int(found.get('unassigned') or 0)} accounts desired running unassigned"
    if not items:
        return f"no workers registered (on SQLite `tgfleet run` runs every account); {unassigned}"
    alive = sum(1 for w in items if w.get("alive"))
    return f"{alive} of {len(items)} workers alive; {unassigned}"
