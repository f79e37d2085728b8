"""``tgfleet login``, contexts and the config file, against a real server."""

from __future__ import annotations

import json
import re
import stat
import time
from datetime import UTC, datetime, timedelta

from tests.cli.remote.conftest import ADMIN, DEMO_ACCOUNTS, Cli, DemoServer


def test_login_saves_a_private_context_with_a_named_token(
    demo_server: DemoServer, operator: Cli
) -> None:
    config = operator.config_file
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    saved = json.loads(config.read_text())
    name = demo_server.url.split("://", 1)[1]
    assert saved["current-context"] == name
    context = saved["contexts"][name]
    assert context["server"] == demo_server.url
    assert context["user"] == ADMIN
    assert context["token_name"].startswith("cli ")
    with demo_server.api() as api:
        tokens = api.get("/api/v1/auth/tokens").json()
    assert context["token_id"] in {t["id"] for t in tokens}
    assert demo_server.admin_password not in config.read_text()
    listed = operator.json("context", "list")
    assert listed == [
        {
            "name": name,
            "current": True,
            "server": demo_server.url,
            "user": ADMIN,
            "token_name": context["token_name"],
        }
    ]


def test_a_config_file_others_can_read_is_refused(operator: Cli) -> None:
    operator.config_file.chmod(0o644)
    done = operator.run("context", "list")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "mode 0644" in done.stderr
    assert f"chmod 600 {operator.config_file}" in done.stderr


def test_a_wrong_password_is_one_line_and_exit_4(demo_server: DemoServer, cli: Cli) -> None:
    done = cli.run(
        "login", "--server", demo_server.url, "-u", ADMIN, "--password-stdin", stdin="wrong-pass"
    )
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith("error: ")
    assert done.stderr.count("\n") == 1
    assert not cli.config_file.exists()


def test_an_unreachable_server_is_exit_3(cli: Cli) -> None:
    from tests.harness import free_port

    url = f"http://127.0.0.1:{free_port()}"
    done = cli.run("login", "--server", url, "-u", ADMIN, "--password-stdin", stdin="whatever")
    assert done.returncode == 3, done.stderr
    assert f"cannot reach {url}" in done.stderr


def test_logout_revokes_the_token(demo_server: DemoServer, operator: Cli) -> None:
    saved = json.loads(operator.config_file.read_text())
    token_id = saved["contexts"][saved["current-context"]]["token_id"]
    out = operator.ok("logout")
    assert "its token revoked" in out
    with demo_server.api() as api:
        tokens = api.get("/api/v1/auth/tokens").json()
    assert token_id not in {t["id"] for t in tokens}
    assert json.loads(operator.config_file.read_text())["contexts"] == {}


def test_the_demo_announces_a_cli_login_that_works(demo_server: DemoServer, cli: Cli) -> None:
    """`tgfleet run --demo` prints how to sign the CLI in; that command, with the password
    printed beside it, signs in as the demo user."""
    text = demo_server.log.read_text()
    announced = re.search(r"CLI:\s+(tgfleet login --server \S+ -u demo)", text)
    password = re.search(r"Sign in as demo with password (\S+)", text)
    assert announced is not None, text[-2000:]
    assert password is not None
    args = announced.group(1).split()[1:]
    assert args[2] == demo_server.url
    out = cli.ok(*args, "--password-stdin", stdin=password.group(1))
    assert out.startswith(f"signed in to {demo_server.url} as demo;")


def test_an_expired_token_says_log_in_again(demo_server: DemoServer, cli: Cli) -> None:
    """A context whose token has expired: one line, exit 4, how to sign in again."""
    expires = datetime.now(UTC) + timedelta(seconds=3)
    with demo_server.api() as api:
        created = api.post(
            "/api/v1/auth/tokens", json={"name": "short-lived", "expires_at": expires.isoformat()}
        ).json()
    cli.ok("login", "--server", demo_server.url, "--token-stdin", stdin=created["token"])
    assert cli.ok("account", "list", "--limit", "1").count("\n") == 2  # header + one row
    deadline = time.monotonic() + 30
    while True:
        done = cli.run("account", "list", "--limit", "1")
        if done.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # polling the server until the token's expiry passes
    assert done.returncode == 4, done.stderr
    assert done.stderr.count("\n") == 1
    assert "the token was refused" in done.stderr
    assert f"run `tgfleet login --server {demo_server.url}` again" in done.stderr


def test_server_and_token_from_the_environment(demo_server: DemoServer, cli: Cli) -> None:
    """CI: TGFLEET_SERVER and TGFLEET_TOKEN, no config file; a refused variable token is
    named as such, with no context in the message."""
    with demo_server.api() as api:
        created = api.post("/api/v1/auth/tokens", json={"name": "ci-env"}).json()
    listed = json.loads(
        cli.run(
            "account",
            "list",
            "-o",
            "json",
            TGFLEET_SERVER=demo_server.url,
            TGFLEET_TOKEN=created["token"],
        ).stdout
    )
    assert len(listed) == DEMO_ACCOUNTS
    assert not cli.config_file.exists()
    demo_server.login(cli)  # a saved context for the same server must not be named
    refused = cli.run(
        "account", "list", TGFLEET_SERVER=demo_server.url, TGFLEET_TOKEN="tgf_not-a-token"
    )
    assert refused.returncode == 4
    assert refused.stderr == (
        f"error: not signed in to {demo_server.url}: it refused the token in TGFLEET_TOKEN "
        "(expired, revoked or mistyped); set a valid one\n"
    )
