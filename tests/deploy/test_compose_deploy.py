"""deploy/ci/compose-deploy.sh (what deploy-compose.yml runs on a compose host over SSH) for
real: podman-compose and podman stand in for `docker compose` and `docker`, and two images
built from the debootstrap base answer /readyz with 200 and 503. Skips without podman or
podman-compose, unless ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.podman import Podman
from tests.deploy.tools import ROOT, require_tool

COMPOSE_DEPLOY = ROOT / "deploy" / "ci" / "compose-deploy.sh"
BASH = shutil.which("bash") or "/bin/bash"
TIMEOUT = 120.0

# A stand-in for tgfleet's API: /readyz answers STATUS; SIGTERM stops it at once (as PID 1
# it has no default handler).
PROBE = """\
import http.server, os, signal, sys

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


class Probe(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(STATUS if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Probe).serve_forever()
"""

COMPOSE_FILE = """\
services:
  api:
    image: ${TGFLEET_IMAGE:?TGFLEET_IMAGE names the image}
    network_mode: host
    environment:
      PORT: "%d"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        assert isinstance(port, int)
        return port


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    assert isinstance(status, int)
    return status


class TestComposeDeployScript:
    """deploy/ci/compose-deploy.sh for real, with podman-compose and podman standing in for
    `docker compose` and `docker`: two images built from the base image, one whose /readyz
    answers 200 and one whose /readyz answers 503."""

    @pytest.mark.timeout(600)  # a cold base image (debootstrap) on the first run
    def test_deploys_then_rolls_back_a_failing_image(self, tmp_path: Path) -> None:
        """A good image deploys (exit 0, .env names it, /readyz 200); a failing one is
        rolled back to the good one (exit 1, .env names the good one again, the running
        container is the good image and answers 200)."""
        compose_tool = require_tool("podman-compose")
        podman = Podman.required()
        base = podman.base_image()
        good, bad = "localhost/tgfleet-deploy-probe:good", "localhost/tgfleet-deploy-probe:bad"
        for tag, status in ((good, 200), (bad, 503)):
            # The status is in the file, not a build arg: podman 4.3 reuses a cached layer
            # whatever the arg's value.
            context = tmp_path / f"probe-{status}"
            context.mkdir()
            (context / "probe.py").write_text(PROBE.replace("STATUS", str(status)))
            (context / "Containerfile").write_text(
                f'FROM {base}\nCOPY probe.py /probe.py\nCMD ["python3", "/probe.py"]\n'
            )
            podman.build(tag, context=context, timeout=300)

        port = free_port()
        # The project's name is the directory's: unique, as other test sessions may run
        # on this machine's podman store at the same time.
        host = tmp_path / f"deploy{os.getpid()}"
        host.mkdir()
        (host / "compose.yaml").write_text(COMPOSE_FILE % port)
        podman_flags = podman.prefix[1:]
        env = {
            **podman.env(),
            "COMPOSE": " ".join(
                [compose_tool, *(f"--podman-args={flag}" for flag in podman_flags)]
            ),
            "DOCKER": " ".join(podman.prefix),
            "HEALTH_TIMEOUT": "5",
            "WAIT_TIMEOUT": "60",
        }

        def deploy(image: str) -> subprocess.CompletedProcess[str]:
            url = f"http://127.0.0.1:{port}/readyz"
            return subprocess.run(
                [BASH, str(COMPOSE_DEPLOY), str(host), image, url],
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )

        def running_images() -> list[str]:
            listed = podman(
                "ps",
                "--filter",
                f"label=io.podman.compose.project={host.name}",
                "--format",
                "{{.Image}}",
            )
            return listed.stdout.split()

        try:
            first = deploy(good)
            assert first.returncode == 0, first.stderr
            assert f"TGFLEET_IMAGE={good}" in (host / ".env").read_text()
            assert running_images() == [good]
            assert readyz(port) == 200

            second = deploy(bad)
            assert second.returncode == 1, second.stderr
            assert f"rolling back to {good}" in second.stderr
            assert (host / ".env").read_text().splitlines() == [f"TGFLEET_IMAGE={good}"]
            assert running_images() == [good]
            assert readyz(port) == 200
        finally:
            subprocess.run(
                [*env["COMPOSE"].split(), "down", "--timeout", "5"],
                cwd=host,
                env=env,
                capture_output=True,
                timeout=TIMEOUT,
                check=False,
            )
