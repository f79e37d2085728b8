"""``tgfleet account``: the accounts under management, through the server's API.

``list`` shows what each account is doing (the observed state, why, on which worker),
``show``, ``events`` and ``groups`` one account, and ``start``/``stop``/``restart`` act on
accounts named by REF or selected by a filter (a preview first, then a confirmation).

A REF is an account's full id, a unique prefix of it (at least 6 characters), or its exact
label. With no server chosen, ``list`` reads the database directly (on the server's host);
the other commands need the API (`tgfleet login`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Group as RenderGroup
from rich.console import RenderableType
from rich.text import Text

from tgfleet.cli import _remote
from tgfleet.cli._account_view import (
    COLUMNS,
    EVENT_COLUMNS,
    FIELDS,
    MATCH_COLUMNS,
    Sort,
    State,
)
from tgfleet.cli._complete import account_labels
from tgfleet.cli._output import (
    INTERVAL,
    OUTPUT,
    WATCH,
    YES,
    Column,
    Output,
    confirm,
    detail,
    emit,
    render,
    table,
    watch,
)
from tgfleet.cli._runtime import EXIT_USAGE, console, err_console, fail

if TYPE_CHECKING:
    from tgfleet.cli._remote import Client

app = typer.Typer(help="Accounts: list, inspect, start, stop.", no_args_is_help=True)

ACCOUNTS = "/api/v1/accounts"
#: One listing: the items and the counts per state.
Fetch = Callable[[], tuple[list[dict[str, Any]], dict[str, int]]]
#: The API's largest page.
PAGE = 500
#: Accounts a REF's lookup reads (an id prefix of 6+ characters names a handful at most).
REF_CANDIDATES = 50


# ------------------------------------------------------------------------------ options

STATES: Any = typer.Option(None, "--state", help="observed state (repeat for several)")
LABEL: Any = typer.Option(
    None,
    "--label",
    "-l",
    metavar="PREFIX",
    help="label prefix (case-insensitive)",
    autocompletion=account_labels,
)
QUERY: Any = typer.Option(None, "--query", "-q", help="part of the label, username or phone")
WORKERS: Any = typer.Option(
    None, "--worker", metavar="ID", help="the worker that last reported it (repeat)"
)
GROUPS: Any = typer.Option(
    None, "--group", metavar="CHAT_ID", help="accounts in this group: a chat id (repeat)"
)


REFS: Any = typer.Argument(
    None,
    help="account ids, unique id prefixes (6+ characters) or labels",
    show_default=False,
    autocompletion=account_labels,
)
REF: Any = typer.Argument(
    ...,
    help="an account's id, a unique id prefix (6+ characters) or its label",
    autocompletion=account_labels,
)


def _filter(
    states: Sequence[State] | None,
    label: str | None,
    query: str | None,
    workers: Sequence[str] | None,
    groups: Sequence[int] | None,
) -> dict[str, Any]:
    """The filter as the API's field names, only those given."""
    given: dict[str, Any] = {
        "state": [s.value for s in states or ()],
        "label": label or None,
        "q": query or None,
        "worker": list(workers or ()),
        "group": list(groups or ()),
    }
    return {name: value for name, value in given.items() if value}


def _describe(wanted: Mapping[str, Any]) -> str:
    return " ".join(
        f"{name}={','.join(map(str, value)) if isinstance(value, list) else value}"
        for name, value in wanted.items()
    )


# ------------------------------------------------------------------------------ list


@app.command("list")
def list_accounts(
    states: list[State] | None = STATES,
    label: str | None = LABEL,
    query: str | None = QUERY,
    workers: list[str] | None = WORKERS,
    groups: list[int] | None = GROUPS,
    sort: Sort = typer.Option(Sort.LABEL, "--sort", help="'-' first reverses"),
    limit: int | None = typer.Option(
        None, "--limit", min=1, metavar="N", help="at most this many (default: every page)"
    ),
    output: Output = OUTPUT,
    watching: bool = WATCH,
    interval: float = INTERVAL,
) -> None:
    """The accounts: what each is doing (observed state), why, on which worker, since when.

    A summary of the counts per state follows the table on a terminal (on stderr).
    Without a server (no context, --server or TGFLEET_SERVER) it reads the database
    directly, on the server's host.

    \b
    Examples:
      tgfleet account list --state error --state quarantined
      tgfleet account list --label fleet_00 -o wide
      tgfleet account list --worker worker-1 --sort -since --limit 20
      tgfleet account list -o json | jq -r '.[].id'
      tgfleet account list --watch
    """
    wanted = _filter(states, label, query, workers, groups)
    if watching and output in {Output.JSON, Output.YAML}:
        raise fail("--watch prints tables: use -o table or -o wide", EXIT_USAGE)
    chosen = _remote.target()
    with contextlib.ExitStack() as stack:
        if chosen is None:
            fetch: Fetch = lambda: _local_listing(wanted, sort.value, limit)  # noqa: E731
        else:
            api = stack.enter_context(_remote.Client(chosen))
            fetch = lambda: _listing(api, wanted, sort.value, limit)  # noqa: E731
        if watching:

            def once() -> RenderableType:
                items, counts = fetch()
                grid = table(items, COLUMNS, wide=output is Output.WIDE)
                return RenderGroup(grid, Text(_summary(items, counts), style="dim"))

            watch(once, interval)
            return
        items, counts = fetch()
    emit(items, COLUMNS, output, empty="no accounts match" if wanted else "no accounts")
    if output in {Output.TABLE, Output.WIDE} and console.is_terminal and items:
        err_console.print(_summary(items, counts), style="dim", highlight=False)


def _summary(items: Sequence[Mapping[str, Any]], counts: Mapping[str, int]) -> str:
    """``20 shown; online 18, error 1, stopped 1`` (the states with accounts)."""
    by_state = ", ".join(f"{state} {count}" for state, count in counts.items() if count)
    return f"{len(items)} shown; {by_state or 'no accounts'}"


def _listing(
    api: Client, wanted: Mapping[str, Any], sort: str, limit: int | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The items (every page, or the first ``limit``) and the first page's counts."""
    params: dict[str, Any] = {**wanted, "sort": sort, "limit": min(limit or PAGE, PAGE)}
    items: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    while True:
        page = api.get(ACCOUNTS, **params)
        counts = counts or page.get("counts") or {}
        items += page["items"]
        if page.get("next_cursor") is None or (limit is not None and len(items) >= limit):
            return (items[:limit] if limit else items), counts
        params["cursor"] = page["next_cursor"]


def _local_listing(
    wanted: Mapping[str, Any], sort: str, limit: int | None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The same items the API gives (``AccountRead``), from the database directly."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from tgfleet.account import service as account_service
    from tgfleet.account.endpoints import account_read
    from tgfleet.cli._local import load_settings, run_in_session
    from tgfleet.lease import service as lease_service
    from tgfleet.vault import service as vault_service

    settings = load_settings()

    async def work(session: AsyncSession) -> tuple[list[dict[str, Any]], dict[str, int]]:
        items: list[dict[str, Any]] = []
        counts: dict[str, int] | None = None
        cursor: str | None = None
        while True:
            page = await account_service.list_accounts(
                session,
                cursor=cursor,
                limit=min(limit or PAGE, PAGE),
                q=wanted.get("q"),
                label=wanted.get("label"),
                states=wanted.get("state", ()),
                workers=wanted.get("worker", ()),
                groups=wanted.get("group", ()),
                sort=sort,
                with_counts=counts is None,
            )
            counts = counts if counts is not None else page.counts or {}
            ids = [a.id for a in page.items]
            secrets = await vault_service.summaries(session, ids)
            holders = await lease_service.holders(session, ids)
            items += [
                account_read(
                    a, page.statuses.get(a.id), secrets.get(a.id), holders.get(a.id)
                ).model_dump(mode="json")
                for a in page.items
            ]
            if page.next_cursor is None or (limit is not None and len(items) >= limit):
                return (items[:limit] if limit else items), counts
            cursor = page.next_cursor

    return run_in_session(settings, work, read_only=True)


# ------------------------------------------------------------------------------ one account


def looks_like_id(ref: str) -> bool:
    """Whether ``ref`` can start an id's text (hex digits, dashes where an id has them):
    only then is it sent as ``id_prefix`` (the API refuses anything else)."""
    template = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    text = ref.lower()
    return 0 < len(text) <= len(template) and all(
        char == "-" if shape == "-" else char in "0123456789abcdef"
        for char, shape in zip(text, template, strict=False)
    )


def resolve(api: Client, ref: str) -> dict[str, Any]:
    """The account ``ref`` names (the API's ``AccountRead``), in one request: an id or a
    prefix of 6+ characters through ``id_prefix``, else the exact label. A too short or
    ambiguous prefix exits 2, no match 1 (`_remote.pick`)."""
    ref = ref.strip()
    candidates: list[dict[str, Any]] = []
    if looks_like_id(ref) and len(ref) >= _remote.MIN_PREFIX:
        candidates = api.get(ACCOUNTS, id_prefix=ref, limit=REF_CANDIDATES)["items"]
    if not candidates:
        # a label (its prefix filter is case-insensitive: keep the exact one)
        found = api.get(ACCOUNTS, label=ref, limit=REF_CANDIDATES)["items"]
        candidates = [item for item in found if item["label"] == ref]
    if not candidates and (len(ref) >= _remote.MIN_PREFIX or not looks_like_id(ref)):
        raise fail(f"no account with id or label {ref!r}", 1)
    if not candidates:
        raise fail(
            f"no account is labelled {ref!r}, and an id prefix needs at least "
            f"{_remote.MIN_PREFIX} characters",
            EXIT_USAGE,
        )
    chosen = _remote.pick(ref, [(str(c["id"]), str(c["label"])) for c in candidates], "account")
    return next(c for c in candidates if c["id"] == chosen)


@app.command("show")
def show(ref: str = REF, output: Output = OUTPUT) -> None:
    """One account: its observed status, desired state, session and counters.

    \b
    Examples:
      tgfleet account show fleet_0001
      tgfleet account show 1a6f7b97 -o json
    """
    with _remote.client("account show") as api:
        detail(resolve(api, ref), FIELDS, output)


@app.command("events")
def events(
    ref: str = REF,
    limit: int = typer.Option(50, "--limit", min=1, help="at most this many, newest first"),
    kind: str | None = typer.Option(None, "--kind", help="only this kind (state, command...)"),
    output: Output = OUTPUT,
) -> None:
    """The account's timeline, newest first: state changes, errors, flood waits, commands.

    \b
    Examples:
      tgfleet account events fleet_0001
      tgfleet account events fleet_0001 --kind command --limit 10 -o json
    """
    with _remote.client("account events") as api:
        account = resolve(api, ref)
        items: list[dict[str, Any]] = []
        path = f"{ACCOUNTS}/{account['id']}/events"
        for item in api.pages(path, {"limit": min(limit, PAGE), "kind": kind}):
            items.append(item)
            if len(items) >= limit:
                break
    emit(items, EVENT_COLUMNS, output, empty=f"no events for {account['label']}")


@app.command("groups")
def groups(ref: str = REF, output: Output = OUTPUT) -> None:
    """The account's groups: whether it replies in each, with which playbook.

    \b
    Examples:
      tgfleet account groups fleet_0001
      tgfleet account groups fleet_0001 -o json
    """
    with _remote.client("account groups") as api:
        account = resolve(api, ref)
        items = list(api.pages(f"{ACCOUNTS}/{account['id']}/groups", {"limit": PAGE}))
        names = _playbook_names(api) if any(i.get("playbook_id") for i in items) else {}
    columns = (
        Column("chat id", "chat_id", key=True),
        Column("title", "title"),
        Column("enabled", "enabled", style=lambda on: "green" if on else None),
        Column(
            "playbook",
            lambda g: names.get(str(g.get("playbook_id")), g.get("playbook_id")),
            key=True,
        ),
        Column("version", _pinned),
        Column("disabled", "disabled_reason"),
        Column("playbook id", "playbook_id", wide=True),
        Column("disabled at", "disabled_at", wide=True),
        Column("updated", "updated_at", wide=True),
    )
    emit(items, columns, output, empty=f"{account['label']} is in no known group")


def _pinned(group: Mapping[str, Any]) -> str:
    """The pinned playbook version, or ``latest`` when the group follows it."""
    if group.get("playbook_version"):
        return str(group["playbook_version"])
    return "latest" if group.get("playbook_id") else ""


def _playbook_names(api: Client) -> dict[str, str]:
    """Playbook id -> name, from the first page of the playbooks (none when not allowed)."""
    response = api.request("GET", "/api/v1/playbooks", params={"limit": PAGE}, expect=(200, 403))
    if response.status_code != 200:
        return {}
    return {str(p["id"]): str(p["name"]) for p in response.json().get("items", [])}


# ------------------------------------------------------------------------------ actions


def _act(
    action: str,
    refs: Sequence[str] | None,
    wanted: Mapping[str, Any],
    everything: bool,
    yes: bool,
) -> None:
    """Start, stop or restart: REFs in one bulk call by ids; a filter (or --all) after a
    preview (a dry run) and a confirmation."""
    if refs and (wanted or everything):
        raise fail("give account REFs or a filter (or --all), not both", EXIT_USAGE)
    if everything and wanted:
        raise fail("--all selects every account: give it without a filter", EXIT_USAGE)
    if not refs and not wanted and not everything:
        raise fail(
            f"name the accounts to {action}: REFs, a filter (--label, --state, -q, --worker, "
            "--group) or --all for every account",
            EXIT_USAGE,
        )
    with _remote.client(f"account {action}") as api:
        if refs:
            accounts = {a["id"]: a for a in (resolve(api, ref) for ref in refs)}
            result = api.post(f"{ACCOUNTS}/bulk", {"ids": list(accounts), "action": action})
            labels = ", ".join(a["label"] for a in accounts.values())
            console.print(
                f"{action} requested for {labels} ({_changed(result)})",
                highlight=False,
                soft_wrap=True,
            )
            return
        selection = {"all": True} if everything else dict(wanted)
        preview = api.post(
            f"{ACCOUNTS}/bulk", {"filter": selection, "action": action, "dry_run": True}
        )
        matched = int(preview["matched"])
        described = "every account" if everything else _describe(wanted)
        if matched == 0:
            console.print(f"no account matches {described}: nothing to {action}", highlight=False)
            return
        _preview(action, matched, described, preview.get("sample") or [])
        confirm(f"{action.capitalize()} {_accounts(matched)}?", yes=yes)
        result = api.post(f"{ACCOUNTS}/bulk", {"filter": selection, "action": action})
    console.print(
        f"{action}: {_accounts(int(result['matched']))} matched ({_changed(result)})",
        highlight=False,
    )


def _preview(action: str, matched: int, described: str, sample: list[dict[str, Any]]) -> None:
    console.print(f"{action} would apply to {_accounts(matched)} ({described}):", highlight=False)
    render(table(sample, MATCH_COLUMNS, wide=False))
    if matched > len(sample):
        console.print(f"... and {matched - len(sample)} more", highlight=False)


def _accounts(count: int) -> str:
    return f"{count} account" if count == 1 else f"{count} accounts"


def _changed(result: Mapping[str, Any]) -> str:
    changed = int(result["changed"])
    if result["action"] == "restart":
        return f"{changed} restarted"
    desired = "running" if result["action"] == "start" else "stopped"
    return f"{changed} now desired {desired}, {int(result['matched']) - changed} already were"


ALL: Any = typer.Option(False, "--all", help="every account (no filter, no REFs)")


def _action_command(action: str, summary: str, example: str) -> None:
    def command(
        refs: list[str] | None = REFS,
        states: list[State] | None = STATES,
        label: str | None = LABEL,
        query: str | None = QUERY,
        workers: list[str] | None = WORKERS,
        groups: list[int] | None = GROUPS,
        everything: bool = ALL,
        yes: bool = YES,
    ) -> None:
        _act(action, refs, _filter(states, label, query, workers, groups), everything, yes)

    command.__doc__ = f"""{summary}

    By REFs (no question asked), or by a filter or --all: a preview of the accounts it
    selects first, then a confirmation (--yes skips it; without a terminal it is needed).

    \b
    Examples:
      tgfleet account {action} fleet_0001 fleet_0002
      tgfleet account {action} {example}
    """
    app.command(action)(command)


_action_command(
    "start", "Ask the workers to run these accounts.", "--state stopped --label eu_ --yes"
)
_action_command("stop", "Ask the workers to stop these accounts.", "--label fleet_00 --yes")
_action_command(
    "restart",
    "Restart these accounts' clients, whatever their state.",
    "--state error --state quarantined",
)
