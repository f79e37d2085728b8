"""podman as the delivery checks use it: a store of their own under ``cache_dir()`` and the
configuration that works on these machines.

What works here (tried; see docs/deploy.md, "What CI proves"): a ``CONTAINERS_CONF`` file
with ``runtime = "runc"``, ``cgroup_manager = "cgroupfs"`` and ``default_ulimits`` (the
open-files hard limit of this process, 4096 processes), and the store chosen with
``--root``/``--runroot`` flags. ``CONTAINERS_STORAGE_CONF`` is not used: it stalls every
``run --rm`` 20 s. The store lives under ``cache_dir()/podman`` so image layers (the
debootstrap base, the dependency layer) are reused between test sessions and CI runs.

`Podman` is synchronous (``subprocess``); an async test calls it through
``asyncio.to_thread``. Containers run on the host's network unless told otherwise: the
host's PostgreSQL is on 127.0.0.1, and nothing needs port mapping. Health checks run only
when asked (``podman healthcheck run``): there is no systemd here to time them.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.deploy.tools import ROOT, cache_dir, find_tool, require_tool

#: The image the delivery checks build from this checkout (shared-names: tests use it).
IMAGE = "localhost/tgfleet:ci"
#: The debootstrap base deploy/image/base-image.sh imports.
BASE_IMAGE = "localhost/tgfleet-base:bookworm"
BASE_SCRIPT = ROOT / "deploy" / "image" / "base-image.sh"
#: The host's CA bundle, handed to the build as the ``ca_bundle`` secret (pip behind a
#: TLS-intercepting proxy needs it; elsewhere it changes nothing).
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class PodmanError(RuntimeError):
    """A podman command failed; the message carries its command line and output."""


def _containers_conf(path: Path) -> Path:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = hard if hard != resource.RLIM_INFINITY else 1048576
    text = (
        "# written by tests/deploy/podman.py\n"
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=4096:4096"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


@dataclass(frozen=True)
class Podman:
    """``podman`` with the checks' store and configuration."""

    executable: str
    home: Path = field(default_factory=lambda: cache_dir() / "podman")

    @classmethod
    def available(cls) -> Podman | None:
        """A `Podman`, or ``None`` where podman is not installed."""
        found = find_tool("podman")
        return None if found is None else cls(found)

    @classmethod
    def required(cls) -> Podman:
        """A `Podman`; skips the test without podman (fails under ``CI=true``)."""
        return cls(require_tool("podman"))

    @property
    def conf(self) -> Path:
        return _containers_conf(self.home / "containers.conf")

    @property
    def prefix(self) -> list[str]:
        """The command that starts every podman call (``PODMAN`` for base-image.sh)."""
        return [
            self.executable,
            "--root",
            str(self.home / "root"),
            "--runroot",
            str(self.home / "runroot"),
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def __call__(
        self, *args: str, timeout: float = 120, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``podman ARGS``; raises `PodmanError` when it fails and ``check`` is set."""
        argv = [*self.prefix, *args]
        done = subprocess.run(
            argv,
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            msg = (
                f"podman {' '.join(args)} exited {done.returncode}\n"
                f"stdout: {done.stdout[-4000:]}\nstderr: {done.stderr[-4000:]}"
            )
            raise PodmanError(msg)
        return done

    # ------------------------------------------------------------------ images

    def base_image(self, *, timeout: float = 600) -> str:
        """Make (or reuse) the debootstrap base with deploy/image/base-image.sh."""
        if self("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return BASE_IMAGE
        require_tool("debootstrap")
        done = subprocess.run(
            ["bash", str(BASE_SCRIPT)],  # noqa: S607 - bash from PATH
            env={**self.env(), "PODMAN": " ".join(self.prefix)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            msg = f"{BASE_SCRIPT.name} exited {done.returncode}: {done.stderr[-4000:]}"
            raise PodmanError(msg)
        return BASE_IMAGE

    def build(
        self,
        tag: str,
        *,
        context: Path = ROOT,
        containerfile: Path | None = None,
        build_args: Mapping[str, str] | None = None,
        timeout: float = 900,
    ) -> str:
        """``podman build`` in docker format (HEALTHCHECK and SHELL are docker-format only),
        on the host's network, with the host's CA bundle as the ``ca_bundle`` secret; the
        image's id (the tag may move: other test sessions on the machine share the store)."""
        args = ["build", "--quiet", "--format", "docker", "--network", "host", "--tag", tag]
        if HOST_CA_BUNDLE.is_file():
            args += ["--secret", f"id=ca_bundle,src={HOST_CA_BUNDLE}"]
        for name, value in (build_args or {}).items():
            args += ["--build-arg", f"{name}={value}"]
        if containerfile is not None:
            args += ["--file", str(containerfile)]
        done = self(*args, str(context), timeout=timeout)
        return done.stdout.split()[-1]

    def inspect(self, what: str, *, kind: str = "image") -> dict[str, Any]:
        """``podman KIND inspect WHAT`` as a dict (kind: image, container, volume)."""
        data = json.loads(self(kind, "inspect", what).stdout)
        assert isinstance(data, list)
        assert len(data) == 1, data
        first = data[0]
        assert isinstance(first, dict)
        return first

    def image_size(self, image: str) -> int:
        """The image's size in bytes, as ``podman images`` counts it."""
        size = self.inspect(image)["Size"]
        assert isinstance(size, int)
        return size

    def remove_image(self, image: str) -> None:
        self("rmi", "--force", image, check=False)

    # -------------------------------------------------------------- containers

    def run_args(
        self,
        image: str,
        command: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        volumes: Sequence[str] = (),
        read_only: bool = True,
        network: str = "host",
        entrypoint: str | None = None,
        user: str | None = None,
    ) -> list[str]:
        args = ["--network", network, "--health-interval", "disable"]
        if read_only:
            args.append("--read-only")
        if name is not None:
            args += ["--name", name]
        if entrypoint is not None:
            args += ["--entrypoint", entrypoint]
        if user is not None:
            args += ["--user", user]
        for volume in volumes:
            args += ["--volume", volume]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        return [*args, image, *command]

    def run(
        self,
        image: str,
        *command: str,
        stdin: str | None = None,
        timeout: float = 120,
        check: bool = True,
        **options: Any,
    ) -> subprocess.CompletedProcess[str]:
        """Run a one-shot container to its end (removed afterwards); ``options`` as
        `run_args`. With ``stdin``, it is the container's standard input."""
        interactive = ["--interactive"] if stdin is not None else []
        args = self.run_args(image, command, **options)
        return self("run", "--rm", *interactive, *args, stdin=stdin, timeout=timeout, check=check)

    def start(self, image: str, *command: str, name: str, **options: Any) -> str:
        """Start a detached container named ``name``; its id."""
        args = self.run_args(image, command, name=name, **options)
        return self("run", "--detach", *args).stdout.strip()

    def stop(self, name: str, *, timeout: int = 30) -> None:
        """SIGTERM (then SIGKILL after ``timeout`` s); waits until the container exited."""
        self("stop", "--time", str(timeout), name, timeout=timeout + 30)

    def exit_code(self, name: str) -> int:
        code = self.inspect(name, kind="container")["State"]["ExitCode"]
        assert isinstance(code, int)
        return code

    def running(self, name: str) -> bool:
        state = self.inspect(name, kind="container")["State"]
        return bool(state["Running"])

    def logs(self, name: str, *, tail: int = 40) -> str:
        done = self("logs", "--tail", str(tail), name, check=False)
        return done.stdout + done.stderr

    def remove(self, *names: str) -> None:
        """Remove containers (stopped or not) with their anonymous volumes; those gone are
        ignored."""
        if names:
            self("rm", "--force", "--ignore", "--volumes", "--time", "0", *names, check=False)

    def create_volume(self, name: str) -> str:
        self("volume", "create", name)
        return name

    def remove_volume(self, *names: str) -> None:
        if names:
            self("volume", "rm", "--force", *names, check=False)
