"""``tgfleet alert`` and ``tgfleet silence`` against a real server: silences round-trip
through the API, are expired by the id prefix a table prints, and are audited as the
token's user; the alert listings print the API's items."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from tests.cli.remote.conftest import Cli, DemoServer
from tests.cli.remote.test_completion import complete

SETTLE_TIMEOUT = 30.0


def _token_actor(cli: Cli) -> str:
    saved = json.loads(cli.config_file.read_text())
    return f"token:admin/{saved['contexts'][saved['current-context']]['token_name']}"


def _silences(demo_server: DemoServer, *, include_expired: bool = False) -> list[dict[str, Any]]:
    with demo_server.api() as api:
        answer = api.get("/api/v1/silences", params={"include_expired": include_expired})
    answer.raise_for_status()
    listed: list[dict[str, Any]] = answer.json()
    return listed


class TestSilence:
    def test_add_list_expire_by_prefix_audited_as_the_token(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """A silence added through the CLI is the API's, listed piped with its full id,
        expired by an 8-character prefix, and every call is on the audit record as the
        context's token."""
        out = operator.ok(
            "silence", "add", 'account="fleet_0001"', "severity!=info", "--for", "2h",
            "-c", "re-login in progress",
        )  # fmt: skip
        found = re.fullmatch(r"silence ([0-9a-f-]{36}) until \S+Z\n", out)
        assert found, out
        silence_id = found[1]
        (created,) = [s for s in _silences(demo_server) if s["id"] == silence_id]
        assert created["matchers"] == [
            {"name": "account", "value": "fleet_0001", "is_regex": False, "is_equal": True},
            {"name": "severity", "value": "info", "is_regex": False, "is_equal": False},
        ]
        assert created["comment"] == "re-login in progress"
        assert created["state"] == "active"
        assert created["created_by"] == _token_actor(operator)

        table = operator.ok("silence", "list", "-o", "wide")
        (row,) = [line for line in table.splitlines() if silence_id in line]
        assert 'account="fleet_0001" severity!="info"' in row
        assert operator.json("silence", "list") == _silences(demo_server)

        expired = operator.ok("silence", "expire", silence_id[:8])
        assert expired == f"silence {silence_id} expired\n"
        assert silence_id not in {s["id"] for s in _silences(demo_server)}
        (gone,) = [s for s in _silences(demo_server, include_expired=True) if s["id"] == silence_id]
        assert gone["state"] == "expired"

        with demo_server.api() as api:
            records = api.get("/api/v1/audit", params={"target": f"silence:{silence_id}"}).json()[
                "items"
            ]
        assert [(r["action"], r["actor"]) for r in records] == [
            ("silence.expire", _token_actor(operator)),
            ("silence.create", _token_actor(operator)),
        ]

    def test_a_prefix_too_short_unknown_or_of_an_expired_silence_is_refused(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """Five characters are too few (exit 2); a prefix nothing starts with, or that
        names an expired silence only, is exit 1 saying so."""
        out = operator.ok("silence", "add", 'account="fleet_0002"', "-c", "test")
        silence_id = out.split()[1]
        short = operator.run("silence", "expire", silence_id[:5])
        assert short.returncode == 2
        assert "too short" in short.stderr
        operator.ok("silence", "expire", silence_id)
        again = operator.run("silence", "expire", silence_id[:8])
        assert again.returncode == 1
        assert again.stderr == (
            f"error: no active or pending silence has an id starting with '{silence_id[:8]}'\n"
        )
        assert silence_id in {s["id"] for s in _silences(demo_server, include_expired=True)}

    def test_a_tab_after_silence_expire_offers_the_active_ids(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """The ids of the pending and active silences, as the API lists them; a typed
        prefix narrows them."""
        out = operator.ok("silence", "add", 'account="fleet_0004"', "-c", "completion")
        silence_id = out.split()[1]
        active = [s["id"] for s in _silences(demo_server)]
        assert silence_id in active
        assert complete(operator, "tgfleet silence expire ") == active
        assert complete(operator, f"tgfleet silence expire {silence_id[:6]}") == [
            one for one in active if one.startswith(silence_id[:6])
        ]

    def test_a_viewer_cannot_add_a_silence(self, demo_server: DemoServer, viewer: Cli) -> None:
        """The viewer role reads alerts but may not silence them: exit 4, one line naming
        alert:write, and no silence made."""
        before = _silences(demo_server)
        done = viewer.run("silence", "add", 'account="fleet_0003"', "-c", "not mine")
        assert done.returncode == 4
        assert done.stderr.count("\n") == 1
        assert "alert:write" in done.stderr
        assert _silences(demo_server) == before
        assert viewer.json("silence", "list") == before


def _settled(demo_server: DemoServer, cli: Cli, path: str, key: str | None, *args: str) -> Any:
    """The CLI's json and the API's answer, read until the API answers the same before and
    after the CLI ran (an alert may start or resolve meanwhile)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        with demo_server.api() as api:
            before = api.get(path).json()
            printed = cli.json(*args)
            after = api.get(path).json()
        items_before = before[key] if key else before["items"]
        items_after = after[key] if key else after["items"]
        if items_before == items_after or time.monotonic() > deadline:
            return printed, items_after
        time.sleep(0.5)  # polling the server, which moves on its own


class TestAlert:
    def test_list_prints_the_firing_alerts_of_the_api(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """`alert list -o json` is the API's firing alerts; the table has one row per alert
        (on a quiet demo: no row, and the table says so on stderr)."""
        printed, firing = _settled(demo_server, operator, "/api/v1/alerts", None, "alert", "list")
        assert printed == firing
        table = operator.run("alert", "list")
        assert table.returncode == 0
        if not firing:
            assert printed == []
            assert table.stdout == ""
            assert table.stderr == "no alert is firing\n"
        else:
            for alert in firing:
                assert alert["labels"]["alertname"] in table.stdout

    def test_history_prints_the_resolved_alerts_and_the_notifications(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """`alert history` is the API's resolved alerts; `--notifications` its deliveries."""
        printed, resolved = _settled(
            demo_server, operator, "/api/v1/alerts/history", "alerts", "alert", "history"
        )
        assert printed == resolved
        printed, sent = _settled(
            demo_server, operator, "/api/v1/alerts/history", "notifications",
            "alert", "history", "--notifications",
        )  # fmt: skip
        assert printed == sent

    def test_alert_list_needs_a_server(self, cli: Cli) -> None:
        """With no context, `alert list` exits 2 saying how to sign in."""
        done = cli.run("alert", "list")
        assert done.returncode == 2
        assert "tgfleet login --server URL" in done.stderr
