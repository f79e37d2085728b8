"""``tgfleet worker list`` against a real ``tgfleet run --demo`` server (SQLite: the one
process runs every account, no worker registers), and the bare ``tgfleet worker`` still
being the command that runs one."""

from __future__ import annotations

from tests.cli.remote.conftest import Cli, DemoServer


def test_worker_list_on_sqlite_is_empty_and_says_why(demo_server: DemoServer, viewer: Cli) -> None:
    with demo_server.api() as api:
        answer = api.get("/api/v1/workers").json()
    assert answer == {"items": [], "unassigned": 0}
    assert viewer.json("worker", "list") == []
    done = viewer.run("worker", "list")
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr == (
        "no workers registered (on SQLite `tgfleet run` runs every account); "
        "0 accounts desired running unassigned\n"
    )


def test_worker_list_needs_a_server_and_bare_worker_still_runs_one(cli: Cli) -> None:
    listed = cli.run("worker", "list")
    assert listed.returncode == 2
    assert "`tgfleet worker list` talks to a server's API" in listed.stderr
    helped = cli.ok("worker", "--help")
    assert "--id WORKER_ID" in helped
    assert "list" in helped
    refused = cli.run("worker", "--id", "w1", "list")
    assert refused.returncode == 2
    assert "--id is for running a worker" in refused.stderr
