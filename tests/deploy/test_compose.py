"""The compose stack (deploy/compose): its files against the Compose Specification's JSON
schema and against what the other parts of tgfleet expect of them; no literal secret in
any of them; and the core services brought up by podman-compose from compose.yaml +
compose.ci.yaml with the image of this checkout, until the API is ready and both workers
are live.

check-jsonschema and podman-compose come from the checks' tools (deploy/ci/tools.txt),
promtool from Debian's prometheus package, PostgreSQL is the host's
(``TGFLEET_TEST_DATABASE_URL``): without one of them its tests skip, unless ``CI=true``.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.deploy.conftest import BuiltImage
from tests.deploy.podman import Podman
from tests.deploy.tools import IN_CI, ROOT, require_tool

COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
COMPOSE_CI = COMPOSE_DIR / "compose.ci.yaml"
DEMO_ENV = COMPOSE_DIR / "demo.env"
SCHEMA = ROOT / "tests" / "deploy" / "compose-spec" / "compose-spec.json"
RULES = ROOT / "deploy" / "prometheus" / "rules"
#: Services that run the tgfleet image (the rest are PostgreSQL and the monitoring stack).
TGFLEET_SERVICES = frozenset(
    {"migrate", "api", "worker-1", "worker-2", "demo-world", "sandbox", "demo-seed"}
)
CORE = ("migrate", "api", "worker-1", "worker-2")
DEMO = ("demo-world", "sandbox", "demo-seed")
DEMO_ACCOUNTS = 20
#: The worker's drain on SIGTERM (tgfleet.worker.supervisor's shutdown_timeout).
WORKER_DRAIN_SECONDS = 6.0
PG_ENV = "TGFLEET_TEST_DATABASE_URL"
#: Names that hold a secret, in a variable or a key.
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY|API_HASH)$", re.IGNORECASE)
#: A secret's value may only be interpolated, never defaulted: ${VAR} or ${VAR:?message}.
INTERPOLATED = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}$")
STARTUP_DEADLINE = 120.0


class _ComposeLoader(yaml.SafeLoader):
    """YAML as compose reads it: the merge tags ``!reset`` and ``!override`` keep their
    value (an override file is validated as written)."""


def _tagged(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_ComposeLoader.add_constructor("!reset", _tagged)
_ComposeLoader.add_constructor("!override", _tagged)


def load(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(), Loader=_ComposeLoader)  # noqa: S506 - a SafeLoader
    assert isinstance(data, dict)
    return data


def _dotenv(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


# ------------------------------------------------------------------------- the files


class TestSchema:
    @staticmethod
    def check(document: dict[str, Any], folder: Path) -> subprocess.CompletedProcess[str]:
        """check-jsonschema on ``document`` (written as JSON: anchors and merges resolved)
        against the vendored schema."""
        checker = require_tool("check-jsonschema")
        path = folder / "compose.json"
        path.write_text(json.dumps(document))
        return subprocess.run(
            [checker, "--schemafile", str(SCHEMA), str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    @pytest.mark.parametrize("path", [COMPOSE, COMPOSE_CI], ids=lambda p: p.name)
    def test_valid_against_the_compose_specification(self, path: Path, tmp_path: Path) -> None:
        """check-jsonschema finds no violation of the vendored Compose Specification
        schema (the YAML read as compose reads it)."""
        done = self.check(load(path), tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr

    def test_the_schema_catches_a_mistake(self, compose: dict[str, Any], tmp_path: Path) -> None:
        """The check can fail: a misspelt service key is reported."""
        broken = json.loads(json.dumps(compose))
        broken["services"]["api"]["stop_grace_periods"] = "30s"
        done = self.check(broken, tmp_path)
        assert done.returncode == 1
        assert "stop_grace_periods" in done.stdout + done.stderr


class TestStack:
    """What the rest of tgfleet expects of the compose file."""

    def test_our_services_are_locked_down(self, compose: dict[str, Any]) -> None:
        """Every tgfleet container: the image's user 10001, a read-only root, no
        capabilities, no privilege gain, /tmp a tmpfs."""
        services = compose["services"]
        assert set(services) >= TGFLEET_SERVICES
        for name in TGFLEET_SERVICES:
            service = services[name]
            assert service["image"] == "${TGFLEET_IMAGE:-ghcr.io/tgfleet/tgfleet:latest}", name
            assert service["user"] == "10001:10001", name
            assert service["read_only"] is True, name
            assert service["cap_drop"] == ["ALL"], name
            assert "no-new-privileges:true" in service["security_opt"], name
            assert any(t.startswith("/tmp:") for t in service["tmpfs"]), name  # noqa: S108
        for name in ("postgres", "prometheus", "alertmanager", "grafana"):
            assert "no-new-privileges:true" in services[name]["security_opt"], name

    def test_roles_and_order(self, compose: dict[str, Any]) -> None:
        """migrate runs `db upgrade` once PostgreSQL is healthy; the API and the workers
        start after it succeeded; the demo seeds after the migration and the mint; every
        one-shot is waited for by a long-running service."""
        services = compose["services"]
        assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
        assert services["migrate"]["command"] == ["db", "upgrade"]
        assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        for name in ("api", "worker-1", "worker-2"):
            assert services[name]["depends_on"] == {
                "migrate": {"condition": "service_completed_successfully"}
            }
        assert services["api"]["command"] == ["api"]
        assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
        assert set(services["demo-seed"]["depends_on"]) == {"migrate", "demo-world"}
        # `up --wait` fails on a one-shot's exit unless a running service waits for it.
        one_shots = {"migrate", "demo-world", "demo-seed"}
        waited_for = {
            dependency
            for name, service in services.items()
            if name not in one_shots
            for dependency, condition in service.get("depends_on", {}).items()
            if condition["condition"] == "service_completed_successfully"
        }
        assert waited_for == one_shots

    def test_two_workers_with_own_ids_and_time_to_drain(self, compose: dict[str, Any]) -> None:
        services = compose["services"]
        ids = set()
        for name in ("worker-1", "worker-2"):
            worker = services[name]
            assert worker["command"] == ["worker"]
            ids.add(worker["environment"]["TGFLEET_WORKER_ID"])
            grace = worker["stop_grace_period"]
            assert re.fullmatch(r"\d+s", grace)
            assert int(grace[:-1]) > WORKER_DRAIN_SECONDS + 5
            assert "/readyz" in " ".join(worker["healthcheck"]["test"])
        assert ids == {"worker-1", "worker-2"}

    def test_the_demo_sandbox_address_is_one_everywhere(self, compose: dict[str, Any]) -> None:
        """The sandbox's fixed address is in the network's subnet, is the address the
        world is minted with, and is the DC demo.env points the network monitor at."""
        services = compose["services"]
        address = services["sandbox"]["networks"]["tgfleet"]["ipv4_address"]
        subnet = compose["networks"]["tgfleet"]["ipam"]["config"][0]["subnet"]
        assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
        assert f"--address={address}" in services["demo-world"]["command"]
        assert "--port=8443" in services["demo-world"]["command"]
        demo = _dotenv(DEMO_ENV)
        assert demo["COMPOSE_PROFILES"] == "demo"
        assert demo["TGFLEET_TELEGRAM_DCS"] == f"2={address}:8443"
        for name in ("demo-world", "sandbox", "demo-seed"):
            assert services[name]["profiles"] == ["demo"]
        assert services["demo-seed"]["command"][:2] == ["sandbox", "seed"]

    def test_observability_uses_our_rules_alertmanager_and_dashboard(
        self, compose: dict[str, Any]
    ) -> None:
        """Prometheus mounts deploy/prometheus/rules (not a copy) and scrapes the job names
        the rules select by; Alertmanager mounts deploy/alertmanager/alertmanager.yml with
        the bot token where it reads it; Grafana mounts our dashboard; every bind mount's
        source exists."""
        services = compose["services"]
        for name in ("prometheus", "alertmanager", "grafana"):
            assert services[name]["profiles"] == ["observability"]
            for volume in services[name]["volumes"]:
                source = volume.split(":")[0]
                if source.startswith("."):
                    assert (COMPOSE_DIR / source).exists(), volume
        assert "../prometheus/rules:/etc/prometheus/rules:ro" in services["prometheus"]["volumes"]
        config = load(COMPOSE_DIR / "prometheus" / "prometheus.yml")
        assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
        jobs = {job["job_name"] for job in config["scrape_configs"]}
        assert jobs == {"tgfleet-api", "tgfleet-worker"}
        rules = "\n".join(p.read_text() for p in RULES.glob("*.yml"))
        selected = set(re.findall(r'job="([^"]+)"', rules))
        for alternatives in re.findall(r'job=~"([^"]+)"', rules):
            selected.update(alternatives.split("|"))
        assert jobs <= selected
        alertmanager = load(ROOT / "deploy" / "alertmanager" / "alertmanager.yml")
        token_files = {
            telegram["bot_token_file"]
            for receiver in alertmanager["receivers"]
            for telegram in receiver.get("telegram_configs", [])
        }
        targets = {s["target"] for s in services["alertmanager"]["secrets"]}
        assert token_files <= targets
        assert any(
            v.startswith("../grafana/tgfleet-dashboard.json:")
            for v in services["grafana"]["volumes"]
        )

    def test_prometheus_config_passes_promtool(self, tmp_path: Path) -> None:
        """promtool accepts the compose Prometheus configuration with our rules in place."""
        if shutil.which("promtool") is None:
            if IN_CI:
                pytest.fail("CI=true but promtool is not on PATH (.ci/run installs prometheus)")
            pytest.skip("promtool is not on PATH (apt-get install prometheus)")
        rules = tmp_path / "rules"
        shutil.copytree(RULES, rules)
        config = (COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text()
        placed = tmp_path / "prometheus.yml"
        placed.write_text(config.replace("/etc/prometheus/rules/", f"{rules}/"))
        done = subprocess.run(
            ["promtool", "check", "config", str(placed)],  # noqa: S607 - promtool from PATH
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout + done.stderr


# ------------------------------------------------------------------------- secrets


def literal_secrets(document: dict[str, Any]) -> list[str]:
    """Where a compose document holds a secret as a literal value: a secret-named variable
    (or x- key) with a value that is not a bare interpolation, a database URL with a
    password, a compose secret that is not a file."""
    found: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{where}.{key}"
                named = isinstance(key, str) and SECRET_NAME.search(key) is not None
                bare = isinstance(value, str) and INTERPOLATED.match(value) is not None
                if named and isinstance(value, str | int | float) and not bare:
                    found.append(here)
                if isinstance(key, str) and key.endswith("DATABASE_URL") and value:
                    url = re.sub(r"\$\{[^:}]+:-([^}]*)\}", r"\1", str(value))
                    if "${" not in url and make_url(url).password is not None:
                        found.append(here)
                walk(value, here)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str) and "=" in item:  # environment as a list
                    walk(dict([item.split("=", 1)]), f"{where}[{index}]")
                else:
                    walk(item, f"{where}[{index}]")

    walk(document, "")
    for name, secret in (document.get("secrets") or {}).items():
        if set(secret) != {"file"}:
            found.append(f".secrets.{name}")
    return found


class TestNoLiteralSecrets:
    @pytest.mark.parametrize("path", [COMPOSE, COMPOSE_CI], ids=lambda p: p.name)
    def test_compose_files(self, path: Path) -> None:
        """Every secret is a file (compose `secrets:`) or a required variable."""
        assert literal_secrets(load(path)) == []

    def test_demo_env(self) -> None:
        assert [k for k in _dotenv(DEMO_ENV) if SECRET_NAME.search(k)] == []

    def test_secrets_reach_tgfleet_as_files(self, compose: dict[str, Any]) -> None:
        """tgfleet reads TGFLEET_SECRETS_DIR=/run/secrets, each secret's target named
        after the setting it fills; PostgreSQL reads the same password file."""
        services = compose["services"]
        api = services["api"]
        assert api["environment"]["TGFLEET_SECRETS_DIR"] == "/run/secrets"
        targets = {s["target"]: s["source"] for s in api["secrets"]}
        assert targets == {
            "TGFLEET_VAULT_KEY": "tgfleet_vault_key",
            "TGFLEET_AUDIT_KEY": "tgfleet_audit_key",
            "TGFLEET_JWT_SECRET": "tgfleet_jwt_secret",
            "TGFLEET_DATABASE_PASSWORD": "postgres_password",
        }
        assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == (
            "/run/secrets/postgres_password"
        )
        assert (
            make_url(
                api["environment"]["TGFLEET_DATABASE_URL"].split(":-", 1)[1].rstrip("}")
            ).password
            is None
        )

    @pytest.mark.parametrize(
        "document",
        [
            {"services": {"api": {"environment": {"TGFLEET_JWT_SECRET": "s3cret-value"}}}},
            {"services": {"api": {"environment": ["TGFLEET_VAULT_KEY=a2V5"]}}},
            {"services": {"api": {"environment": {"TGFLEET_JWT_SECRET": "${JWT:-fallback}"}}}},
            {"x": {"TGFLEET_DATABASE_URL": "postgresql+asyncpg://u:pw@h/db"}},
            {"secrets": {"db": {"environment": "DB_PASSWORD"}}},
        ],
    )
    def test_the_check_finds_a_literal(self, document: dict[str, Any]) -> None:
        """The check can fail: each planted literal is reported."""
        assert literal_secrets(document) != []


class TestSecretsScript:
    def test_writes_every_secret_once_private(self, tmp_path: Path) -> None:
        """secrets.sh writes each file compose.yaml names (keys of 32 random bytes in
        base64), 0444 in a 0700 folder; a rerun keeps what is there."""
        folder = tmp_path / "secrets"
        env = {"PATH": os.environ["PATH"], "TGFLEET_SECRETS": str(folder)}
        run = ["/bin/sh", str(COMPOSE_DIR / "secrets.sh")]
        first = subprocess.run(
            run, env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert first.returncode == 0, first.stderr
        files = {Path(s["file"]).name for s in load(COMPOSE)["secrets"].values()}
        assert {p.name for p in folder.iterdir()} == files
        assert folder.stat().st_mode & 0o777 == 0o700
        assert {(folder / name).stat().st_mode & 0o777 for name in files} == {0o444}
        for key in ("tgfleet_vault_key", "tgfleet_audit_key"):
            assert len(base64.b64decode((folder / key).read_text().strip())) == 32
        assert len((folder / "tgfleet_jwt_secret").read_text().strip()) >= 32
        before = {name: (folder / name).read_text() for name in files}
        again = subprocess.run(
            run, env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert again.returncode == 0, again.stderr
        assert "wrote" not in again.stdout
        assert {name: (folder / name).read_text() for name in files} == before

    def test_shellcheck_finds_nothing(self) -> None:
        shellcheck = require_tool("shellcheck")
        done = subprocess.run(
            [shellcheck, str(COMPOSE_DIR / "secrets.sh")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------------- podman-compose


def _free_ports(count: int) -> list[int]:
    import socket

    holders = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    try:
        return [int(h.getsockname()[1]) for h in holders]
    finally:
        for holder in holders:
            holder.close()


def _free_port_pair() -> int:
    """A free port whose next one is free too (the sandbox's control API takes it)."""
    import socket

    for port in _free_ports(20):
        try:
            with socket.create_server(("127.0.0.1", port + 1)):
                return port
        except OSError:
            continue
    pytest.fail("no two consecutive free ports found")


def _write_secrets(folder: Path) -> None:
    """The secret files secrets.sh would write; fresh values, readable by the containers'
    user (0444 in a 0700 folder)."""
    folder.mkdir(mode=0o700)
    values = {
        "tgfleet_vault_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "tgfleet_audit_key": base64.b64encode(secrets.token_bytes(32)).decode(),
        "tgfleet_jwt_secret": secrets.token_urlsafe(40),
        "postgres_password": secrets.token_urlsafe(24),
        "grafana_admin_password": secrets.token_urlsafe(24),
        "telegram_bot_token": "",
    }
    for name, value in values.items():
        path = folder / name
        path.write_text(value + "\n")
        path.chmod(0o444)


async def _execute(dsn: str, statement: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(statement))
    finally:
        await connection.close()


def sql(url: str, statement: str) -> list[asyncpg.Record]:
    """Run one statement on the database of a SQLAlchemy ``url`` (the test is synchronous:
    it waits on processes)."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return asyncio.run(_execute(dsn, statement))


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """A new, empty database on the host's PostgreSQL (dropped afterwards): its URL."""
    base = os.environ.get(PG_ENV)
    if not base:
        if IN_CI:
            pytest.fail(f"CI=true but {PG_ENV} is not set")
        pytest.skip(f"set {PG_ENV} (the host's PostgreSQL) to run the compose stack")
    name = f"tgfleet_compose_{secrets.token_hex(4)}"
    sql(base, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        sql(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Compose:
    """podman-compose on compose.yaml + compose.ci.yaml, with the checks' podman (its
    store and containers.conf, through a wrapper given as --podman-path: podman-compose
    puts --podman-args after the subcommand, where --root is refused)."""

    def __init__(self, podman: Podman, folder: Path, env: dict[str, str]) -> None:
        self.executable = require_tool("podman-compose")
        self.project = f"tgfleet-ci-{secrets.token_hex(3)}"
        wrapper = folder / "podman"
        wrapper.write_text(
            "#!/bin/sh\nexec " + " ".join(f"'{part}'" for part in podman.prefix) + ' "$@"\n'
        )
        wrapper.chmod(0o755)
        self.wrapper = wrapper
        self.env = {**podman.env(), **env}
        self.podman = podman

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        argv = [
            self.executable,
            "--podman-path", str(self.wrapper),
            "--project-name", self.project,
            "--file", str(COMPOSE),
            "--file", str(COMPOSE_CI),
            *args,
        ]  # fmt: skip
        return subprocess.run(
            argv,
            cwd=COMPOSE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def logs(self, service: str) -> str:
        return self.podman.logs(self.container(service), tail=200)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as answer:  # noqa: S310 - loopback URL
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _wait_for_the_fleet(compose: Compose, url: str, deadline: float) -> None:
    """Until the demo's 20 accounts are online, held by both workers."""
    held: list[tuple[str, str | None]] = []
    while time.monotonic() < deadline:
        rows = sql(url, "SELECT state, worker_id FROM account_status")
        held = [(r["state"], r["worker_id"]) for r in rows]
        online = [worker for state, worker in held if state == "online"]
        if len(online) == DEMO_ACCOUNTS and set(online) == {"worker-1", "worker-2"}:
            return
        time.sleep(0.5)
    logs = "\n".join(f"{s}:\n{compose.logs(s)}" for s in ("demo-seed", "sandbox", "worker-1"))
    pytest.fail(f"the demo's fleet is not online: {held}\n{logs}")


def _wait_until_ready(url: str, compose: Compose, service: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if _get(url) == 200:
            return
        time.sleep(0.5)
    pytest.fail(f"{url} not ready in time; {service}'s log:\n{compose.logs(service)}")


@pytest.mark.timeout(900)  # a cold image build (the fixture) takes minutes; warm, seconds
class TestPodmanCompose:
    def test_core_services_then_the_demo_come_up(
        self, tgfleet_image: BuiltImage, podman: Podman, fresh_database: str, tmp_path: Path
    ) -> None:
        """migrate, api and two workers from compose.yaml + compose.ci.yaml: the migration
        exits 0, the API answers /readyz and made the first admin, each worker answers
        /readyz on its port and is registered live under its id. Then profile demo: the
        world minted, served and seeded, its 20 accounts online, shared by both workers.
        `down` removes every container."""
        api_port, worker_1, worker_2 = _free_ports(3)
        sandbox_port = _free_port_pair()
        folder = tmp_path / "compose"
        folder.mkdir()
        _write_secrets(folder / "secrets")
        compose = Compose(
            podman,
            folder,
            {
                "TGFLEET_IMAGE": tgfleet_image.ref,
                "TGFLEET_SECRETS": str(folder / "secrets"),
                "TGFLEET_DATABASE_URL": fresh_database,
                "TGFLEET_CI_API_PORT": str(api_port),
                "TGFLEET_CI_WORKER_1_PORT": str(worker_1),
                "TGFLEET_CI_WORKER_2_PORT": str(worker_2),
                "TGFLEET_CI_SANDBOX_PORT": str(sandbox_port),
                # Passed through by the null entries of compose.yaml: workers in prod need
                # an app (placeholder values; nothing reaches Telegram), the network
                # monitor probes nothing (traffic stays on loopback).
                "TGFLEET_TELEGRAM_API_ID": "12345",
                "TGFLEET_TELEGRAM_API_HASH": "0123456789abcdef0123456789abcdef",
                "TGFLEET_TELEGRAM_DCS": "",
            },
        )
        started = time.monotonic()
        try:
            up = compose("up", "--detach", *CORE)
            assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
            deadline = time.monotonic() + STARTUP_DEADLINE
            _wait_until_ready(f"http://127.0.0.1:{api_port}/readyz", compose, "api", deadline)
            for service, port in (("worker-1", worker_1), ("worker-2", worker_2)):
                _wait_until_ready(f"http://127.0.0.1:{port}/readyz", compose, service, deadline)
            ready_after = time.monotonic() - started

            assert podman.exit_code(compose.container("migrate")) == 0
            assert "database at revision" in compose.logs("migrate")
            assert "Created user 'admin'" in compose.logs("api")
            rows = sql(
                fresh_database, "SELECT id, state FROM worker WHERE expires_at > now() ORDER BY id"
            )
            assert [(r["id"], r["state"]) for r in rows] == [
                ("worker-1", "running"),
                ("worker-2", "running"),
            ]
            for service in ("api", "worker-1", "worker-2"):
                inspected = podman.inspect(compose.container(service), kind="container")
                assert inspected["Config"]["User"] == "10001:10001"
                assert inspected["HostConfig"]["ReadonlyRootfs"] is True

            # The world first, to its end: podman-compose on podman 4.3 may start a
            # dependant of a one-shot service before it ran (its `service_completed_
            # successfully` wait takes a created container for a stopped one). Then the
            # rest without their dependencies (run already: the order is checked above).
            world = compose("--profile", "demo", "up", "--detach", "demo-world")
            assert world.returncode == 0, world.stdout[-3000:] + world.stderr[-3000:]
            minted = podman("wait", compose.container("demo-world"), timeout=120)
            assert minted.stdout.strip() == "0", compose.logs("demo-world")
            demo = compose("--profile", "demo", "up", "--detach", "--no-deps", *DEMO[1:])
            assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
            _wait_for_the_fleet(compose, fresh_database, time.monotonic() + STARTUP_DEADLINE)
            online_after = time.monotonic() - started
            assert "managing 20 accounts" in compose.logs("demo-seed")
            actors = sql(
                fresh_database,
                "SELECT DISTINCT actor FROM audit_record WHERE action = 'session.import'",
            )
            assert [r["actor"] for r in actors] == ["cli:tgfleet"]
        finally:
            down = compose("--profile", "demo", "down", "--volumes", "--timeout", "20")
        assert down.returncode == 0, down.stderr[-3000:]
        left = podman("ps", "--all", "--filter", f"name={compose.project}", "--quiet")
        assert left.stdout.strip() == ""
        print(  # the numbers docs/deploy.md quotes
            f"compose: core services ready in {ready_after:.1f} s, "
            f"the demo's fleet online in {online_after:.1f} s"
        )
