"""Fixtures of the delivery checks: ``podman`` (the checks' podman, or a skip) and
``tgfleet_image`` (this checkout's image, built once per test session)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

import pytest

from tests.deploy.podman import IMAGE, Podman
from tests.deploy.tools import ROOT
from tgfleet import __version__


@dataclass(frozen=True)
class BuiltImage:
    """The image ``tgfleet_image`` built: its tag, its id (run this: another test session
    on the machine may move the tag), its base, and the build args in its labels."""

    ref: str
    id: str
    base: str
    version: str
    revision: str
    build_seconds: float


def _revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],  # noqa: S607 - git from PATH
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


@pytest.fixture(scope="session")
def podman() -> Podman:
    """The checks' podman (store and containers.conf under cache_dir()); skips without it."""
    return Podman.required()


@pytest.fixture(scope="session")
def tgfleet_image(podman: Podman) -> BuiltImage:
    """``localhost/tgfleet:ci`` built from this checkout's Dockerfile on the debootstrap
    base (made once and cached; the layers stay in podman's store under cache_dir()).
    A cold build (debootstrap, compiling PyICU) takes about 5 minutes, a warm one seconds:
    a test using it sets ``@pytest.mark.timeout(900)`` (the default 120 s counts fixtures)."""
    started = time.monotonic()
    base = podman.base_image()
    revision = _revision()
    image_id = podman.build(
        IMAGE,
        build_args={"BASE_IMAGE": base, "VERSION": __version__, "REVISION": revision},
    )
    return BuiltImage(
        ref=IMAGE,
        id=image_id,
        base=base,
        version=__version__,
        revision=revision,
        build_seconds=time.monotonic() - started,
    )
