"""``tgfleet account ...`` against a real ``tgfleet run --demo`` server: the listing, one
account, and start/stop by REF and by filter, checked through the API itself.

The demo runs 20 accounts, ``fleet_0001`` to ``fleet_0020``, all online. A test that stops
some starts them again (and waits until they are online) before it ends.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.remote.conftest import CLI_TIMEOUT, DEMO_ACCOUNTS, Cli, DemoServer
from tgfleet.account.schemas import AccountSort
from tgfleet.cli import _account_view as account_cli
from tgfleet.models import AccountState

ACCOUNTS = "/api/v1/accounts"
#: Seconds the demo's runtime may take to act on a desired state.
SETTLE = 30.0


def api_accounts(demo_server: DemoServer, **params: Any) -> list[dict[str, Any]]:
    with demo_server.api() as api:
        response = api.get(ACCOUNTS, params={"limit": 500, **params})
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def by_label(demo_server: DemoServer) -> dict[str, dict[str, Any]]:
    return {item["label"]: item for item in api_accounts(demo_server)}


def wait_until(check: Callable[[], bool], what: str, within: float = SETTLE) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.3)  # polling another process's API


def all_online(demo_server: DemoServer, labels: set[str]) -> bool:
    accounts = by_label(demo_server)
    return all(accounts[label]["status"]["state"] == "online" for label in labels)


@pytest.fixture(autouse=True)
def settled(demo_server: DemoServer) -> None:
    """Every demo account online before a test (the runtime starts them after /readyz)."""
    wait_until(
        lambda: len(api_accounts(demo_server, state="online")) == DEMO_ACCOUNTS,
        "the demo's accounts online",
        within=60,
    )


@pytest.fixture
def restore(demo_server: DemoServer) -> Iterator[None]:
    """Start every account again after the test (through the API) and wait until all
    are online, so the next test sees the demo as it began."""
    yield
    with demo_server.api() as api:
        api.post(
            f"{ACCOUNTS}/bulk", json={"filter": {"all": True}, "action": "start"}
        ).raise_for_status()
    labels = set(by_label(demo_server))
    wait_until(lambda: all_online(demo_server, labels), "every account online again")


# ------------------------------------------------------------------------------ list


def test_piped_list_prints_whole_ids_and_json_is_the_apis_items(
    demo_server: DemoServer, operator: Cli
) -> None:
    before = {a["id"]: a for a in api_accounts(demo_server)}
    table = operator.ok("account", "list")
    listed = operator.json("account", "list")
    after = {a["id"]: a for a in api_accounts(demo_server)}
    assert len(before) == DEMO_ACCOUNTS
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "LABEL", "STATE", "REASON", "WORKER", "SINCE"]
    for account_id, account in before.items():
        assert len(account_id) == 36
        row = next(line for line in lines if line.startswith(account_id))
        assert row.split()[1] == account["label"]  # a whole id, then its label
    assert [a["id"] for a in listed] == sorted(before, key=lambda i: before[i]["label"])
    for item in listed:
        assert item["label"] == before[item["id"]]["label"]
        assert item["status"]["state"] in {
            before[item["id"]]["status"]["state"],
            after[item["id"]]["status"]["state"],
        }
        assert set(item) == set(before[item["id"]])  # the API's shape, unchanged


def test_state_filter_limit_and_the_viewer(demo_server: DemoServer, viewer: Cli) -> None:
    online = viewer.json("account", "list", "--state", "online")
    assert online, "the demo's accounts are online"
    assert {a["status"]["state"] for a in online} == {"online"}
    assert viewer.json("account", "list", "--state", "quarantined") == []
    first = viewer.json("account", "list", "--limit", "3", "--sort", "-label")
    assert [a["label"] for a in first] == ["fleet_0020", "fleet_0019", "fleet_0018"]
    wide = viewer.ok("account", "list", "--label", "fleet_0007", "-o", "wide")
    header, row = wide.splitlines()
    assert header.split()[-6:] == ["USER", "ID", "USERNAME", "DC", "DESIRED", "SESSION"]
    assert row.split()[-4:] == ["fleet_0007", "2", "running", "active"]
    none = viewer.run("account", "list", "--label", "nobody")
    assert (none.returncode, none.stdout, none.stderr) == (0, "", "no accounts match\n")


def test_watch_redraws_until_interrupted(demo_server: DemoServer, operator: Cli) -> None:
    """Piped, --watch prints one timestamped table per refresh; Ctrl-C ends it with 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tgfleet", "account", "list", "-w", "--interval", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=operator.env(),
    )
    assert process.stdout is not None
    stamps = 0
    seen: list[str] = []
    deadline = time.monotonic() + CLI_TIMEOUT
    while stamps < 2 and time.monotonic() < deadline:
        line = process.stdout.readline()
        seen.append(line)
        stamps += line.startswith("# ")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=CLI_TIMEOUT) == 0, process.stderr.read() if process.stderr else ""
    assert stamps == 2, seen
    assert any(line.startswith("ID ") for line in seen)
    assert sum("fleet_0001" in line for line in seen) >= 1
    assert any(line.startswith("20 shown; ") for line in seen)


def test_local_mode_reads_the_database_with_the_same_items(
    demo_server: DemoServer, tmp_path: Path
) -> None:
    """No server chosen: on the server's host `account list` reads the database and prints
    the API's shape (the observed state, not the desired one)."""
    home = tmp_path / "no-config"
    home.mkdir()
    env = {**demo_server.server_env, "XDG_CONFIG_HOME": str(home)}

    def local(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "tgfleet", "account", "list", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    items = json.loads(local("--label", "fleet_000", "-o", "json"))
    remote = {a["id"]: a for a in api_accounts(demo_server, label="fleet_000")}
    assert [a["id"] for a in items] == list(remote)
    assert [a["label"] for a in items] == [f"fleet_000{n}" for n in range(1, 10)]
    assert all(set(item) == set(remote[item["id"]]) for item in items)
    table = local("--state", "online")
    assert table.splitlines()[0].split() == ["ID", "LABEL", "STATE", "REASON", "WORKER", "SINCE"]
    first = table.splitlines()[1].split()
    assert first[:3] == [remote[first[0]]["id"], "fleet_0001", "online"]


def test_the_cli_states_and_sorts_are_the_apis() -> None:
    """The CLI keeps its own copies (it starts without the ORM); they must not drift."""
    assert [s.value for s in account_cli.State] == [s.value for s in AccountState]
    assert [s.value for s in account_cli.Sort] == [s.value for s in AccountSort]


# ------------------------------------------------------------------------------ actions


def test_stop_by_label_prefix_previews_asks_and_stops_only_those(
    demo_server: DemoServer, operator: Cli, restore: None
) -> None:
    chosen = {f"fleet_001{n}" for n in range(10)}
    others = set(by_label(demo_server)) - chosen

    unconfirmed = operator.run("account", "stop", "--label", "fleet_001")
    assert unconfirmed.returncode == 2, unconfirmed.stderr
    assert "stop would apply to 10 accounts (label=fleet_001)" in unconfirmed.stdout
    for label in chosen:
        assert label in unconfirmed.stdout
    assert "pass --yes" in unconfirmed.stderr
    assert {a["desired_state"] for a in by_label(demo_server).values()} == {"running"}

    done = operator.ok("account", "stop", "--label", "fleet_001", "--yes")
    assert "stop: 10 accounts matched (10 now desired stopped, 0 already were)" in done
    accounts = by_label(demo_server)
    assert {label for label, a in accounts.items() if a["desired_state"] == "stopped"} == chosen
    wait_until(
        lambda: {a["label"] for a in api_accounts(demo_server, state="stopped")} == chosen,
        "the ten stopped, and only they",
    )
    assert all(by_label(demo_server)[label]["desired_state"] == "running" for label in others)

    started = operator.ok("account", "start", "--label", "fleet_001", "--state", "stopped", "-y")
    assert "start: 10 accounts matched (10 now desired running, 0 already were)" in started
    wait_until(lambda: all_online(demo_server, chosen), "the ten online again")


def test_refs_go_in_one_call_and_events_show_the_stop(
    demo_server: DemoServer, operator: Cli, restore: None
) -> None:
    accounts = by_label(demo_server)
    prefix = accounts["fleet_0004"]["id"][:8]
    done = operator.ok("account", "stop", "fleet_0003", prefix)
    assert done.strip() == (
        "stop requested for fleet_0003, fleet_0004 (2 now desired stopped, 0 already were)"
    )
    after = by_label(demo_server)
    assert [label for label, a in after.items() if a["desired_state"] == "stopped"] == [
        "fleet_0003",
        "fleet_0004",
    ]
    wait_until(
        lambda: by_label(demo_server)["fleet_0004"]["status"]["state"] == "stopped",
        "fleet_0004 stopped",
    )
    events = operator.json("account", "events", prefix, "--limit", "20")
    with demo_server.api() as api:
        timeline = api.get(f"{ACCOUNTS}/{accounts['fleet_0004']['id']}/events?limit=20").json()
    assert events == timeline["items"]
    command = next(e for e in events if e["kind"] == "command")
    assert command["code"] == "stop"
    assert any(e["kind"] == "state" and e["state"] == "stopped" for e in events)
    newest = [e["at"] for e in events]
    assert newest == sorted(newest, reverse=True)
    table = operator.ok("account", "events", "fleet_0004", "--limit", "3")
    assert table.splitlines()[0].split() == ["AT", "AGE", "KIND", "STATE", "CODE", "MESSAGE"]
    assert len(table.splitlines()) == 4

    restarted = operator.ok("account", "restart", "fleet_0005")
    assert restarted.strip() == "restart requested for fleet_0005 (1 restarted)"
    assert by_label(demo_server)["fleet_0005"]["restart_seq"] == 1 + int(
        accounts["fleet_0005"]["restart_seq"]
    )


def test_the_viewer_may_not_stop(demo_server: DemoServer, viewer: Cli) -> None:
    done = viewer.run("account", "stop", "fleet_0006", "--yes")
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1
    assert "not permitted" in done.stderr
    assert "account:control" in done.stderr
    assert by_label(demo_server)["fleet_0006"]["desired_state"] == "running"
    by_filter = viewer.run("account", "stop", "--label", "fleet_0006", "--yes")
    assert by_filter.returncode == 4
    assert "account:control" in by_filter.stderr


def test_nothing_named_is_refused(operator: Cli) -> None:
    for args in (
        ("account", "stop"),
        ("account", "start", "--yes"),
        ("account", "restart", "fleet_0001", "--label", "fleet"),
        ("account", "stop", "--all", "--label", "fleet"),
    ):
        done = operator.run(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("error: ")


def test_without_a_server_the_commands_say_how_to_sign_in(cli: Cli) -> None:
    done = cli.run("account", "show", "fleet_0001")
    assert done.returncode == 2
    assert "tgfleet login --server URL" in done.stderr


# ------------------------------------------------------------------------------ one account


def test_show_by_label_prefix_and_full_id(demo_server: DemoServer, operator: Cli) -> None:
    account = by_label(demo_server)["fleet_0002"]
    for ref in ("fleet_0002", account["id"], account["id"][:8], account["id"][:13].upper()):
        shown = operator.json("account", "show", ref)
        assert (shown["id"], shown["label"]) == (account["id"], "fleet_0002"), ref
    with demo_server.api() as api:
        direct = api.get(f"{ACCOUNTS}/{account['id']}").json()
    assert set(shown) == set(direct)
    assert (shown["desired_state"], shown["session"]) == (
        direct["desired_state"],
        direct["session"],
    )
    table = operator.ok("account", "show", "fleet_0002")
    fields = dict(line.split(None, 1) for line in table.splitlines() if len(line.split()) > 1)
    assert fields["id"].strip() == account["id"]
    assert fields["label"].strip() == "fleet_0002"
    assert fields["desired"].strip() == "running"


def test_short_unknown_and_ambiguous_refs(demo_server: DemoServer, operator: Cli) -> None:
    prefix = by_label(demo_server)["fleet_0001"]["id"][:3]
    short = operator.run("account", "show", prefix)
    assert short.returncode == 2
    assert short.stderr == (
        f"error: no account is labelled {prefix!r}, and an id prefix needs at least 6 characters\n"
    )
    unknown = operator.run("account", "show", "no-such-account")
    assert unknown.returncode == 1
    assert "no account with id or label 'no-such-account'" in unknown.stderr
    twins = [uuid.UUID(f"abcdef12-0000-4000-8000-00000000000{n}") for n in (1, 2)]
    with twin_accounts(demo_server, twins):
        ambiguous = operator.run("account", "show", "abcdef12")
        assert ambiguous.returncode == 2
        assert "ambiguous" in ambiguous.stderr
        assert str(twins[0]) in ambiguous.stderr
        assert str(twins[1]) in ambiguous.stderr
        one = operator.json("account", "show", "abcdef12-0000-4000-8000-000000000002")
        assert one["label"] == "twin-2"


class twin_accounts:  # noqa: N801 - used as a context manager
    """Two stopped accounts with the given ids, written into the demo's SQLite database
    (the API creates accounts only from sessions, with random ids); removed after."""

    def __init__(self, demo_server: DemoServer, ids: list[uuid.UUID]) -> None:
        from sqlalchemy import create_engine

        database = Path(demo_server.server_env["TGFLEET_DATA_DIR"]) / "tgfleet.db"
        self.engine = create_engine(f"sqlite:///{database}")
        self.ids = ids

    def __enter__(self) -> None:
        from sqlalchemy import insert

        from tgfleet.models import Account, DesiredState

        with self.engine.begin() as connection:
            for number, account_id in enumerate(self.ids, start=1):
                connection.execute(
                    insert(Account).values(
                        id=account_id, label=f"twin-{number}", desired_state=DesiredState.STOPPED
                    )
                )

    def __exit__(self, *_exc: object) -> None:
        from sqlalchemy import delete

        from tgfleet.models import Account

        with self.engine.begin() as connection:
            connection.execute(delete(Account).where(Account.id.in_(self.ids)))
        self.engine.dispose()


def test_groups_with_their_playbooks(demo_server: DemoServer, operator: Cli) -> None:
    account = by_label(demo_server)["fleet_0001"]
    with demo_server.api() as api:
        groups = api.get(f"{ACCOUNTS}/{account['id']}/groups").json()["items"]
        playbooks = {p["id"]: p["name"] for p in api.get("/api/v1/playbooks").json()["items"]}
    assert groups, "the demo's accounts are in groups"
    assert operator.json("account", "groups", "fleet_0001") == groups
    table = operator.ok("account", "groups", "fleet_0001")
    lines = table.splitlines()
    assert lines[0].split() == ["CHAT", "ID", "TITLE", "ENABLED", "PLAYBOOK", "VERSION", "DISABLED"]
    for group in groups:
        row = next(line for line in lines if line.startswith(str(group["chat_id"])))
        assert (group["title"] or "") in row
        assert playbooks[group["playbook_id"]] in row
        assert (" yes " if group["enabled"] else " no ") in row


# ------------------------------------------------------------------------------ start time


def test_account_list_against_the_server_imports_no_server_part(
    demo_server: DemoServer, operator: Cli, tmp_path: Path
) -> None:
    """A remote `account list` starts without Telethon, the ORM or FastAPI (checked with
    the modules loaded when the command exits)."""
    listing = tmp_path / "modules.txt"
    probe = (
        "import atexit, sys\n"
        "out = sys.argv[1]\n"
        "atexit.register(lambda: open(out, 'w').write('\\n'.join(sys.modules)))\n"
        "sys.argv = ['tgfleet', 'account', 'list']\n"
        "from tgfleet.cli import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(listing)],
        capture_output=True,
        text=True,
        env=operator.env(),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "fleet_0001" in done.stdout
    modules = set(listing.read_text().split())
    assert "tgfleet.cli.account" in modules
    assert not {"telethon", "sqlalchemy", "sqlalchemy.orm", "fastapi", "tgfleet.models"} & modules


def test_tab_completes_labels_from_the_current_context(operator: Cli, tmp_path: Path) -> None:
    """A REF's TAB offers the labels the server has (bash's protocol); nothing without a
    server, and nothing printed on stderr either way."""

    def complete(who: Cli, words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "tgfleet")],
            capture_output=True,
            text=True,
            env=who.env(
                _TGFLEET_COMPLETE="complete_bash",
                COMP_WORDS=words,
                COMP_CWORD=str(len(words.split()) - 1),
            ),
            timeout=CLI_TIMEOUT,
            check=False,
        )

    shown = complete(operator, "tgfleet account show fleet_001")
    assert shown.stdout.split() == [f"fleet_001{n}" for n in range(10)]
    assert shown.stderr == ""
    second = complete(operator, "tgfleet account stop fleet_0001 fleet_002")
    assert second.stdout.split() == ["fleet_0020"]
    home = tmp_path / "nobody"
    home.mkdir(mode=0o700)
    nobody = complete(Cli(home), "tgfleet account show fleet_001")
    assert (nobody.stdout.strip(), nobody.stderr) == ("", "")
