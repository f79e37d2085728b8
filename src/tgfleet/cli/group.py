"""``tgfleet group``: the groups (chats) the fleet's accounts are in, and replies in them
switched on or off for many accounts at once, through the server's API.

``enable`` and ``disable`` preview first (the API's dry run: how many accounts match, how
many group settings would be written, the first accounts), ask, and only then write
(``--yes`` skips the question; a script without it is refused, exit 2, nothing written).

Chat ids are Telethon's marked ids, negative (``-1001500000001``): they are taken as
they are, without ``--`` before them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import typer

from tgfleet.cli import _remote
from tgfleet.cli._complete import account_labels, playbook_names
from tgfleet.cli._output import OUTPUT, YES, Column, Output, confirm, emit, render, table
from tgfleet.cli._runtime import EXIT_FAILED, EXIT_USAGE, console, fail

app = typer.Typer(
    help="Groups (chats) the accounts are in: list, switch replies on or off.",
    no_args_is_help=True,
)

#: Negative chat ids look like options to click: unknown "options" are kept as arguments.
_TAKES_CHAT_IDS = {"ignore_unknown_options": True}


def _playbooks(group: Mapping[str, Any]) -> str:
    found = group.get("playbooks") or []
    if len(found) == 1:
        return str(found[0]["name"])
    return ",".join(f"{p['name']}({p['accounts']})" for p in found)


COLUMNS = (
    Column("chat id", "chat_id", key=True),
    Column("title", "title"),
    Column("accounts", "accounts"),
    Column("replying", "enabled"),
    Column("playbooks", _playbooks, key=True),
    Column("playbook ids", lambda g: [p["id"] for p in g.get("playbooks") or []], wide=True),
)


@app.command("list")
def list_groups(
    q: str | None = typer.Option(
        None, "--query", "-q", metavar="TEXT", help="part of the title (any case)"
    ),
    enabled: bool | None = typer.Option(
        None,
        "--enabled/--disabled",
        help="only the settings with replies on (or off)",
        show_default=False,
    ),
    label: str | None = typer.Option(
        None,
        "--label",
        "-l",
        metavar="PREFIX",
        help="only the accounts whose label starts with this",
    ),
    output: Output = OUTPUT,
) -> None:
    """Every group the fleet's accounts are in: chat id, title, how many accounts are in
    it, how many of them reply, and their playbooks (with how many accounts use each when
    there are several). Filters keep the matching settings and count only those.

    \b
    Examples:
      tgfleet group list
      tgfleet group list -q support --enabled
      tgfleet group list --label fleet_00 -o json
    """
    with _remote.client("group list") as api:
        query = {"q": q, "enabled": enabled, "label": label, "limit": 500}
        items = list(api.pages("/api/v1/groups", query))
    emit(items, COLUMNS, output, empty="no groups match")


def _chat_ids(api: _remote.Client, refs: Sequence[str]) -> list[int]:
    """Marked chat ids as given, or the one group whose title is exactly ``ref``."""
    found: list[int] = []
    for ref in refs:
        try:
            found.append(int(ref))
            continue
        except ValueError:
            pass
        titled = [
            g["chat_id"] for g in api.pages("/api/v1/groups", {"q": ref}) if g["title"] == ref
        ]
        if len(titled) != 1:
            problem = "no group has" if not titled else f"{len(titled)} groups have"
            raise fail(
                f"{ref!r} is not a chat id, and {problem} that title "
                "(`tgfleet group list` shows both)",
                EXIT_USAGE,
            )
        found.append(titled[0])
    return list(dict.fromkeys(found))


def _account_ids(api: _remote.Client, refs: Sequence[str]) -> list[str]:
    """Each account ref as an id: the full id, an id prefix of 6+ characters or an exact
    label, one request each (`tgfleet.cli.account.resolve`)."""
    from tgfleet.cli.account import resolve

    return list(dict.fromkeys(str(resolve(api, ref)["id"]) for ref in refs))


def _playbook_id(api: _remote.Client, ref: str) -> str:
    playbooks = [(p["id"], p["name"]) for p in api.pages("/api/v1/playbooks", {})]
    return _remote.pick(ref, playbooks, "playbook")


def _selection(
    api: _remote.Client,
    *,
    accounts: Sequence[str],
    label: str | None,
    states: Sequence[str],
    q: str | None,
    all_accounts: bool,
) -> tuple[dict[str, Any], str]:
    """The accounts part of the bulk body, and how to say it."""
    by_filter = bool(label or states or q)
    if sum((bool(accounts), by_filter, all_accounts)) != 1:
        raise fail(
            "choose the accounts one way: --account REF..., a filter (--label, --state, -q) "
            "or --all-accounts",
            EXIT_USAGE,
        )
    if accounts:
        return {"ids": _account_ids(api, accounts)}, f"{len(accounts)} named account(s)"
    if all_accounts:
        return {"filter": {"all": True}}, "every account"
    wanted: dict[str, Any] = {}
    said = []
    if label:
        wanted["label"] = label
        said.append(f"label {label}*")
    if states:
        wanted["state"] = list(states)
        said.append("state " + "|".join(states))
    if q:
        wanted["q"] = q
        said.append(f"matching {q!r}")
    return {"filter": wanted}, "accounts with " + ", ".join(said)


def _switch(
    *,
    enable: bool,
    chats: Sequence[str],
    all_groups: bool,
    accounts: Sequence[str],
    label: str | None,
    states: Sequence[str],
    q: str | None,
    all_accounts: bool,
    playbook: str | None,
    version: int | None,
    create: bool,
    yes: bool,
) -> None:
    verb = "enable" if enable else "disable"
    if bool(chats) == all_groups:
        raise fail("give the chat ids, or --all-groups (not both)", EXIT_USAGE)
    if version is not None and playbook is None:
        raise fail("--version pins a version of a playbook: give --playbook too", EXIT_USAGE)
    if playbook is not None and not enable:
        raise fail("--playbook is for enable (disabling keeps each group's playbook)", EXIT_USAGE)
    with _remote.client(f"group {verb}") as api:
        selection, who = _selection(
            api, accounts=accounts, label=label, states=states, q=q, all_accounts=all_accounts
        )
        body: dict[str, Any] = {
            **selection,
            "enabled": enable,
            "create": create,
        }
        if all_groups:
            body["all_groups"] = True
            where = "all their groups"
        else:
            chat_ids = _chat_ids(api, chats)
            body["chat_ids"] = chat_ids
            where = ("groups " if len(chat_ids) > 1 else "group ") + ", ".join(
                str(c) for c in chat_ids
            )
        with_playbook = ""
        if playbook is not None:
            body["playbook_id"] = _playbook_id(api, playbook)
            body["playbook_version"] = version
            pinned = f" version {version}" if version is not None else " (latest version)"
            with_playbook = f" with playbook {playbook}{pinned}"
        preview = api.post("/api/v1/accounts/groups/bulk", body | {"dry_run": True})
        if not preview["matched"]:
            raise fail(f"no account matches ({who}): nothing to {verb}", EXIT_FAILED)
        if not preview["groups"]:
            hint = " (--create adds them)" if enable and not all_groups else ""
            raise fail(
                f"none of the {preview['matched']} matched accounts is in {where}{hint}",
                EXIT_FAILED,
            )
        _show_preview(preview, verb=verb, where=where, with_playbook=with_playbook)
        confirm(f"{verb} replies in {preview['groups']} group setting(s)?", yes=yes)
        done = api.post("/api/v1/accounts/groups/bulk", body)
    created = f", {done['created']} created" if done["created"] else ""
    console.print(
        f"{verb}d replies in {done['groups']} group setting(s) of {done['matched']} "
        f"account(s){created}",
        highlight=False,
    )


_SAMPLE = (
    Column("label", "label", key=True),
    Column("id", "id", key=True),
    Column("state", "state"),
)


def _show_preview(preview: Mapping[str, Any], *, verb: str, where: str, with_playbook: str) -> None:
    created = f" ({preview['created']} new)" if preview["created"] else ""
    console.print(
        f"would {verb} replies{with_playbook} in {where}: {preview['groups']} group "
        f"setting(s){created} of {preview['matched']} account(s)",
        highlight=False,
        soft_wrap=True,
    )
    sample = preview.get("sample") or []
    render(table(sample, _SAMPLE, wide=False))
    if preview["matched"] > len(sample):
        console.print(f"... and {preview['matched'] - len(sample)} more account(s)")


_CHATS = typer.Argument(
    None,
    help="marked chat ids (e.g. -1001500000001) or exact group titles",
    show_default=False,
)
_ALL_GROUPS = typer.Option(False, "--all-groups", help="every group the accounts are in")
_ACCOUNTS = typer.Option(
    None,
    "--account",
    "-a",
    metavar="REF",
    help="an account: label, id or id prefix (repeat for more)",
    autocompletion=account_labels,
)
_LABEL = typer.Option(
    None,
    "--label",
    "-l",
    metavar="PREFIX",
    help="accounts whose label starts with this",
    autocompletion=account_labels,
)
_STATES = typer.Option(
    None, "--state", "-s", metavar="STATE", help="accounts in this observed state (repeatable)"
)
_Q = typer.Option(
    None, "--query", "-q", metavar="TEXT", help="accounts whose label, username or phone has this"
)
_ALL_ACCOUNTS = typer.Option(False, "--all-accounts", help="every account of the fleet")
_CREATE = typer.Option(False, "--create", help="add the chat ids an account is not in yet")


@app.command("enable", context_settings=_TAKES_CHAT_IDS)
def enable(
    chat_id: list[str] | None = _CHATS,  # one name per value: CHAT_ID... in the help
    all_groups: bool = _ALL_GROUPS,
    accounts: list[str] | None = _ACCOUNTS,
    label: str | None = _LABEL,
    states: list[str] | None = _STATES,
    q: str | None = _Q,
    all_accounts: bool = _ALL_ACCOUNTS,
    playbook: str | None = typer.Option(
        None,
        "--playbook",
        "-p",
        metavar="NAME|ID",
        help="reply with this playbook (name, id or id prefix); default: the one each group kept",
        autocompletion=playbook_names,
    ),
    version: int | None = typer.Option(
        None,
        "--version",
        min=1,
        metavar="N",
        help="pin this version of --playbook (default: the latest)",
    ),
    create: bool = _CREATE,
    yes: bool = YES,
) -> None:
    """Switch replies on in groups for the chosen accounts, after a preview.

    \b
    Examples:
      tgfleet group enable -1001500000001 --label fleet_00 --playbook support-faq
      tgfleet group enable -1001500000001 --account fleet_0001 --create -p support-faq --yes
      tgfleet group enable --all-groups --state online --yes
    """
    _switch(
        enable=True,
        chats=chat_id or [],
        all_groups=all_groups,
        accounts=accounts or [],
        label=label,
        states=states or [],
        q=q,
        all_accounts=all_accounts,
        playbook=playbook,
        version=version,
        create=create,
        yes=yes,
    )


@app.command("disable", context_settings=_TAKES_CHAT_IDS)
def disable(
    chat_id: list[str] | None = _CHATS,  # one name per value: CHAT_ID... in the help
    all_groups: bool = _ALL_GROUPS,
    accounts: list[str] | None = _ACCOUNTS,
    label: str | None = _LABEL,
    states: list[str] | None = _STATES,
    q: str | None = _Q,
    all_accounts: bool = _ALL_ACCOUNTS,
    yes: bool = YES,
) -> None:
    """Switch replies off in groups for the chosen accounts, after a preview. Each group
    keeps its playbook: `group enable` without --playbook turns it back on with it.

    \b
    Examples:
      tgfleet group disable -1001500000001 --label fleet_00
      tgfleet group disable --all-groups --account fleet_0001 --yes
    """
    _switch(
        enable=False,
        chats=chat_id or [],
        all_groups=all_groups,
        accounts=accounts or [],
        label=label,
        states=states or [],
        q=q,
        all_accounts=all_accounts,
        playbook=None,
        version=None,
        create=False,
        yes=yes,
    )
