"""``tgfleet worker``: run a worker (bare, as the deployments do), or look at the workers
(``tgfleet worker list``, through the API)."""

from __future__ import annotations

import typer

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
