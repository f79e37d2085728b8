"""The image's roles as a fleet: migrations, the API, two workers and the sandbox, each a
container of ``localhost/tgfleet:ci`` running as uid 10001 with a read-only root file
system, on the host's network and the host's PostgreSQL (a scratch database per run).

What an operator does, in order: ``db upgrade``; mint a sandbox world into a mounted folder
(``sandbox mint``) and serve it (``sandbox run``); import its sessions (``session import``)
and create an admin (``user create``) with the CLI; start the API and two workers; sign in
and start every account through the API. Then: /readyz answers, every account is online and
the two worker containers share them; ``podman stop`` of one (SIGTERM through tini, the
worker drains) hands its accounts to the other without duplicate use. Needs podman and
PostgreSQL (``TGFLEET_TEST_DATABASE_URL``); skips without them unless ``CI=true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, PG_ENV, TEST_AUDIT_KEY, TEST_JWT_SECRET, TEST_VAULT_KEY
from tests.deploy.conftest import BuiltImage
from tests.deploy.podman import Podman
from tests.harness import free_port, poll, scratch_database
from tgfleet import migrations
from tgfleet.sandbox.client import SandboxControl

UID = 10001
ACCOUNTS = 6
ADMIN = "admin"
WORKERS = ("img-w1", "img-w2")
#: A worker's drain must end well inside podman's stop timeout (else SIGKILL: exit 137).
STOP_TIMEOUT = 30


@dataclass
class Fleet:
    """The containers of one run, removed at the end whatever happened."""

    podman: Podman
    image: str
    env: dict[str, str]
    run_id: str
    names: list[str] = field(default_factory=list)

    def name(self, role: str) -> str:
        return f"tgfleet-{self.run_id}-{role}"

    async def once(
        self, *command: str, volumes: Sequence[str] = (), stdin: str | None = None
    ) -> str:
        """A one-shot container of the image (the CLI role); its output."""
        done = await asyncio.to_thread(
            self.podman.run,
            self.image,
            *command,
            env=self.env,
            volumes=volumes,
            stdin=stdin,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
        return done.stdout

    async def start(
        self, role: str, *command: str, env: dict[str, str], volumes: Sequence[str] = ()
    ) -> str:
        name = self.name(role)
        self.names.append(name)
        await asyncio.to_thread(
            self.podman.start,
            self.image,
            *command,
            name=name,
            env={**self.env, **env},
            volumes=volumes,
        )
        return name

    async def logs(self) -> str:
        parts = [
            f"--- {name}\n{await asyncio.to_thread(self.podman.logs, name, tail=15)}"
            for name in self.names
        ]
        return "\n".join(parts)

    async def alive(self, name: str) -> None:
        assert await asyncio.to_thread(self.podman.running, name), await self.logs()


@contextlib.asynccontextmanager
async def fleet(podman: Podman, image: str, env: dict[str, str]) -> AsyncIterator[Fleet]:
    run = Fleet(podman, image, env, run_id=secrets.token_hex(4))
    try:
        yield run
    finally:
        await asyncio.to_thread(podman.remove, *run.names)


async def wait_for(
    what: str, check: Any, fleet: Fleet, *, within: float, step: float = 0.3
) -> None:
    """Poll ``await check()`` until true; fails with the containers' logs after ``within``."""
    if not await poll(check, within, step):
        pytest.fail(f"not {what} within {within} s\n{await fleet.logs()}")


async def answers(url: str, client: httpx.AsyncClient) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return (await client.get(url)).status_code == 200
    return False


@pytest.fixture
def pg_server() -> str:
    """The PostgreSQL server's URL (before the image is built: a skip costs nothing)."""
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if IN_CI:
        pytest.fail(f"CI=true but {PG_ENV} is not set")
    pytest.skip(f"needs PostgreSQL: set {PG_ENV}")


async def accounts(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    page = (await api.get("/api/v1/accounts", params={"limit": 100})).json()
    items: list[dict[str, Any]] = page["items"]
    return items


def holders(items: list[dict[str, Any]]) -> dict[str, str | None]:
    """label -> the worker holding it, when online there by its status; else None."""
    return {
        item["label"]: item["holder"]
        if item["status"]["state"] == "online" and item["status"]["worker_id"] == item["holder"]
        else None
        for item in items
    }


@pytest.mark.timeout(900)  # the fixture's cold build; the test itself takes under a minute
async def test_roles_run_a_fleet_that_survives_a_worker_stop(
    pg_server: str, podman: Podman, tgfleet_image: BuiltImage, tmp_path: Path
) -> None:
    """db upgrade, sandbox, session import, api and two workers from the one image: the
    accounts go online split across both worker containers; after ``podman stop`` of one
    (a graceful drain, not a kill) every account is online on the other, and the sandbox
    never saw an account used twice at once."""
    database = f"tgfleet_image_{os.getpid()}_{secrets.token_hex(3)}"
    async with scratch_database(pg_server, database) as url:
        env = {
            "TGFLEET_DATABASE_URL": url,
            "TGFLEET_VAULT_KEY": TEST_VAULT_KEY,
            "TGFLEET_AUDIT_KEY": TEST_AUDIT_KEY,
            "TGFLEET_JWT_SECRET": TEST_JWT_SECRET,
            "TGFLEET_TELEGRAM_DCS": "",  # no network probe leaves the host
            "TGFLEET_LOG_LEVEL": "WARNING",
            "TGFLEET_LOG_JSON": "false",
        }
        async with fleet(podman, tgfleet_image.id, env) as run:
            await _drive(run, tmp_path)


async def _drive(run: Fleet, tmp_path: Path) -> None:
    # A folder of the host the containers' user owns: the minted world and its sessions.
    world = tmp_path / "world"
    world.mkdir(mode=0o700)
    os.chown(world, UID, UID)
    sandbox_port, control_port, api_port = free_port(), free_port(), free_port()
    metrics = {name: free_port() for name in WORKERS}

    head = migrations.head_revision()
    assert f"database at revision {head}" in await run.once("db", "upgrade")
    assert f"database: {head}" in await run.once("db", "current")
    await run.once(
        "sandbox",
        "mint",
        *("--accounts", str(ACCOUNTS), "--groups", "1", "--members", "2"),
        *("--out", "/world", "--port", str(sandbox_port)),
        volumes=[f"{world}:/world"],
    )
    sessions = sorted(p.name for p in world.glob("*.session"))
    assert len(sessions) == ACCOUNTS, sorted(p.name for p in world.iterdir())
    await run.start(
        "sandbox",
        *("sandbox", "run", "--world", "/world/world.yaml", "--no-traffic"),
        *("--control-port", str(control_port)),
        env={},
        volumes=[f"{world}:/world:ro"],
    )
    imported = await run.once(
        "session", "import", *(f"/world/{s}" for s in sessions), volumes=[f"{world}:/world:ro"]
    )
    assert f"{ACCOUNTS} imported, 0 failed" in imported, imported
    password = secrets.token_urlsafe(18)
    await run.once(
        "user", "create", ADMIN, "--role", "admin", "--password-stdin", stdin=password + "\n"
    )

    api_name = await run.start("api", "api", env={"TGFLEET_PORT": str(api_port)})
    worker_names = [
        await run.start(
            name,
            "worker",
            env={"TGFLEET_WORKER_ID": name, "TGFLEET_WORKER_METRICS_PORT": str(metrics[name])},
        )
        for name in WORKERS
    ]

    base = f"http://127.0.0.1:{api_port}"
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as api,
        SandboxControl(f"http://127.0.0.1:{control_port}") as control,
    ):
        await wait_for("API ready", lambda: answers("/readyz", api), run, within=60)
        for name in WORKERS:
            url = f"http://127.0.0.1:{metrics[name]}/readyz"
            await wait_for(f"{name} ready", lambda url=url: answers(url, api), run, within=60)
        # The one HEALTHCHECK serves both roles: the API's port, else the worker's.
        for container in (api_name, *worker_names):
            health = await asyncio.to_thread(
                run.podman, "healthcheck", "run", container, check=False
            )
            assert health.returncode == 0, (container, health.stdout + health.stderr)

        login = await api.post("/api/v1/auth/login", json={"username": ADMIN, "password": password})
        assert login.status_code == 200, login.text
        api.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        started = await api.post(
            "/api/v1/accounts/bulk", json={"action": "start", "filter": {"all": True}}
        )
        assert started.status_code == 200, started.text
        assert started.json()["matched"] == ACCOUNTS

        async def split() -> bool:
            held = holders(await accounts(api))
            return None not in held.values() and set(held.values()) == set(WORKERS)

        await wait_for("online on both workers", split, run, within=90)
        assert not _duplicates(await control.stats())

        stopping, survivor = run.name(WORKERS[0]), WORKERS[1]
        began = time.monotonic()
        await asyncio.to_thread(run.podman.stop, stopping, timeout=STOP_TIMEOUT)
        stop_seconds = time.monotonic() - began
        code = await asyncio.to_thread(run.podman.exit_code, stopping)
        logs = await asyncio.to_thread(run.podman.logs, stopping, tail=40)
        assert code in {0, 143}, (code, logs)  # 143: SIGTERM re-raised after the drain
        assert stop_seconds < STOP_TIMEOUT, (stop_seconds, logs)

        async def handed_over() -> bool:
            held = holders(await accounts(api))
            return set(held.values()) == {survivor}

        await wait_for("all online on the survivor", handed_over, run, within=60)
        assert not _duplicates(await control.stats())
        await run.alive(run.name(survivor))
        await run.alive(api_name)


def _duplicates(stats: dict[str, Any]) -> dict[str, int]:
    return {name: int(n) for name, n in stats["duplicate_use"].items() if n}
