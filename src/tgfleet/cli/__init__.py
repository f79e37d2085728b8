"""The ``tgfleet`` command line: one click group whose verb groups load on demand.

Each verb group is a typer app in its own module (``tgfleet.cli.account``...), imported
only when that verb runs: `tgfleet --help` lists them from the table below without
importing any, and a remote command imports its module, the HTTP client and nothing of
the server (no SQLAlchemy, Telethon or FastAPI). A command module keeps its heavy imports
inside the functions that need them (the database-direct paths).

An error a command did not expect is one line on stderr and exit status 1, never a
traceback: typer's pretty tracebacks printed hundreds of lines with every frame's local
variables (the Settings, passwords). The traceback, without locals, goes to the log: at
ERROR in the serving commands (``run``, ``api``, ``worker``), at DEBUG elsewhere
(``TGFLEET_LOG_LEVEL=DEBUG`` shows it).

Exit codes: 0 ok, 1 failed, 2 usage or configuration, 3 server unreachable, 4 not
permitted or not signed in (``tgfleet.cli._runtime``).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup

from tgfleet.cli import _coerce, _runtime

_coerce.install()  # str, bool and enum values without pydantic: see `_coerce`
# httpx imports its own command line (click, pygments, rich.syntax: ~40 ms) when those are
# installed; tgfleet never runs it, and httpx works as it does where they are not.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Verb:
    target: str  # "module:attribute", a typer app or a function
    summary: str  # the one line `tgfleet --help` shows (the module is not imported for it)
    section: str


_FLEET = "Fleet (through the server's API when a context or --server is set)"
_ACCESS = "Access"
_SERVER = "Server, bootstrap and recovery (on the server's host)"

#: Every verb, in the order `tgfleet --help` lists them.
VERBS: dict[str, Verb] = {
    "account": Verb("tgfleet.cli.account:app", "Accounts: list, inspect, start, stop.", _FLEET),
    "group": Verb(
        "tgfleet.cli.group:app", "Groups the accounts are in: replies on or off.", _FLEET
    ),
    "playbook": Verb("tgfleet.cli.playbook:app", "Playbooks: apply, diff, dry-run.", _FLEET),
    "alert": Verb("tgfleet.cli.alert:app", "Alerts: firing now and history.", _FLEET),
    "silence": Verb("tgfleet.cli.silence:app", "Silences: mute alerts for a while.", _FLEET),
    "worker": Verb(
        "tgfleet.cli.workers:app", "Workers: `worker list`; bare `worker` runs one.", _FLEET
    ),
    "audit": Verb("tgfleet.cli.audit:app", "The audit log: list, verify, export.", _FLEET),
    "login": Verb("tgfleet.cli.login:login", "Sign in to a server; save it as a context.", _ACCESS),
    "logout": Verb(
        "tgfleet.cli.login:logout", "Revoke the context's token and forget it.", _ACCESS
    ),
    "context": Verb("tgfleet.cli.context:app", "Saved servers: list, use, delete.", _ACCESS),
    "completion": Verb(
        "tgfleet.cli._complete:completion", "Print the shell completion script.", _ACCESS
    ),
    "user": Verb("tgfleet.cli.user:app", "Users and their roles.", _ACCESS),
    "token": Verb("tgfleet.cli.token:app", "Your API tokens.", _ACCESS),
    "run": Verb("tgfleet.cli.run:run", "Run the API and the accounts in one process.", _SERVER),
    "api": Verb("tgfleet.cli.worker:api", "Run the HTTP API and console only.", _SERVER),
    "db": Verb("tgfleet.cli.db:app", "The database schema: upgrade, downgrade.", _SERVER),
    "vault": Verb("tgfleet.cli.vault:app", "The session vault and its keys.", _SERVER),
    "session": Verb("tgfleet.cli.session:app", "Import and export Telegram sessions.", _SERVER),
    "backup": Verb("tgfleet.cli.backup:app", "Backups: create, verify, restore.", _SERVER),
    "sandbox": Verb("tgfleet.cli.sandbox:app", "The built-in Telegram sandbox.", _SERVER),
    "version": Verb("tgfleet.cli:version", "Print the version.", _SERVER),
}


def version() -> None:
    """Print the version."""
    from tgfleet import __version__

    typer.echo(__version__)


def _as_command(obj: Any, name: str) -> Any:
    """A verb's typer app (always a group, even with one command) or function (a command),
    as the command object typer runs; plain help (typer's rich help put a ``<bool>``
    metavar on flags), no completion options below the root."""
    if isinstance(obj, typer.Typer):
        obj._add_completion = False
        obj.rich_markup_mode = None
        command: Any = typer.main.get_group(obj)
    else:
        single = typer.Typer(add_completion=False, rich_markup_mode=None)
        single.command(name)(obj)
        command = typer.main.get_command(single)
    command.name = name
    _plain_metavars(command)
    _whole_summaries(command)
    return command


def _whole_summaries(command: Any) -> None:
    """A group's command list shows each command's first sentence whole (wrapped), where
    click cut it to the width with ``...`` mid-sentence."""
    for sub in getattr(command, "commands", {}).values():
        if sub.short_help is None and sub.help:
            paragraph = " ".join(sub.help.strip().split("\n\n", 1)[0].split())
            end = paragraph.find(". ")
            sub.short_help = paragraph if end < 0 else paragraph[: end + 1]
        _whole_summaries(sub)


def _plain_metavars(command: Any) -> None:
    """``--comment COMMENT`` and ``-o [table|wide|json|yaml]`` in help, not typer 0.29's
    ``<str>``, ``<list[str]>`` and ``<bool>``."""
    for param in command.params:
        if param.metavar is not None or getattr(param, "is_flag", False):
            continue
        descriptor = getattr(param, "type_descriptor", None)
        choices = descriptor.choices if descriptor is not None and descriptor.is_choice else None
        if param.param_type_name == "argument":
            _plain_argument(param)  # its choices belong in its help
        elif choices:
            param.metavar = "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
        else:
            param.metavar = (param.name or "value").upper()
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)


def _plain_argument(param: Any) -> None:
    """``MATCHERS...`` (``[NAME]`` when optional) in the usage line and the Arguments
    list, as click writes them, not typer's ``{MATCHERS}...`` and ``<list[str]>``."""
    name = (param.name or "value").upper()
    repeated = "..." if param.nargs != 1 else ""
    param.metavar = name
    shown = f"{name}{repeated}" if param.required else f"[{name}]{repeated}"
    param.display_type_rich = lambda ctx=None: None  # noqa: ARG005 - typer's signature
    param._usage_display_name = lambda: shown


class LazyGroup(TyperGroup):
    """The root group: a verb's module is imported only when that verb is used; help and
    completion of the verbs themselves come from `VERBS`."""

    def list_commands(self, ctx: Any) -> list[str]:  # noqa: ARG002 - click's API
        return list(VERBS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:  # noqa: ARG002
        verb = VERBS.get(cmd_name)
        if verb is None:
            return None
        module_name, attribute = verb.target.split(":")
        return _as_command(getattr(importlib.import_module(module_name), attribute), cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """Plain help (typer's rich help would import every verb for its summary)."""
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        self.format_options(ctx, formatter)
        sections: dict[str, list[tuple[str, str]]] = {}
        for name, verb in VERBS.items():
            sections.setdefault(verb.section, []).append((name, verb.summary))
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)
        self.format_epilog(ctx, formatter)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        rows = [row for param in self.get_params(ctx) if (row := param.get_help_record(ctx))]
        if rows:
            with formatter.section("Options"):
                formatter.write_dl(rows)

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        """The verbs from `VERBS` (a group's own completion would import every verb for
        its help), and the root's options after a ``-``."""
        from typer._click.core import Command  # typer vendors click
        from typer._click.shell_completion import CompletionItem

        verbs = [
            CompletionItem(name, help=verb.summary)
            for name, verb in VERBS.items()
            if name.startswith(incomplete)
        ]
        return verbs + Command.shell_complete(self, ctx, incomplete)


app = typer.Typer(
    cls=LazyGroup,
    name="tgfleet",
    help="""Control plane for fleets of Telegram user accounts.

\b
Sign in once, then run the fleet from anywhere:
  tgfleet login --server https://tgfleet.example.org
  tgfleet account list --state error
  tgfleet account stop fleet_00 --yes""",
    epilog="Run `tgfleet COMMAND --help` for a command's options and an example.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _context_names(incomplete: str) -> list[str]:
    """Completion of --context (the module loads only on a TAB)."""
    from tgfleet.cli import _complete

    return _complete.context_names(incomplete)


@app.callback()
def choose_server(
    server: str | None = typer.Option(
        None,
        "--server",
        metavar="URL",
        envvar="TGFLEET_SERVER",
        help="Talk to this server's API (its token: the saved context for it, or TGFLEET_TOKEN).",
        show_envvar=False,
    ),
    context_name: str | None = typer.Option(
        None,
        "--context",
        metavar="NAME",
        envvar="TGFLEET_CONTEXT",
        help="Use this saved context, not the current one (`tgfleet context list`).",
        show_envvar=False,
        autocompletion=_context_names,
    ),
) -> None:
    from tgfleet.cli import _remote

    _remote.choose(server=server, context=context_name)


def main() -> None:
    try:
        # One name however it was started (``python -m tgfleet`` too): usage lines, and the
        # completion scripts, which call the program by this name.
        app(prog_name="tgfleet")
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, not a traceback
        _log_unexpected(exc)
        _runtime.fail(_runtime.describe_error(exc))
        sys.exit(1)


def _log_unexpected(exc: Exception) -> None:
    """The traceback (no locals) to the log, when a command configured logging: at ERROR
    when serving, else at DEBUG. Before that (a remote command), structlog's default
    would print it with every frame's locals: nothing is logged."""
    import logging

    import structlog

    if not structlog.is_configured():
        return
    from tgfleet.logging import get_logger

    level = logging.ERROR if _runtime.serving else logging.DEBUG
    get_logger("tgfleet.cli").log(
        level, "cli.unexpected_error", error=type(exc).__name__, exc_info=exc
    )
