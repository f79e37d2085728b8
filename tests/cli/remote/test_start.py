"""Fast start: the commands that need no server parts import none of them.

Each case runs the CLI in a subprocess, as ``python -m tgfleet`` does, and reads the
modules it had imported when it exited (``sys.modules`` written by an ``atexit`` hook, so
every import the command made, however late, is counted). The heavy parts are the server's:
Telethon, the ORM, FastAPI, the settings (pydantic-settings) and the models; a remote
command and the help texts must start without them (issue 19: under 300 ms).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.remote.conftest import CLI_TIMEOUT, Cli, DemoServer

HEAVY = (
    "telethon",
    "sqlalchemy",
    "sqlalchemy.orm",
    "fastapi",
    "pydantic_settings",
    "tgfleet.models",
    "tgfleet.config",
    "pydantic",  # typer 0.29 coerces values with it; tgfleet.cli._coerce avoids that
)

#: Runs the CLI's entry point with argv, then writes sys.modules to the file in argv[1].
_PROBE = """\
import atexit, sys
out = sys.argv[1]
def _dump():
    with open(out, "w") as handle:
        handle.write("\\n".join(sorted(sys.modules)))
atexit.register(_dump)
sys.argv = ["tgfleet", *sys.argv[2:]]
from tgfleet.cli import main
main()
"""


def imported_modules(cli: Cli, tmp_path: Path, *args: str) -> tuple[int, set[str], str]:
    """Run ``tgfleet ARGS`` in a subprocess; its exit status, the modules it had imported
    when it exited, and its stderr."""
    listing = tmp_path / "modules.txt"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(listing), *args],
        input="",
        capture_output=True,
        text=True,
        env=cli.env(),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    return done.returncode, set(listing.read_text().split()), done.stderr


def heavy_in(modules: set[str]) -> list[str]:
    return [name for name in HEAVY if name in modules]


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("context", "list"),
        ("login", "--help"),
        ("account", "--help"),
        ("version",),
    ],
    ids=" ".join,
)
def test_help_and_local_config_commands_import_no_server_part(
    cli: Cli, tmp_path: Path, args: tuple[str, ...]
) -> None:
    status, modules, stderr = imported_modules(cli, tmp_path, *args)
    assert status == 0, stderr
    assert "tgfleet.cli" in modules  # the probe ran the CLI, not nothing
    assert heavy_in(modules) == []


def test_the_probe_sees_a_database_direct_command_import_the_orm(cli: Cli, tmp_path: Path) -> None:
    """The guard can fail: a command that opens the database is seen importing it."""
    data = tmp_path / "data"
    status, modules, stderr = imported_modules(
        Cli(cli.home, {"TGFLEET_DATA_DIR": str(data), "TGFLEET_ENV": "test"}),
        tmp_path,
        "db",
        "current",
    )
    assert status in {0, 1}, stderr
    assert {"sqlalchemy", "tgfleet.config"} <= modules


def test_remote_account_list_imports_no_server_part(
    demo_server: DemoServer, operator: Cli, tmp_path: Path
) -> None:
    status, modules, stderr = imported_modules(operator, tmp_path, "account", "list")
    assert status == 0, stderr
    assert "httpx" in modules  # it did talk to the server
    assert heavy_in(modules) == []
