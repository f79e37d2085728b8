"""The vendored front-end files: fetch them from the npm registry, check them, copy them in.

The console and the offline /docs and /redoc load a few files published on npm (htmx, its
SSE extension, Pico CSS, Swagger UI, ReDoc; axe-core for the browser tests only). They are
committed, not built: there is no Node build step and no CDN at run time. ``PACKAGES`` below
is the one list of what is vendored, at which version, with the sha512 integrity the registry
published; ``src/tgfleet/console/static/VENDORED.md`` says the same for people.

    python tools/vendor.py            # check: the committed files are the pinned tarballs'
    python tools/vendor.py --write    # (after editing PACKAGES) fetch and copy the files in

Both fetch each tarball with ``npm pack`` into a temporary directory, refuse it unless its
sha512 equals both the pinned integrity and the one the registry publishes now, and compare
(or copy) the kept files. To update a package: change its version, set ``integrity`` to the
output of ``npm view <name>@<version> dist.integrity``, run ``--write``, rename the version
in ``tgfleet.console.assets.VENDOR`` and VENDORED.md, and run the browser suite.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC_VENDOR = ROOT / "src" / "tgfleet" / "console" / "static" / "vendor"
TEST_VENDOR = ROOT / "tests" / "browser" / "vendor"


@dataclass(frozen=True)
class Package:
    """One npm package: where its files go and which of the tarball's files are kept
    (paths inside the tarball's ``package/`` folder -> the name they are kept under)."""

    name: str
    version: str
    integrity: str
    folder: Path  # the files land in this folder (the version is part of its name)
    files: dict[str, str]

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


PACKAGES: tuple[Package, ...] = (
    Package(
        "htmx.org",
        "2.0.11",
        "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        STATIC_VENDOR / "htmx-2.0.11",
        {"dist/htmx.min.js": "htmx.min.js", "LICENSE": "LICENSE"},
    ),
    Package(
        "htmx-ext-sse",
        "2.2.4",
        "sha512-LJmxVhykyflBWgh5PvbRidcyuqMHlgfajmmzumvKctv9puvsufeH6OaejSMZTNTnEI8O2wXXn4ZZtBdpEMqmEQ==",
        STATIC_VENDOR / "htmx-ext-sse-2.2.4",
        {"dist/sse.js": "sse.js", "LICENSE": "LICENSE"},
    ),
    Package(
        "@picocss/pico",
        "2.1.1",
        "sha512-kIDugA7Ps4U+2BHxiNHmvgPIQDWPDU4IeU6TNRdvXQM1uZX+FibqDQT2xUOnnO2yq/LUHcwnGlu1hvf4KfXnMg==",
        STATIC_VENDOR / "pico-2.1.1",
        {"css/pico.min.css": "pico.min.css", "LICENSE.md": "LICENSE.md"},
    ),
    Package(
        "swagger-ui-dist",
        "5.36.0",
        "sha512-Lt6/Kb0gXmLdiabLhvso4VdJP9V7qJWB0zh0gzeXUV3+CMOTzMmvpJRSXN7EAjfwixwmoi9ezDbLHiexC7lA9A==",
        STATIC_VENDOR / "swagger-ui-5.36.0",
        {
            "swagger-ui-bundle.js": "swagger-ui-bundle.js",
            "swagger-ui.css": "swagger-ui.css",
            "LICENSE": "LICENSE",
            "swagger-ui-bundle.js.LICENSE.txt": "swagger-ui-bundle.js.LICENSE.txt",
        },
    ),
    Package(
        "redoc",
        "2.5.2",
        "sha512-sTJfItvRkcDTojB6wdLN4M+Ua6mlZwElV21Tf8Mn7IbQF/1Os6GvgQpZyLWPGZZHbhy7GC1Or1hTMHfz1vKh5A==",
        STATIC_VENDOR / "redoc-2.5.2",
        {
            "bundles/redoc.standalone.js": "redoc.standalone.js",
            "LICENSE": "LICENSE",
            "bundles/redoc.standalone.js.LICENSE.txt": "redoc.standalone.js.LICENSE.txt",
        },
    ),
    Package(
        "axe-core",
        "4.14.1",
        "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==",
        TEST_VENDOR,
        {"axe.min.js": "axe.min.js", "LICENSE": "LICENSE"},
    ),
)


class VendorError(Exception):
    """A tarball or a committed file is not what the pinned list says."""


def sha512_integrity(data: bytes) -> str:
    """The Subresource Integrity string npm publishes for a tarball."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _npm(*args: str, cwd: Path) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError("npm is not on PATH (Debian: apt-get install npm)")
    done = subprocess.run(  # noqa: S603 - our own fixed arguments
        [npm, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=300
    )
    if done.returncode != 0:
        raise VendorError(f"npm {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def fetch(package: Package, into: Path) -> dict[str, bytes]:
    """The kept files of ``package``'s tarball (their kept names -> content), after checking
    the tarball against the pinned integrity and the registry's."""
    published = json.loads(_npm("view", package.spec, "dist.integrity", "--json", cwd=into))
    packed = json.loads(_npm("pack", package.spec, "--json", cwd=into))
    tarball = into / packed[0]["filename"]
    actual = sha512_integrity(tarball.read_bytes())
    if not actual == package.integrity == published:
        msg = (
            f"{package.spec}: the tarball's integrity {actual} differs from the pinned "
            f"{package.integrity} or the registry's {published}"
        )
        raise VendorError(msg)
    kept: dict[str, bytes] = {}
    with tarfile.open(tarball) as archive:
        for inside, name in package.files.items():
            member = archive.extractfile(f"package/{inside}")
            if member is None:
                raise VendorError(f"{package.spec} has no file {inside}")
            kept[name] = member.read()
    return kept


def check(package: Package, files: dict[str, bytes]) -> list[str]:
    """What differs between the committed files and the tarball's."""
    problems = []
    for name, content in files.items():
        path = package.folder / name
        if not path.is_file():
            problems.append(f"{path.relative_to(ROOT)} is missing")
        elif path.read_bytes() != content:
            problems.append(f"{path.relative_to(ROOT)} differs from {package.spec}")
    return problems


def write(package: Package, files: dict[str, bytes]) -> None:
    package.folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (package.folder / name).write_bytes(content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="copy the files in")
    options = parser.parse_args(argv)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tgfleet-vendor-") as scratch:
        for package in PACKAGES:
            try:
                files = fetch(package, Path(scratch))
            except VendorError as exc:
                problems.append(str(exc))
                continue
            if options.write:
                write(package, files)
                print(f"wrote {package.spec} into {package.folder.relative_to(ROOT)}")
            else:
                problems.extend(check(package, files))
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems and not options.write:
        print(f"{len(PACKAGES)} packages: every vendored file is its pinned tarball's")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
