"""Shell completion: ``tgfleet completion SHELL`` prints the script, and the values a
TAB offers: account labels, playbook names, silence ids, usernames and roles from the
server the command would talk to, context names from the config file.

The script (``tgfleet completion bash|zsh|fish``, or typer's ``tgfleet --install-completion``
for the shell it detects) makes the shell run ``tgfleet`` again on every TAB with the words
typed so far in ``_TGFLEET_COMPLETE``'s protocol: verbs come from the root's table without
importing any verb, a verb's sub-commands and options from its module, and a parameter
wired with ``autocompletion=account_labels`` (or another function here) is asked for its
values.

The functions never prompt and never print: completion runs inside the shell's key handler,
so anything written to the terminal would garble the line. Without a server chosen (local
mode), with a server that does not answer within `TIMEOUT` seconds, a refused token or a
config file that would be refused, they offer nothing and the shell falls back to its own
completion. The server comes from ``--server``/``--context`` typed before the verb (typer
passes the completion's context), else ``TGFLEET_SERVER``/``TGFLEET_CONTEXT``, else the
current context: the same choice the command itself would make.
"""

from __future__ import annotations

import contextlib
import enum
import io
import os
from collections.abc import Iterator
from typing import Any

import typer

from tgfleet.cli import _remote

#: Seconds one completion request may take: a TAB that hangs is worse than none.
TIMEOUT = 2.0
#: The most values offered for one TAB.
LIMIT = 50
#: One page of playbooks, filtered here (the API has no name filter): the API's maximum.
PLAYBOOK_PAGE = 500


#: The variable typer's completion protocol reads (``_<PROG>_COMPLETE``).
COMPLETE_VAR = "_TGFLEET_COMPLETE"


class Shell(enum.StrEnum):
    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"


def completion(
    shell: Shell = typer.Argument(..., help="bash, zsh or fish", case_sensitive=False),
) -> None:
    """Print the completion script for SHELL: verbs, sub-commands, options, context
    names, and account labels and playbook names from the current context.

    `tgfleet --install-completion` does the same for the shell it runs in and adds it to
    that shell's start-up file.

    \b
    Examples:
      source <(tgfleet completion bash)      # this shell; add the line to ~/.bashrc
      tgfleet completion zsh > "${fpath[1]}/_tgfleet"
      tgfleet completion fish > ~/.config/fish/completions/tgfleet.fish
    """
    from typer._completion_shared import get_completion_script

    typer.echo(
        get_completion_script(prog_name="tgfleet", complete_var=COMPLETE_VAR, shell=shell.value)
    )


def account_labels(incomplete: str, ctx: object = None) -> list[str]:
    """Labels of the accounts starting with ``incomplete`` (the API's ``label`` prefix
    filter, in label order), at most `LIMIT`."""
    params: dict[str, Any] = {"limit": LIMIT, "sort": "label"}
    if incomplete:
        params["label"] = incomplete
    items = _items("/api/v1/accounts", params, ctx)
    labels = [str(item.get("label") or "") for item in items]
    return [label for label in labels if label and label.startswith(incomplete)][:LIMIT]


def playbook_names(incomplete: str, ctx: object = None) -> list[str]:
    """Names of the playbooks starting with ``incomplete``, at most `LIMIT`."""
    items = _items("/api/v1/playbooks", {"limit": PLAYBOOK_PAGE, "order": "name"}, ctx)
    names = [str(item.get("name") or "") for item in items]
    return [name for name in names if name and name.startswith(incomplete)][:LIMIT]


def silence_ids(incomplete: str, ctx: object = None) -> list[str]:
    """Ids of the pending and active silences starting with ``incomplete``."""
    ids = [str(item.get("id") or "") for item in _items("/api/v1/silences", {}, ctx)]
    return [one for one in ids if one and one.startswith(incomplete)][:LIMIT]


def user_names(incomplete: str, ctx: object = None) -> list[str]:
    """Usernames starting with ``incomplete`` (the API's ``q`` narrows the page)."""
    params: dict[str, Any] = {"limit": PLAYBOOK_PAGE}
    if incomplete:
        params["q"] = incomplete
    names = [str(item.get("username") or "") for item in _items("/api/v1/users", params, ctx)]
    return [name for name in names if name and name.startswith(incomplete)][:LIMIT]


def role_names(incomplete: str, ctx: object = None) -> list[str]:
    """Names of the roles starting with ``incomplete``."""
    names = [str(item.get("name") or "") for item in _items("/api/v1/roles", {}, ctx)]
    return [name for name in names if name and name.startswith(incomplete)][:LIMIT]


def context_names(incomplete: str) -> list[str]:
    """Names of the saved contexts starting with ``incomplete`` (the config file only, no
    request)."""
    names: list[str] = []  # stays empty when the config file is refused
    with _silent():
        names = sorted(_remote.Config.load().contexts)
    return [name for name in names if name.startswith(incomplete)]


def _items(path: str, params: dict[str, Any], ctx: object) -> list[dict[str, Any]]:
    """The ``items`` of one GET to the chosen server; [] on any failure, silently."""
    with _silent():
        _choose_from(ctx)
        chosen = _remote.target()
        if chosen is None or not chosen.token:
            return []
        import httpx

        response = httpx.get(
            f"{chosen.server}{path}",
            params=params,
            headers={"Authorization": f"Bearer {chosen.token}", "Accept": "application/json"},
            timeout=TIMEOUT,
        )
        if response.status_code != 200:
            return []
        body = response.json()
        items = body.get("items") if isinstance(body, dict) else body  # a page, or a list
        if isinstance(items, list):
            return [item for item in items if isinstance(item, dict)]
    return []


def _choose_from(ctx: object) -> None:
    """``--server``/``--context`` as typed on the line being completed (the root command's
    callback, which records them for a real run, does not run during completion)."""
    root = getattr(ctx, "find_root", None)
    params: dict[str, Any] = getattr(root(), "params", {}) if callable(root) else {}
    _remote.choose(
        server=params.get("server") or os.environ.get("TGFLEET_SERVER"),
        context=params.get("context_name") or os.environ.get("TGFLEET_CONTEXT"),
    )


@contextlib.contextmanager
def _silent() -> Iterator[None]:
    """Nothing on stderr (the commands' `fail` prints there before exiting) and no error
    out: the shell gets no completions instead of a garbled line."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.suppress(Exception, SystemExit):
        yield
