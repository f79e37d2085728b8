"""``tgfleet audit list|verify|export`` against a real server: the listing is the API's,
the chain verifies intact remotely and offline, an export needs a reason and is audited."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from tests.cli.remote.conftest import Cli, DemoServer


def _records(demo_server: DemoServer, **filters: str) -> list[dict[str, Any]]:
    with demo_server.api() as api:
        answer = api.get("/api/v1/audit", params={"limit": 500, **filters})
    answer.raise_for_status()
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_list_is_the_api_listing(demo_server: DemoServer, operator: Cli) -> None:
    """`audit list -o json` with a filter is the API's items for it, newest first; the
    table shows each record's seq, actor and target in full."""
    for account in ("fleet_0011", "fleet_0012"):
        operator.ok("silence", "add", f'account="{account}"', "-c", "audit test")
    created = _records(demo_server, action="silence.create")
    assert [r["details"]["matchers"] for r in created[:2]] == [
        ['account="fleet_0012"'],
        ['account="fleet_0011"'],
    ]
    assert operator.json("audit", "list", "--action", "silence.create") == created
    assert operator.json("audit", "list", "--action", "silence.*", "--limit", "1") == [
        _records(demo_server, action="silence.*")[0]
    ]
    table = operator.ok("audit", "list", "--action", "silence.create").splitlines()
    assert table[0].split() == ["SEQ", "AT", "ACTOR", "ACTION", "TARGET", "RESULT"]
    assert [line.split()[0] for line in table[1:]] == [str(r["seq"]) for r in created]
    for line, record in zip(table[1:], created, strict=True):
        assert record["actor"] in line
        assert record["target"] in line


def test_verify_says_intact_remotely_and_offline(demo_server: DemoServer, operator: Cli) -> None:
    """The server checks its chain with its keys; `--offline` on the server's host reads
    the database directly; both say OK."""
    remote = operator.ok("audit", "verify")
    assert remote.startswith("OK ")
    assert "; MACs checked; " in remote
    with demo_server.api() as api:
        checked = api.get("/api/v1/audit/verify").json()
    assert remote.rstrip().endswith(
        f"; {checked['checkpoints']} of the server's checkpoints matched"
    )
    offline = demo_server.local("audit", "verify", "--offline")
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.startswith("OK ")


def test_export_needs_a_reason_and_is_audited(
    demo_server: DemoServer, operator: Cli, tmp_path: Path
) -> None:
    """An export without --reason is refused (exit 2); with one it writes the filtered
    records oldest first, 0600, and the audit log records the export with its reason."""
    operator.ok("silence", "add", 'account="fleet_0013"', "-c", "export test")
    refused = operator.run("audit", "export", "--action", "silence.*")
    assert refused.returncode == 2
    assert "--reason" in refused.stderr
    target = tmp_path / "silences.jsonl"
    out = operator.ok(
        "audit", "export", "--reason", "quarterly review", "--action", "silence.*",
        "-o", str(target),
    )  # fmt: skip
    exported = [json.loads(line) for line in target.read_text().splitlines()]
    listed = _records(demo_server, action="silence.*")
    assert exported == list(reversed(listed))
    assert out == f"wrote {len(exported)} records to {target}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    (export,) = _records(demo_server, action="audit.export")
    assert export["details"] == {
        "reason": "quarterly review",
        "filters": {"action": "silence.*"},
    }
    streamed = operator.ok("audit", "export", "--reason", "to stdout", "--action", "silence.*")
    assert [json.loads(line) for line in streamed.splitlines()] == exported


def test_a_viewer_cannot_read_the_audit_log(viewer: Cli) -> None:
    """The viewer role has no audit:read: exit 4 naming it."""
    done = viewer.run("audit", "list")
    assert done.returncode == 4
    assert done.stderr == "error: not permitted: this needs the permission audit:read\n"
