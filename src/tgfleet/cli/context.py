"""``tgfleet context``: the saved servers (kubectl's contexts), which one is current."""

from __future__ import annotations

import typer

from tgfleet.cli import _complete, _remote
from tgfleet.cli._output import OUTPUT, Column, Output, emit
from tgfleet.cli._runtime import EXIT_USAGE, console, fail

app = typer.Typer(help="Saved servers (contexts): list, use, delete.", no_args_is_help=True)

COLUMNS = (
    Column("current", lambda c: "*" if c["current"] else ""),
    Column("name", "name", key=True),
    Column("server", "server", key=True),
    Column("user", "user"),
    Column("token", "token_name", wide=True),
)


@app.command("list")
def list_contexts(output: Output = OUTPUT) -> None:
    """The saved contexts; `*` marks the current one. Tokens are never printed.

    \b
    Example:
      tgfleet context list -o json
    """
    config = _remote.Config.load()
    rows = [
        {
            "name": name,
            "current": name == config.current,
            "server": saved.server,
            "user": saved.user,
            "token_name": saved.token_name,
        }
        for name, saved in sorted(config.contexts.items())
    ]
    emit(rows, COLUMNS, output, empty="no contexts: run `tgfleet login --server URL`")


@app.command("use")
def use(
    name: str = typer.Argument(
        ..., help="a context from `tgfleet context list`", autocompletion=_complete.context_names
    ),
) -> None:
    """Make NAME the current context.

    \b
    Example:
      tgfleet context use prod
    """
    config = _remote.Config.load()
    if name not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none saved yet"
        raise fail(f"no context named {name!r} (known: {known})", EXIT_USAGE)
    config.current = name
    config.save()
    console.print(f"context {name} is current ({config.contexts[name].server})")


@app.command("current")
def current() -> None:
    """Print the current context's name (exit 1 when none is).

    \b
    Example:
      tgfleet context current
    """
    config = _remote.Config.load()
    if config.current is None:
        raise fail("no current context: run `tgfleet login --server URL`", 1)
    console.print(config.current)


@app.command("delete")
def delete(
    name: str = typer.Argument(
        ..., help="the context to forget", autocompletion=_complete.context_names
    ),
) -> None:
    """Forget a context without revoking its token (`tgfleet logout` revokes it).

    \b
    Example:
      tgfleet context delete old-staging
    """
    config = _remote.Config.load()
    if config.contexts.pop(name, None) is None:
        raise fail(f"no context named {name!r}", EXIT_USAGE)
    if config.current == name:
        config.current = None
    config.save()
    console.print(f"context {name} deleted")
