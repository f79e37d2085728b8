"""The container image (Dockerfile): linted, built for real with podman on the debootstrap
base, and looked at from outside.

hadolint and checkov read the Dockerfile. The ``tgfleet_image`` fixture builds
``localhost/tgfleet:ci`` (tests/deploy/conftest.py); these tests run it as a CLI, inspect
its metadata and its file system. The smoke test of the roles (migrations, API, two workers,
the sandbox) is tests/deploy/test_image_fleet.py. Without podman (or the linters) the tests
skip, unless ``CI=true``.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.conftest import TEST_AUDIT_KEY, TEST_VAULT_KEY
from tests.deploy.conftest import BuiltImage
from tests.deploy.podman import Podman
from tests.deploy.tools import ROOT, require_tool
from tests.harness import free_port

DOCKERFILE = ROOT / "Dockerfile"
UID = 10001
LINT_TIMEOUT = 120.0


class TestDockerfileLint:
    def test_hadolint_reports_nothing(self) -> None:
        """hadolint finds nothing at any level (info included) in the Dockerfile."""
        hadolint = require_tool("hadolint")
        done = subprocess.run(
            [hadolint, "--no-color", str(DOCKERFILE)],
            capture_output=True,
            text=True,
            timeout=LINT_TIMEOUT,
            check=False,
        )
        assert (done.returncode, done.stdout + done.stderr) == (0, "")

    def test_checkov_dockerfile_checks_pass(self) -> None:
        """checkov's Dockerfile checks: none fails, and one is skipped (CKV_DOCKER_7, whose
        reason the Dockerfile states: the base image is a build arg)."""
        checkov = require_tool("checkov")
        done = subprocess.run(
            [
                *(checkov, "--framework", "dockerfile", "--file", str(DOCKERFILE)),
                *("--compact", "--quiet", "--skip-download", "--output", "cli"),
            ],
            capture_output=True,
            text=True,
            timeout=LINT_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert "Failed checks: 0" in done.stdout, done.stdout[-4000:]
        assert "Skipped checks: 1" in done.stdout, done.stdout[-4000:]  # CKV_DOCKER_7 only


@pytest.mark.timeout(900)  # the fixture's cold build
class TestImage:
    def test_runs_a_cli_command_as_the_fixed_non_root_user(
        self, podman: Podman, tgfleet_image: BuiltImage
    ) -> None:
        """``tgfleet version`` (a CLI role through the entrypoint) prints the package
        version; the process runs as uid/gid 10001, read-only root, /data writable."""
        done = podman.run(tgfleet_image.id, "version")
        assert done.stdout.strip() == tgfleet_image.version
        done = podman.run(
            tgfleet_image.id,
            "-c",
            "id -u; id -g; touch /data/probe && echo data-ok; touch /opt/probe || echo ro-ok",
            entrypoint="/bin/sh",
        )
        assert done.stdout.split() == [str(UID), str(UID), "data-ok", "ro-ok"], done.stderr

    def test_runtime_has_no_compiler_pip_cache_or_tests(
        self, podman: Podman, tgfleet_image: BuiltImage
    ) -> None:
        """The runtime stage holds no compiler, no C++ headers, no pip (nor its cache),
        no tests and no .git; its Python files are byte-compiled at build time."""
        script = r"""
            for c in gcc cc g++ c++ pip pip3; do command -v "$c" >/dev/null && echo "tool:$c"; done
            for d in /root/.cache/pip /data/.cache /src /tests /usr/include/unicode \
                /usr/include/python3.11; do [ -e "$d" ] && echo "path:$d"; done
            site=$(echo /opt/tgfleet/lib/python3*/site-packages)
            [ -e "$site/tests" ] && echo "path:$site/tests"
            find "$site/tgfleet" -name conftest.py -o -name 'test_*.py' | sed 's/^/path:/'
            find / -xdev -name .git 2>/dev/null | sed 's/^/path:/'
            python3 -c 'import importlib.util as u; print("pip:", u.find_spec("pip"))'
            find /opt/tgfleet -name '*.pyc' | grep -q . && echo pyc:yes
        """
        done = podman.run(tgfleet_image.id, "-c", script, entrypoint="/bin/sh", check=False)
        lines = done.stdout.splitlines()
        assert [line for line in lines if line.startswith(("tool:", "path:"))] == []
        assert "pip: None" in lines, done.stdout
        assert "pyc:yes" in lines, done.stdout

    def test_metadata_entrypoint_user_labels(
        self, podman: Podman, tgfleet_image: BuiltImage
    ) -> None:
        """The image's config: tini entrypoint in exec form, `api` by default, user
        10001:10001, port 8000, /data a volume, TGFLEET_HOST=0.0.0.0, a HEALTHCHECK, and
        the OCI labels from the build args (version, revision) and the licence."""
        image = podman.inspect(tgfleet_image.id)
        config = image["Config"]
        assert config["Entrypoint"] == ["tini", "--", "tgfleet"]
        assert config["Cmd"] == ["api"]
        assert config["User"] == f"{UID}:{UID}"
        assert "8000/tcp" in config["ExposedPorts"]
        assert "/data" in config["Volumes"]
        env = dict(item.split("=", 1) for item in config["Env"])
        assert env["TGFLEET_HOST"] == "0.0.0.0"  # noqa: S104 - the container's listen address
        assert env["TGFLEET_DATA_DIR"] == "/data"
        assert env["PYTHONDONTWRITEBYTECODE"] == "1"
        assert image["Healthcheck"]["Test"][:2] == ["CMD", "python3"]
        labels = config["Labels"]
        assert labels["org.opencontainers.image.version"] == tgfleet_image.version
        assert labels["org.opencontainers.image.revision"] == tgfleet_image.revision
        assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
        assert labels["org.opencontainers.image.title"] == "tgfleet"
        assert labels["org.opencontainers.image.source"].startswith("https://")
        assert labels["org.opencontainers.image.description"]

    def test_healthcheck_reports_healthy_when_the_api_lives(
        self, podman: Podman, tgfleet_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """An API on SQLite in the data volume, read-only root: the image's HEALTHCHECK
        (``podman healthcheck run``) answers healthy once /livez does, and the container
        stops on SIGTERM within seconds after a graceful shutdown (tini forwards the signal)."""
        name = f"tgfleet-img-health-{time.monotonic_ns()}"
        volume = podman.create_volume(name)
        port = free_port()
        try:
            podman.start(
                tgfleet_image.id,
                "api",
                name=name,
                volumes=[f"{volume}:/data"],
                env={
                    "TGFLEET_PORT": str(port),
                    "TGFLEET_HOST": "127.0.0.1",
                    "TGFLEET_VAULT_KEY": TEST_VAULT_KEY,
                    "TGFLEET_AUDIT_KEY": TEST_AUDIT_KEY,
                    "TGFLEET_TELEGRAM_DCS": "",
                },
            )
            deadline = time.monotonic() + 60
            while True:
                check = podman("healthcheck", "run", name, check=False)
                if check.returncode == 0:
                    break
                assert podman.running(name), podman.logs(name)
                assert time.monotonic() < deadline, (check.stdout, podman.logs(name))
                time.sleep(0.5)
            assert check.stdout.strip() in {"", "healthy"}
            started = time.monotonic()
            podman.stop(name, timeout=20)
            assert time.monotonic() - started < 15, podman.logs(name)
            # uvicorn re-raises SIGTERM after its graceful shutdown: 143 = 128 + SIGTERM
            assert podman.exit_code(name) in {0, 143}, podman.logs(name)
            assert "app.stopped" in podman.logs(name), podman.logs(name)
        finally:
            podman.remove(name)
            podman.remove_volume(volume)
