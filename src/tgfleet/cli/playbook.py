"""``tgfleet playbook``: the reply playbooks, kept in files and applied through the API
(``kubectl apply`` and ``kubectl diff``'s habits), their versions, and their dry run.

A playbook is named by the file (``support-faq.yaml`` is ``support-faq``) or ``--name``.
``apply`` creates it, or saves a new version when the file differs from the server's
latest; the same file again changes nothing. ``diff`` exits 0 when the server has the
file's text, 1 when it differs (or the playbook does not exist yet), as ``diff`` does.
A playbook is referred to by its name, its id or an id prefix of at least 6 characters.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import typer

from tgfleet.cli import _remote
from tgfleet.cli._complete import playbook_names
from tgfleet.cli._output import OUTPUT, Column, Output, ago, detail, dump, emit
from tgfleet.cli._runtime import EXIT_FAILED, EXIT_USAGE, console, fail

app = typer.Typer(
    help="Playbooks: list, show, apply FILE, diff FILE, dry-run, versions.",
    no_args_is_help=True,
)

API = "/api/v1/playbooks"

COLUMNS = (
    Column("name", "name", key=True),
    Column("version", "latest_version"),
    Column("updated", lambda p: ago(p.get("updated_at"))),
    Column("description", "description"),
    Column("id", "id", key=True, wide=True),
)
VERSIONS = (
    Column("version", "version", key=True),
    Column("created by", "created_by"),
    Column("created", lambda v: ago(v.get("created_at"))),
    Column("created at", "created_at", wide=True),
)
DETAIL = (
    Column("name", "name"),
    Column("id", "id"),
    Column("version", lambda p: p.get("version") or p.get("latest_version")),
    Column("description", "description"),
    Column("saved by", lambda p: p.get("version_created_by") or p.get("created_by")),
    Column("saved at", lambda p: p.get("version_created_at") or p.get("created_at")),
)
DRY_RUN = (
    Column("fired", "fired"),
    Column("rule", "rule"),
    Column("reply", "reply"),
    Column("reason", "reason"),
    Column("source", "source"),
    Column("version", "version"),
    Column("fallback", "fallback_reason"),
    Column("typing", "typing_seconds"),
    Column("responders", "responders"),
    Column("detail", "detail"),
    Column("limits", "limits", wide=True),
)

_REF = typer.Argument(
    ...,
    help="the playbook: name, id or id prefix",
    autocompletion=playbook_names,
    show_default=False,
)
_FILE = typer.Argument(
    ..., help="the playbook's YAML file ('-': standard input, with --name)", show_default=False
)
_NAME = typer.Option(
    None,
    "--name",
    "-n",
    help="the playbook's name (default: the file's name without .yaml)",
    autocompletion=playbook_names,
)


def _everything(api: _remote.Client) -> list[dict[str, Any]]:
    return list(api.pages(API, {"limit": 500}))


def _find(api: _remote.Client, ref: str) -> dict[str, Any]:
    """The playbook ``ref`` names (exit 1 when none, 2 when ambiguous)."""
    playbooks = _everything(api)
    chosen = _remote.pick(ref, [(p["id"], p["name"]) for p in playbooks], "playbook")
    return next(p for p in playbooks if p["id"] == chosen)


def _by_name(api: _remote.Client, name: str) -> dict[str, Any] | None:
    return next((p for p in _everything(api) if p["name"] == name), None)


def _read(file: str, name: str | None) -> tuple[str, str, str]:
    """(the playbook's name, the file's text, how to call the file)."""
    if file == "-":
        if not name:
            raise fail("reading standard input: give the playbook's name with --name", EXIT_USAGE)
        return name, sys.stdin.read(), "<stdin>"
    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise fail(f"{file}: no such file", EXIT_USAGE) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}", EXIT_USAGE) from exc
    return name or path.stem, text, file


@app.command("list")
def list_playbooks(output: Output = OUTPUT) -> None:
    """The playbooks by name, with their latest version.

    \b
    Examples:
      tgfleet playbook list
      tgfleet playbook list -o json
    """
    with _remote.client("playbook list") as api:
        items = _everything(api)
    emit(items, COLUMNS, output, empty="no playbooks yet: `tgfleet playbook apply FILE` adds one")


@app.command("show")
def show(
    ref: str = _REF,
    version: int | None = typer.Option(
        None, "--version", min=1, metavar="N", help="this version, not the latest"
    ),
    source: bool = typer.Option(False, "--source", help="print only the YAML, exactly as saved"),
    output: Output = OUTPUT,
) -> None:
    """One playbook: its name, id, version, who saved it, and its YAML source.

    \b
    Examples:
      tgfleet playbook show support-faq
      tgfleet playbook show support-faq --version 2 --source > support-faq.yaml
    """
    with _remote.client("playbook show") as api:
        found = _find(api, ref)
        shown = api.get(f"{API}/{found['id']}")
        if version is not None:
            shown = api.get(f"{API}/{found['id']}/versions/{version}")
    if source:
        sys.stdout.write(shown["source"])
        return
    if output in {Output.JSON, Output.YAML}:
        dump(shown, output)
        return
    detail({**found, **shown}, DETAIL, output)
    console.print()
    _print_source(shown["source"])


def _print_source(text: str) -> None:
    if console.is_terminal:
        from rich.syntax import Syntax

        console.print(Syntax(text, "yaml", background_color="default"))
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command("versions")
def versions(ref: str = _REF, output: Output = OUTPUT) -> None:
    """A playbook's versions, newest first (`show --version N` prints one).

    \b
    Examples:
      tgfleet playbook versions support-faq
    """
    with _remote.client("playbook versions") as api:
        found = _find(api, ref)
        items = list(api.pages(f"{API}/{found['id']}/versions", {"limit": 500}))
    emit(items, VERSIONS, output)


@app.command("apply")
def apply(
    file: str = _FILE,
    name: str | None = _NAME,
    description: str | None = typer.Option(
        None, "--description", help="the playbook's description (default: kept)"
    ),
) -> None:
    """Create the playbook from FILE, or save FILE as its next version. The server checks
    the file first: each problem is one line naming the YAML line and the field (exit 1,
    nothing saved). The same text as the latest version saves nothing.

    \b
    Examples:
      tgfleet playbook apply support-faq.yaml
      tgfleet playbook apply rules.yaml --name support-faq
      cat support-faq.yaml | tgfleet playbook apply - --name support-faq
    """
    name, text, where = _read(file, name)
    with _remote.client("playbook apply") as api:
        existing = _by_name(api, name)
        if existing is None:
            body: dict[str, Any] = {"name": name, "source": text}
            if description is not None:
                body["description"] = description
            response = api.request("POST", API, json_body=body, expect=(201, 422))
            saved = _saved(api, response, where)
            console.print(f"playbook {name} created: version {saved['latest_version']}")
            return
        current = api.get(f"{API}/{existing['id']}")
        unchanged_text = current["source"] == text
        if unchanged_text and description in {None, current["description"]}:
            console.print(f"playbook {name} unchanged (version {current['latest_version']})")
            return
        response = api.request(
            "PUT",
            f"{API}/{existing['id']}",
            json_body={"source": text, "description": description},
            expect=(200, 409, 422),
        )
        if response.status_code == 409:
            console.print(f"playbook {name} unchanged (version {current['latest_version']})")
            return
        saved = _saved(api, response, where)
    if saved["latest_version"] == current["latest_version"]:
        console.print(f"playbook {name}: description updated (version {saved['latest_version']})")
    else:
        console.print(f"playbook {name} updated: version {saved['latest_version']}")


def _saved(api: _remote.Client, response: Any, where: str) -> dict[str, Any]:
    """The saved playbook, or the end of the command with each of the API's problems on
    its own line, prefixed with the file (exit 1)."""
    if response.status_code != 422:
        saved: dict[str, Any] = response.json()
        return saved
    try:
        problems = str(response.json()["detail"]).splitlines() or ["refused"]
    except (ValueError, KeyError, TypeError):
        api.fail_with(_remote.ApiError(422, "", "the server refused the playbook"))
    for problem in problems[:-1]:
        fail(f"{where}: {problem}")  # printed; the last one ends the command
    raise fail(f"{where}: {problems[-1]}", EXIT_FAILED)


@app.command("diff")
def diff(file: str = _FILE, name: str | None = _NAME) -> None:
    """Show how FILE differs from the server's latest version (unified diff). Exit 0:
    the same; 1: they differ or the playbook does not exist yet (like `diff`).

    \b
    Examples:
      tgfleet playbook diff support-faq.yaml && echo "up to date"
      tgfleet playbook diff rules.yaml --name support-faq
    """
    name, text, where = _read(file, name)
    with _remote.client("playbook diff") as api:
        existing = _by_name(api, name)
        current = api.get(f"{API}/{existing['id']}") if existing is not None else None
    server_text = current["source"] if current is not None else ""
    label = (
        f"{name} (server, version {current['latest_version']})"
        if current is not None
        else f"{name} (not on the server)"
    )
    lines = list(
        difflib.unified_diff(
            server_text.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=label,
            tofile=where,
        )
    )
    if not lines:
        return
    _print_diff(lines)
    raise typer.Exit(EXIT_FAILED)


def _print_diff(lines: list[str]) -> None:
    if not console.is_terminal:
        for line in lines:
            sys.stdout.write(
                line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            )
        return
    from rich.markup import escape

    styles = {"+": "green", "-": "red", "@": "cyan"}
    for line in lines:
        text = escape(line.rstrip("\n"))
        style = None if line.startswith(("+++", "---")) else styles.get(line[:1])
        console.print(f"[{style}]{text}[/{style}]" if style else text, highlight=False)


@app.command("dry-run")
def dry_run(
    ref: str = _REF,
    text: str = typer.Option(..., "--text", "-t", help="the message's text"),
    version: int | None = typer.Option(
        None, "--version", min=1, metavar="N", help="default: the latest"
    ),
    chat_id: int | None = typer.Option(
        None, "--chat-id", metavar="CHAT_ID", help="the group the message is in"
    ),
    sender: str | None = typer.Option(None, "--sender", help="the sender's first name"),
    mention: bool = typer.Option(False, "--mention", help="the message mentions the account"),
    reply_to_me: bool = typer.Option(
        False, "--reply-to-me", help="the message replies to the account"
    ),
    output: Output = OUTPUT,
) -> None:
    """What the playbook would answer to a message (the API's dry run: no rate limits,
    no probability, nothing sent; an LLM rule asks the configured model).

    \b
    Examples:
      tgfleet playbook dry-run support-faq --text "how much is shipping?"
      tgfleet playbook dry-run support-faq --text "hi" --mention -o json
    """
    message: dict[str, Any] = {
        "text": text,
        "mentions_account": mention,
        "reply_to_account": reply_to_me,
    }
    if chat_id is not None:
        message["chat_id"] = chat_id
    if sender is not None:
        message["sender_first_name"] = sender
    with _remote.client("playbook dry-run") as api:
        found = _find(api, ref)
        answer = api.post(f"{API}/{found['id']}/dry-run", {"version": version, "message": message})
    if output in {Output.JSON, Output.YAML}:
        dump(answer, output)
        return
    detail(answer, DRY_RUN, output)
