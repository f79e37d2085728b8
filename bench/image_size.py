"""The container image's size beside a naive single-stage build of the same project.

Both are built here with podman from the same base (the debootstrap one that
deploy/image/base-image.sh makes; the tests' store under ~/.cache/tgfleet-ci/podman): the
project's multi-stage Dockerfile, and a single stage that installs the compiler and headers
PyICU needs, copies the build context and runs ``pip install .`` into a venv, keeping what a
naive build keeps (apt lists, pip's cache, the compiler); only the CA bundle secret is
added, as in the Dockerfile (pip behind a TLS-intercepting proxy). The naive build compiles
PyICU each time (minutes), which is why this is a benchmark and not a test. Results go to
docs/deploy.md ("Size and build time").
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import _common  # noqa: F401 - puts the repository root on sys.path
from tests.deploy.podman import BASE_IMAGE, IMAGE, Podman
from tests.deploy.tools import ROOT

NAIVE_IMAGE = "localhost/tgfleet-naive:bench"
NAIVE = f"""\
FROM {BASE_IMAGE}
RUN apt-get update && apt-get install -y g++ libicu-dev pkg-config python3-dev
COPY . /app
WORKDIR /app
RUN --mount=type=secret,id=ca_bundle \\
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \\
    && python3 -m venv /venv && /venv/bin/pip install .
CMD ["/venv/bin/tgfleet", "api"]
"""


def _mb(size: int) -> str:
    return f"{size / 1e6:.0f} MB"


def main() -> str:
    podman = Podman.available()
    if podman is None:
        return "### Image size\n\nskipped: podman not found (`make deploy-tools`)."
    base = podman.base_image()
    started = time.monotonic()
    podman.build(IMAGE, build_args={"BASE_IMAGE": base})
    multi_seconds = time.monotonic() - started
    with tempfile.TemporaryDirectory(prefix="tgfleet-naive-") as folder:
        containerfile = Path(folder) / "Containerfile"
        containerfile.write_text(NAIVE)
        started = time.monotonic()
        podman.build(NAIVE_IMAGE, context=ROOT, containerfile=containerfile, timeout=1800)
        naive_seconds = time.monotonic() - started
    sizes = {name: podman.image_size(name) for name in (base, IMAGE, NAIVE_IMAGE)}
    podman.remove_image(NAIVE_IMAGE)
    ratio = sizes[IMAGE] / sizes[NAIVE_IMAGE]
    saved = _mb(sizes[NAIVE_IMAGE] - sizes[IMAGE])
    rows = [
        ("base `" + base + "`", sizes[base], "(cached)"),
        ("tgfleet, multi-stage (Dockerfile)", sizes[IMAGE], f"{multi_seconds:.0f} s"),
        ("naive single stage (`pip install .`)", sizes[NAIVE_IMAGE], f"{naive_seconds:.0f} s"),
    ]
    summary = (
        f"The runtime image is {ratio:.0%} of the naive one ({saved} less: no compiler, "
        "headers, apt lists or pip cache). The multi-stage build time is a warm one when "
        "its layers were cached."
    )
    return "\n".join(
        [
            "### Image size (podman, debootstrap bookworm base)",
            "",
            "| image | size | build here |",
            "|---|---|---|",
            *(f"| {name} | {_mb(size)} | {took} |" for name, size, took in rows),
            "",
            summary,
        ]
    )


if __name__ == "__main__":
    print(main())
