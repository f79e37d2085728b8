"""A real ``tgfleet run --demo`` server for the remote CLI tests, and a CLI client with
its own config home that talks to it only through the API.

The client's environment has no ``TGFLEET_*`` variable (no database URL, no vault key):
a remote command that reached for the database would fail, not pass. One server for the
package (``demo_server``, stopped after its last test: a demo with traffic must not run
beside the rest of the suite); the tests change it only in ways they undo or that others
do not read. Each test gets a fresh config home (``operator``, signed in as
the admin; ``viewer``, signed in as a user with the viewer role).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.demo_server import demo_env, demo_process
from tests.harness import tgfleet_env

ADMIN = "admin"
VIEWER = "watcher"
DEMO_ACCOUNTS = 20
START_TIMEOUT = 90.0
CLI_TIMEOUT = 60.0


@dataclass
class Cli:
    """``python -m tgfleet`` with a private config home (``$XDG_CONFIG_HOME``)."""

    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.home / "tgfleet" / "config.json"

    def env(self, **extra: str) -> dict[str, str]:
        env = tgfleet_env(XDG_CONFIG_HOME=str(self.home), COLUMNS="120", NO_COLOR="1")
        env.pop("TGFLEET_CONFIG", None)
        env.update(self.extra_env)
        env.update(extra)
        return env

    def run(
        self, *args: str, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run it to completion; stdin is not a terminal (as in a script)."""
        return subprocess.run(
            [sys.executable, "-m", "tgfleet", *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=self.env(**env),
            timeout=CLI_TIMEOUT,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None) -> str:
        """stdout of a run that must exit 0 (its stderr in the failure message)."""
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))


@dataclass
class DemoServer:
    url: str
    admin_password: str
    viewer_password: str
    log: Path
    server_env: dict[str, str]

    def local(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """A database-direct command on the server's host (its settings)."""
        return subprocess.run(
            [sys.executable, "-m", "tgfleet", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.server_env,
            timeout=CLI_TIMEOUT,
            check=False,
        )

    def api(self, username: str = ADMIN, password: str | None = None) -> httpx.Client:
        """An API client signed in as ``username`` (a fresh JWT), to check what the CLI did
        through another door."""
        secret = password or (self.admin_password if username == ADMIN else self.viewer_password)
        token = httpx.post(
            f"{self.url}/api/v1/auth/login",
            json={"username": username, "password": secret},
            timeout=30,
        )
        token.raise_for_status()
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=30,
        )

    def login(self, cli: Cli, username: str = ADMIN) -> Cli:
        password = self.admin_password if username == ADMIN else self.viewer_password
        cli.ok("login", "--server", self.url, "-u", username, "--password-stdin", stdin=password)
        return cli


@pytest.fixture(scope="package")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """``tgfleet run --demo`` on a free loopback port, SQLite in its own data dir, with
    the ``admin`` password set and a ``watcher`` user with the viewer role, both through
    the database-direct CLI on the server's host (as an operator bootstraps)."""
    folder = tmp_path_factory.mktemp("cli-remote-server")
    log = folder / "run.log"
    env = demo_env(
        folder,
        TGFLEET_ARGON2_TIME_COST="1",
        TGFLEET_ARGON2_MEMORY_KIB="1024",
        TGFLEET_ARGON2_PARALLELISM="1",
    )
    with demo_process(folder, env, log) as url:
        running = DemoServer(url, secrets.token_urlsafe(18), secrets.token_urlsafe(18), log, env)
        for args, stdin in (
            (("user", "reset-password", ADMIN, "--password-stdin"), running.admin_password),
            (
                ("user", "create", VIEWER, "--role", "viewer", "--password-stdin"),
                running.viewer_password,
            ),
        ):
            done = running.local(*args, stdin=stdin)
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        yield running


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A CLI with an empty config home (nobody signed in)."""
    home = tmp_path / "config"
    home.mkdir(mode=0o700)
    return Cli(home)


@pytest.fixture
def operator(demo_server: DemoServer, cli: Cli) -> Cli:
    """The CLI signed in to the demo server as the admin (its context is current)."""
    return demo_server.login(cli)


@pytest.fixture
def viewer(demo_server: DemoServer, tmp_path: Path) -> Cli:
    """The CLI signed in as a user with the viewer role."""
    home = tmp_path / "viewer-config"
    home.mkdir(mode=0o700)
    return demo_server.login(Cli(home), VIEWER)
