"""``tgfleet group``: the fleet's groups and replies switched on or off in bulk, against a
real ``tgfleet run --demo`` server (20 accounts, each in the demo's 5 groups)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from tests.cli.remote.conftest import DEMO_ACCOUNTS, Cli, DemoServer

DEMO_GROUPS = 5


def every(api: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a paginated listing."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = api.get(path, params={**params, "cursor": cursor} if cursor else params)
        answer.raise_for_status()
        items += answer.json()["items"]
        cursor = answer.json()["next_cursor"]
        if not cursor:
            return items


def settings_by_label(api: httpx.Client, chat_id: int) -> dict[str, dict[str, Any]]:
    """Each account's setting for ``chat_id``, by label, from ``/accounts/{id}/groups``."""
    found: dict[str, dict[str, Any]] = {}
    for account in every(api, "/api/v1/accounts"):
        for group in every(api, f"/api/v1/accounts/{account['id']}/groups"):
            if group["chat_id"] == chat_id:
                found[account["label"]] = group
    return found


def test_list_shows_each_group_with_its_accounts(demo_server: DemoServer, operator: Cli) -> None:
    """The five demo groups, each counted as the accounts' own group settings count them;
    ``-o json`` is the API's listing, and piped rows carry whole chat ids and titles."""
    with demo_server.api() as api:
        per_chat: Counter[int] = Counter()
        for account in every(api, "/api/v1/accounts"):
            per_chat.update(
                g["chat_id"] for g in every(api, f"/api/v1/accounts/{account['id']}/groups")
            )
        from_api = every(api, "/api/v1/groups")
    listed = operator.json("group", "list")
    assert listed == from_api
    assert len(listed) == DEMO_GROUPS
    assert {g["chat_id"]: g["accounts"] for g in listed} == dict(per_chat)
    assert all(g["accounts"] == DEMO_ACCOUNTS for g in listed)
    assert all(len(g["playbooks"]) == 1 for g in listed)
    piped = operator.run("group", "list", COLUMNS="40")
    assert piped.returncode == 0, piped.stderr
    rows = piped.stdout.splitlines()
    assert rows[0].split()[:2] == ["CHAT", "ID"]
    for group, row in zip(listed, rows[1:], strict=True):
        assert row.split()[0] == str(group["chat_id"])
        assert group["title"] in row
        assert group["playbooks"][0]["name"] in row


def test_disable_by_label_prefix_after_confirmation(demo_server: DemoServer, operator: Cli) -> None:
    """Without --yes a script is refused (exit 2) and nothing changes; with --yes replies
    go off in that group for exactly the accounts whose label has the prefix, and enable
    turns two named accounts back on with a pinned playbook version."""
    with demo_server.api() as api:
        group = every(api, "/api/v1/groups")[0]
        chat = group["chat_id"]
        before = settings_by_label(api, chat)
    assert len(before) == DEMO_ACCOUNTS
    assert all(setting["enabled"] for setting in before.values())
    chosen = {label for label in before if label.startswith("fleet_001")}
    assert 0 < len(chosen) < DEMO_ACCOUNTS

    refused = operator.run("group", "disable", str(chat), "--label", "fleet_001")
    assert refused.returncode == 2, refused.stderr
    assert "--yes" in refused.stderr
    assert f"{len(chosen)} account(s)" in refused.stdout  # the preview was shown
    with demo_server.api() as api:
        assert all(s["enabled"] for s in settings_by_label(api, chat).values())

    done = operator.ok("group", "disable", str(chat), "--label", "fleet_001", "--yes")
    assert f"disabled replies in {len(chosen)} group setting(s) of {len(chosen)} account" in done
    with demo_server.api() as api:
        after = settings_by_label(api, chat)
        playbooks = {p["name"]: p for p in every(api, "/api/v1/playbooks")}
    assert {label for label, s in after.items() if not s["enabled"]} == chosen
    assert all(after[label]["disabled_reason"] == "operator" for label in chosen)

    first, second = sorted(chosen)[:2]
    in_use = group["playbooks"][0]["id"]
    other = next(name for name, p in playbooks.items() if p["id"] != in_use)
    prefix = after[second]["account_id"][:8]
    operator.ok(
        "group",
        "enable",
        str(chat),
        "--account",
        first,
        "--account",
        prefix,
        "--playbook",
        other,
        "--version",
        "1",
        "--yes",
    )
    with demo_server.api() as api:
        again = settings_by_label(api, chat)
    assert {label for label, s in again.items() if not s["enabled"]} == chosen - {first, second}
    for label in (first, second):
        assert (again[label]["playbook_id"], again[label]["playbook_version"]) == (
            playbooks[other]["id"],
            1,
        )


def test_a_viewer_cannot_switch_replies(demo_server: DemoServer, viewer: Cli) -> None:
    """The viewer's preview is refused: exit 4, the permission named, nothing written."""
    with demo_server.api() as api:
        chat = every(api, "/api/v1/groups")[-1]["chat_id"]
        before = settings_by_label(api, chat)
    done = viewer.run("group", "disable", str(chat), "--all-accounts", "--yes")
    assert done.returncode == 4, done.stderr
    assert "account:write" in done.stderr
    with demo_server.api() as api:
        assert settings_by_label(api, chat) == before


def test_without_a_server_it_says_how_to_log_in(cli: Cli) -> None:
    """No context: exit 2 and the login command."""
    done = cli.run("group", "list")
    assert done.returncode == 2
    assert "tgfleet login --server URL" in done.stderr
