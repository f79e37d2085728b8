"""Our own import-linter contracts break on a deliberately bad import.

The contracts are the ones in pyproject.toml (those of our own types, read from the file, with
``tgfleet`` renamed), checked by the real ``lint-imports`` against a throw-away package laid out
like ours: two domains (``alpha``, ``beta``), a kit with the shared repository base, a sandbox.
Each case adds one import and names the contract it must break; a domain that no list names
(``gamma``) is covered too, since the rules are patterns, not lists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUR_TYPES = ("private_to_package", "package_layers", "only_imports")

PRIVATE = "A domain calls another domain's service, never its repository"
LAYERS = "Inside every domain: endpoints -> service -> repository"
SANDBOX = "The sandbox is a separate program: it shares only the kit, exceptions and logging"

#: module -> its imports; every package gets an ``__init__``.
LAYOUT: dict[str, list[str]] = {
    "exceptions": [],
    "logging": [],
    "kit.repository": [],
    "kit.db": ["fake.exceptions"],
    "alpha.endpoints": ["fake.alpha.service", "fake.kit.db"],
    "alpha.service": ["fake.alpha.repository", "fake.beta.service"],
    "alpha.repository": ["fake.kit.repository"],
    "alpha.schemas": [],
    "beta.endpoints": ["fake.beta.service", "fake.alpha.schemas"],
    "beta.service": ["fake.beta.repository", "fake.beta.runtime_repository"],
    "beta.repository": ["fake.kit.repository"],
    "beta.runtime_repository": ["fake.kit.repository"],
    "gamma.service": ["fake.alpha.service"],
    "sandbox.server": ["fake.kit.db", "fake.exceptions", "fake.logging", "fake.sandbox.world"],
    "sandbox.world": [],
}


def _config(tmp_path: Path) -> Path:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        settings = tomllib.load(handle)["tool"]["importlinter"]
    ours = [c for c in settings["contracts"] if c["type"] in OUR_TYPES]
    assert {c["type"] for c in ours} == set(OUR_TYPES)
    text = ["[tool.importlinter]", 'root_package = "fake"']
    text.append(f"contract_types = {json.dumps(settings['contract_types'])}")
    for contract in ours:
        text.append("[[tool.importlinter.contracts]]")
        for key, value in contract.items():
            renamed = json.loads(json.dumps(value).replace("tgfleet", "fake"))
            text.append(f"{key} = {json.dumps(renamed)}")
    path = tmp_path / "contracts.toml"
    path.write_text("\n".join(text) + "\n")
    return path


def _lint(tmp_path: Path, extra: dict[str, list[str]] | None = None) -> tuple[int, str]:
    layout = {name: list(imports) for name, imports in LAYOUT.items()}
    for name, imports in (extra or {}).items():
        layout.setdefault(name, []).extend(imports)
    package = tmp_path / "fake"
    for name, imports in layout.items():
        path = package.joinpath(*name.split(".")).with_suffix(".py")
        for folder in [package, *path.relative_to(package).parents]:
            (package / folder).mkdir(parents=True, exist_ok=True)
            (package / folder / "__init__.py").touch()
        path.write_text("".join(f"import {module}\n" for module in imports))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run(
        [
            Path(sys.executable).with_name("lint-imports"),
            "--config",
            _config(tmp_path),
            "--no-cache",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = " ".join((done.stdout + done.stderr).split())
    return done.returncode, out


def test_the_fake_layout_keeps_every_contract(tmp_path: Path) -> None:
    code, out = _lint(tmp_path)
    assert code == 0, out
    for name in (PRIVATE, LAYERS, SANDBOX):
        assert f"{name} KEPT" in out


#: Imports each contract refuses, as import-linter names them.
BAD_IMPORTS = {
    # another domain's repository, and one no contract list names (gamma)
    PRIVATE: (
        "fake.beta.service -> fake.alpha.repository",
        "fake.alpha.service -> fake.beta.runtime_repository",
        "fake.gamma.service -> fake.beta.repository",
        "fake.kit.db -> fake.alpha.repository",
    ),
    # inside a domain: skipping the service, and calling upwards
    LAYERS: (
        "fake.alpha.endpoints -> fake.alpha.repository",
        "fake.beta.runtime_repository -> fake.beta.service",
        "fake.alpha.service -> fake.alpha.endpoints",
    ),
    # the sandbox reaching a domain, a new domain, or a domain's schemas
    SANDBOX: (
        "fake.sandbox.world -> fake.alpha.service",
        "fake.sandbox.server -> fake.gamma.service",
        "fake.sandbox.world -> fake.alpha.schemas",
    ),
}


@pytest.mark.parametrize(
    ("broken", "link"),
    [(contract, link) for contract, links in BAD_IMPORTS.items() for link in links],
)
def test_a_bad_import_breaks_its_contract(tmp_path: Path, broken: str, link: str) -> None:
    importer, imported = link.removeprefix("fake.").split(" -> ")
    code, out = _lint(tmp_path, {importer: [imported]})
    assert code == 1, out
    assert f"{broken} BROKEN" in out
    assert link in out
    others = {PRIVATE, LAYERS, SANDBOX} - {broken}
    assert all(f"{name} KEPT" in out for name in others), out


def test_the_kit_repository_base_is_shared_on_purpose(tmp_path: Path) -> None:
    code, out = _lint(tmp_path, {"gamma.service": ["fake.kit.repository"]})
    assert code == 0, out
