"""The production overlay's pods, run for real: each container of the rendered migration Job
and Deployments started with podman from this checkout's image the way a kubelet would start
it (no cluster can run here): its user, group and fsGroup, read-only root file system, no
capabilities and no privilege escalation, its command and args over the image's entrypoint,
its ConfigMap as environment, its emptyDirs (a fresh 0777 directory, or a tmpfs for
``medium: Memory``), its ConfigMap volume, and the Secret laid out as the kubelet writes a
secret volume (each key a symlink into a ``..data`` directory, mode 0440, group fsGroup).

Only what a cluster provides differently changes: the pods share the host's network
(PostgreSQL is the host's, in a scratch database), so the ports come from free ones.

Proves what the static checks cannot: the init containers wait until the Job migrated, the
API and the worker start and pass /readyz under the restricted settings, and a worker's
SIGTERM drain ends well inside its terminationGracePeriodSeconds.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import text

from tests.conftest import TEST_AUDIT_KEY, TEST_VAULT_KEY
from tests.deploy.conftest import BuiltImage
from tests.deploy.podman import Podman
from tests.deploy.tools import IN_CI, ROOT, require_tool
from tests.harness import free_port, scratch_database
from tgfleet.kit.db import create_engine

OVERLAYS = ROOT / "deploy" / "kubernetes" / "overlays"
SECRETS_DIR = "/run/secrets/tgfleet"
READY_TIMEOUT = 180.0  # a deadline: the machine may be busy (2 cores)
Doc = dict[str, Any]


def _render(overlay: str) -> list[Doc]:
    kubectl = require_tool("kubectl")
    done = subprocess.run(
        [kubectl, "kustomize", str(OVERLAYS / overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _pod_spec(docs: list[Doc], kind: str, name: str) -> Doc:
    (owner,) = (d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
    spec = owner["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


@dataclass
class Kubelet:
    """Starts a pod spec's containers with podman as a kubelet would (see the module doc)."""

    podman: Podman
    image: str
    config: dict[str, str]
    config_maps: dict[str, dict[str, str]]
    secret: dict[str, str]
    root: Path
    #: Words of a command line replaced (a Service's address and ports: the host's here).
    substitutions: dict[str, str] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    claims: dict[str, Path] = field(default_factory=dict)

    def _secret_volume(self, mode: int, group: int) -> Path:
        mount = self.root / f"secret-{uuid.uuid4().hex[:8]}"
        payload = mount / "..2026_12_07_00_00_00.000000001"
        payload.mkdir(parents=True)
        for key, value in self.secret.items():
            (payload / key).write_text(value, encoding="utf-8")
            os.chown(payload / key, 0, group)
            (payload / key).chmod(mode)
        (mount / "..data").symlink_to(payload.name)
        for key in self.secret:
            (mount / key).symlink_to(Path("..data") / key)
        for directory in (mount, payload):
            directory.chmod(0o755)
        return mount

    def _config_map_volume(self, name: str) -> Path:
        data = self.config_maps[name]
        mount = self.root / f"configmap-{uuid.uuid4().hex[:8]}"
        mount.mkdir()
        for key, value in data.items():
            (mount / key).write_text(value, encoding="utf-8")
            (mount / key).chmod(0o644)
        mount.chmod(0o755)
        return mount

    def volumes(self, spec: Doc) -> dict[str, list[str]]:
        """Each volume of the pod as podman flags for a mount path placeholder."""
        group = spec["securityContext"]["fsGroup"]
        flags: dict[str, list[str]] = {}
        for volume in spec["volumes"]:
            name = volume["name"]
            if "emptyDir" in volume:
                if volume["emptyDir"].get("medium") == "Memory":
                    flags[name] = ["--tmpfs", "{path}:rw,mode=1777"]
                    continue
                directory = self.root / f"emptydir-{name}-{uuid.uuid4().hex[:8]}"
                directory.mkdir()
                os.chown(directory, 0, group)
                directory.chmod(0o777 | stat.S_ISGID)  # the kubelet's mode, fsGroup's group
                flags[name] = ["--volume", f"{directory}:{{path}}"]
            elif "secret" in volume:
                assert volume["secret"]["secretName"] == "tgfleet"
                mount = self._secret_volume(volume["secret"]["defaultMode"], group)
                flags[name] = ["--volume", f"{mount}:{{path}}:ro"]
            elif "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if claim not in self.claims:  # one volume per claim, kept across pods
                    self.claims[claim] = self.root / f"claim-{claim}"
                    self.claims[claim].mkdir()
                    os.chown(self.claims[claim], 0, group)
                    self.claims[claim].chmod(0o777 | stat.S_ISGID)
                flags[name] = ["--volume", f"{self.claims[claim]}:{{path}}"]
            elif "configMap" in volume:
                mount = self._config_map_volume(volume["configMap"]["name"])
                flags[name] = ["--volume", f"{mount}:{{path}}:ro"]
            else:
                pytest.fail(f"no emulation for volume {volume}")
        return flags

    def args(self, spec: Doc, container: Doc, volumes: dict[str, list[str]]) -> list[str]:
        pod, context = spec["securityContext"], container["securityContext"]
        user = context.get("runAsUser", pod["runAsUser"])
        group = context.get("runAsGroup", pod["runAsGroup"])
        args = ["--network", "host", "--health-interval", "disable", "--init=false"]
        args += ["--user", f"{user}:{group}", "--group-add", str(pod["fsGroup"])]
        if context["readOnlyRootFilesystem"]:
            args.append("--read-only")
        if context["allowPrivilegeEscalation"] is False:
            args += ["--security-opt", "no-new-privileges"]
        for capability in context["capabilities"]["drop"]:
            args += ["--cap-drop", capability]
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(self.config_maps[source["configMapRef"]["name"]])
        env.update(self.config)
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        for mount in container["volumeMounts"]:
            flag, value = volumes[mount["name"]]
            args += [flag, value.format(path=mount["mountPath"])]
        command = [self.substitutions.get(w, w) for w in container.get("command", [])]
        words = [self.substitutions.get(w, w) for w in container.get("args", [])]
        if command:
            args += ["--entrypoint", command[0]]
            return [*args, self.image, *command[1:], *words]
        return [*args, self.image, *words]

    def start(self, spec: Doc, container: Doc, name: str) -> str:
        volumes = self.volumes(spec)
        # A pod's host name is its own (a worker's default id): the container's name here.
        args = self.args(spec, container, volumes)
        self.podman("run", "--detach", "--name", name, "--hostname", name, *args)
        self.started.append(name)
        return name

    def run(self, spec: Doc, container: Doc, *, timeout: float = 120) -> str:
        volumes = self.volumes(spec)
        done = self.podman("run", "--rm", *self.args(spec, container, volumes), timeout=timeout)
        return done.stdout + done.stderr


async def _wait(condition: Any, what: str, logs: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not await condition():
        if time.monotonic() > deadline:
            output = await asyncio.to_thread(logs)
            pytest.fail(f"timed out after {READY_TIMEOUT:.0f} s waiting for {what}\n{output}")
        await asyncio.sleep(0.3)


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient(timeout=3.0) as client:
        try:
            return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="session")
def server_url() -> str:
    """The PostgreSQL server of the tests; a session fixture named first by the tests, so a
    missing one skips them before the image is built."""
    url = os.environ.get("TGFLEET_TEST_DATABASE_URL")
    if not url:
        reason = "TGFLEET_TEST_DATABASE_URL is not set: the pods need PostgreSQL"
        if IN_CI:
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)
    return url


@pytest.fixture
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("kubelet")
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def database(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url, f"tgfleet_k8s_{uuid.uuid4().hex[:8]}") as url:
        yield url


async def _query(url: str, statement: str) -> list[tuple[Any, ...]]:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(text(statement))]
    finally:
        await engine.dispose()


async def _worker_states(url: str) -> dict[str, str]:
    """Each registered worker's id and state (``running``, or ``stopped`` once drained)."""
    return {str(i): str(state) for i, state in await _query(url, "SELECT id, state FROM worker")}


def _secret(database: str, **more: str) -> dict[str, str]:
    """The Secret `tgfleet` of these pods: the scratch database and the tests' keys."""
    return {
        "TGFLEET_DATABASE_URL": database,
        "TGFLEET_VAULT_KEY": TEST_VAULT_KEY,
        "TGFLEET_AUDIT_KEY": TEST_AUDIT_KEY,
        "TGFLEET_JWT_SECRET": "k8s-pod-test-jwt-secret-0123456789abcdef",
        **more,
    }


@pytest.mark.timeout(900)  # the image fixture's cold build
async def test_the_pods_start_restricted_and_the_worker_drains_in_its_grace(
    server_url: str, podman: Podman, tgfleet_image: BuiltImage, database: str, workdir: Path
) -> None:
    """The API's and the worker's init containers wait while the schema is empty and go on
    once the migration Job ran; the API and the worker pass /readyz as uid 10001 on a
    read-only root with no capabilities; the worker, stopped with SIGTERM, drains (its row
    in `worker` marked stopped) well before its grace period ends."""
    docs = _render("production")
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    api_port, metrics_port = free_port(), free_port()
    kubelet = Kubelet(
        podman=podman,
        image=tgfleet_image.ref,
        config={
            "TGFLEET_PORT": str(api_port),
            "TGFLEET_WORKER_METRICS_PORT": str(metrics_port),
            "TGFLEET_TELEGRAM_DCS": "",  # no Telegram from here: the monitor stays off
        },
        config_maps=config_maps,
        secret=_secret(
            database,
            TGFLEET_TELEGRAM_API_ID="12345",
            TGFLEET_TELEGRAM_API_HASH="0123456789abcdef0123456789abcdef",
            TGFLEET_ALERTING_TELEGRAM_BOT_TOKEN="123456:pod-test",
        ),
        root=workdir,
    )
    suffix = uuid.uuid4().hex[:6]
    api = _pod_spec(docs, "Deployment", "tgfleet-api")
    worker = _pod_spec(docs, "Deployment", "tgfleet-worker")
    job = _pod_spec(docs, "Job", "tgfleet-migrate")
    names = {
        "api-init": f"k8s-api-init-{suffix}",
        "worker-init": f"k8s-worker-init-{suffix}",
        "api": f"k8s-api-{suffix}",
        "worker": f"k8s-worker-{suffix}",
    }
    try:
        # The init containers first, on an empty database: they must keep waiting.
        await asyncio.to_thread(kubelet.start, api, api["initContainers"][0], names["api-init"])
        await asyncio.to_thread(
            kubelet.start, worker, worker["initContainers"][0], names["worker-init"]
        )
        for name in (names["api-init"], names["worker-init"]):
            # Until it reports the empty schema, an error, or stops: its logs say which.
            def settled(name: str = name) -> bool:
                logs = podman.logs(name)
                return "database: (empty)" in logs or "error:" in logs or not podman.running(name)

            await _wait(lambda: asyncio.to_thread(settled), f"{name} to find the schema empty")
            logs = await asyncio.to_thread(podman.logs, name)
            assert "database: (empty)" in logs, logs
            assert "error:" not in logs, logs
            assert await asyncio.to_thread(podman.running, name), logs

        # The Job migrates; the init containers then end, status 0.
        out = await asyncio.to_thread(kubelet.run, job, job["containers"][0])
        assert "database at revision" in out, out
        for name in (names["api-init"], names["worker-init"]):
            await _wait(
                lambda name=name: asyncio.to_thread(lambda: not podman.running(name)),
                f"{name} to end",
            )
            assert await asyncio.to_thread(podman.exit_code, name) == 0, podman.logs(name)

        await asyncio.to_thread(kubelet.start, api, api["containers"][0], names["api"])
        await asyncio.to_thread(kubelet.start, worker, worker["containers"][0], names["worker"])
        await _wait(
            lambda: _ready(f"http://127.0.0.1:{api_port}/readyz"),
            "the API's /readyz",
            lambda: podman.logs(names["api"]),
        )
        await _wait(
            lambda: _ready(f"http://127.0.0.1:{metrics_port}/readyz"),
            "the worker's /readyz",
            lambda: podman.logs(names["worker"]),
        )
        user = await asyncio.to_thread(podman, "exec", names["worker"], "id", "-u")
        assert user.stdout.strip() == "10001"
        # The pod's host name is its id (here the container's, as the pod's would be).
        hostname = await asyncio.to_thread(podman, "exec", names["worker"], "hostname")
        assert await _worker_states(database) == {hostname.stdout.strip(): "running"}

        grace = worker["terminationGracePeriodSeconds"]
        started = time.monotonic()
        await asyncio.to_thread(podman.stop, names["worker"], timeout=grace)
        stopped_in = time.monotonic() - started
        assert await asyncio.to_thread(podman.exit_code, names["worker"]) == 0
        assert stopped_in < grace / 2, f"the worker took {stopped_in:.1f} s of its {grace} s"
        assert await _worker_states(database) == {hostname.stdout.strip(): "stopped"}
    finally:
        await asyncio.to_thread(podman.remove, *names.values())


async def _online(url: str) -> int:
    (row,) = await _query(url, "SELECT count(*) FROM account_status WHERE state = 'online'")
    return int(row[0])


@pytest.mark.timeout(900)  # the image fixture's cold build
async def test_the_dev_overlay_brings_the_sandbox_fleet_online(
    server_url: str, podman: Podman, tgfleet_image: BuiltImage, database: str, workdir: Path
) -> None:
    """The dev overlay's pods: the Job migrates; the sandbox pod mints its world into its
    claim and seeds the fleet (its seed container waits for the schema); the sandbox serves
    it; the worker brings every minted account online through it. The Service's fixed
    address is the host's loopback here, its ports free ones."""
    docs = _render("dev")
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    sandbox = _pod_spec(docs, "Deployment", "tgfleet-sandbox")
    worker = _pod_spec(docs, "Deployment", "tgfleet-worker")
    job = _pod_spec(docs, "Job", "tgfleet-migrate")
    (service,) = (
        d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "tgfleet-sandbox"
    )
    mtproto, control, metrics_port = free_port(), free_port(), free_port()
    mint = next(c for c in sandbox["initContainers"] if c["name"] == "mint")
    accounts = int(mint["args"][mint["args"].index("--accounts") + 1])
    kubelet = Kubelet(
        podman=podman,
        image=tgfleet_image.ref,
        config={"TGFLEET_WORKER_METRICS_PORT": str(metrics_port), "TGFLEET_TELEGRAM_DCS": ""},
        config_maps=config_maps,
        secret=_secret(database),
        root=workdir,
        substitutions={
            service["spec"]["clusterIP"]: "127.0.0.1",
            str(service["spec"]["ports"][0]["port"]): str(mtproto),
            "8444": str(control),
        },
    )
    suffix = uuid.uuid4().hex[:6]
    names = {"sandbox": f"k8s-sandbox-{suffix}", "worker": f"k8s-dev-worker-{suffix}"}
    try:
        out = await asyncio.to_thread(kubelet.run, job, job["containers"][0])
        assert "database at revision" in out, out

        async def sandbox_pod() -> None:
            out = ""
            for init in sandbox["initContainers"]:  # in order, each to its end
                out = await asyncio.to_thread(kubelet.run, sandbox, init)
            assert "managing" in out, out  # the seed's summary
            await asyncio.to_thread(
                kubelet.start, sandbox, sandbox["containers"][0], names["sandbox"]
            )

        async def worker_pod() -> None:
            await asyncio.to_thread(kubelet.run, worker, worker["initContainers"][0])
            await asyncio.to_thread(kubelet.start, worker, worker["containers"][0], names["worker"])

        # Both pods at once, as a cluster schedules them: the worker retries until the
        # sandbox answers.
        await asyncio.gather(sandbox_pod(), worker_pod())
        await _wait(
            lambda: _ready(f"http://127.0.0.1:{control}/health"),
            "the sandbox's control API",
            lambda: podman.logs(names["sandbox"]),
        )

        async def all_online() -> bool:
            return await _online(database) == accounts

        await _wait(all_online, f"{accounts} accounts online", lambda: podman.logs(names["worker"]))
    finally:
        await asyncio.to_thread(podman.remove, *names.values())
