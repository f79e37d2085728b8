"""Find the delivery checks' external tools (podman, checkov, kubernetes-validate, hadolint,
podman-compose, actionlint, kubectl, debootstrap).

They are looked up on ``PATH``, then in the directories of ``DEPLOY_CHECKS_PATH`` (``:``-
separated; ``.ci/run`` sets it to what ``tools/deploy-tools.sh`` printed), then in that
script's default cache. A missing tool skips the test with the command that installs it,
unless ``CI=true``, where it fails: .ci/run installs every one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """The machine's cache for the delivery checks (tools, the base image, podman's store)."""
    explicit = os.environ.get("DEPLOY_CHECKS_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tgfleet-ci"


def _search_path() -> str:
    extra = [d for d in os.environ.get("DEPLOY_CHECKS_PATH", "").split(os.pathsep) if d]
    cache = cache_dir()
    defaults = [str(cache / "tools-venv" / "bin"), str(cache / "npm" / "node_modules" / ".bin")]
    return os.pathsep.join([os.environ.get("PATH", ""), *extra, *defaults])


def find_tool(name: str) -> str | None:
    """The path of ``name``, or ``None``."""
    return shutil.which(name, path=_search_path())


def require_tool(name: str) -> str:
    """The path of ``name``; skips the test without it (fails in CI)."""
    found = find_tool(name)
    if found is not None:
        return found
    reason = f"{name} not found: `bash tools/deploy-tools.sh` installs it (.ci/run does)"
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)
