"""``tgfleet worker list`` against a real ``tgfleet run --demo`` server: on SQLite the one
process runs every account and no worker registers; on PostgreSQL it registers as a
worker and leases the accounts. The bare ``tgfleet worker`` still runs one."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import make_url

from tests.cli.remote.conftest import ADMIN, DEMO_ACCOUNTS, Cli, DemoServer
from tests.conftest import PG_ENV, _pg_exec
from tests.demo_server import demo_env, demo_process


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


@pytest.fixture(scope="module")
def pg_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """``tgfleet run --demo`` on a fresh PostgreSQL database: there the one process
    registers as a worker and leases the accounts."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"PostgreSQL suite skipped: set {PG_ENV} (CI sets it and makes it mandatory)")
    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"tgfleet_cli_workers_{os.getpid()}"
    asyncio.run(_pg_exec(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_pg_exec(admin, f'CREATE DATABASE "{name}"'))
    folder = tmp_path_factory.mktemp("cli-workers-pg")
    env = demo_env(
        folder,
        TGFLEET_DATABASE_URL=make_url(url).set(database=name).render_as_string(hide_password=False),
        TGFLEET_ARGON2_TIME_COST="1",
        TGFLEET_ARGON2_MEMORY_KIB="1024",
        TGFLEET_ARGON2_PARALLELISM="1",
    )
    try:
        with demo_process(folder, env, folder / "run.log") as server_url:
            server = DemoServer(server_url, secrets.token_urlsafe(18), "", folder / "run.log", env)
            done = server.local(
                "user", "reset-password", ADMIN, "--password-stdin", stdin=server.admin_password
            )
            assert done.returncode == 0, done.stderr
            yield server
    finally:
        asyncio.run(_pg_exec(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_worker_list_on_postgresql_shows_the_worker_and_its_accounts(
    pg_demo: DemoServer, cli: Cli
) -> None:
    operator = pg_demo.login(cli)

    def held() -> list[dict[str, Any]]:
        with pg_demo.api() as api:
            items: list[dict[str, Any]] = api.get("/api/v1/workers").json()["items"]
        return items

    deadline = time.monotonic() + 60
    while not (held() and held()[0]["accounts_held"] == DEMO_ACCOUNTS):
        assert time.monotonic() < deadline, held()
        time.sleep(0.3)  # polling the server's API
    (worker,) = held()
    listed = operator.json("worker", "list")
    assert [(w["id"], w["host"], w["version"]) for w in listed] == [
        (worker["id"], worker["host"], worker["version"])
    ]
    assert (listed[0]["alive"], listed[0]["accounts_held"]) == (True, DEMO_ACCOUNTS)
    header, row = operator.ok("worker", "list").splitlines()
    assert header.split() == ["ID", "STATE", "ACCOUNTS", "HEARTBEAT", "VERSION", "HOST"]
    cells = row.split()
    assert cells[:3] == [worker["id"], "running", f"{DEMO_ACCOUNTS}/{worker['capacity']}"]
    assert cells[-2:] == [worker["version"], worker["host"]]
    wide = operator.ok("worker", "list", "-o", "wide").splitlines()[1].split()
    assert str(worker["pid"]) in wide

    # the account listing names the holder, and an id prefix works on PostgreSQL's uuid
    accounts = operator.json("account", "list", "--worker", worker["id"])
    assert len(accounts) == DEMO_ACCOUNTS
    assert {a["holder"] for a in accounts} == {worker["id"]}
    one = accounts[3]
    shown = operator.json("account", "show", one["id"][:8])
    assert (shown["id"], shown["label"]) == (one["id"], one["label"])
