"""How fast the CLI starts (issue 19 item 4): wall and CPU time of ``tgfleet --help``,
``tgfleet version``, ``tgfleet context list`` and a remote ``tgfleet account list``
against a ``tgfleet run --demo`` server started here, beside ``python -c pass`` (the
interpreter alone) and the CLI before issue 19 (commit 16f1198, checked out into a
temporary worktree and run with this venv: ``PYTHONPATH=<that tree>/src``).

Every command runs ``CLI_START_RUNS`` times (default 15) as its own process, the cases
interleaved round by round so a burst of load hits all of them alike. Wall time is what a
person waits; CPU time (user + system of the child, from ``getrusage``) is what the start
costs, and stays comparable on a loaded machine where wall time does not. The section
also lists the top-level imports that cost most (``python -X importtime``), before and
after. Target: ``--help`` and remote ``account list`` under 300 ms.
"""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import _common
from tests.demo_server import demo_env, demo_process
from tests.harness import tgfleet_env

BEFORE = "16f1198"  # the last commit before the CLI's remote mode (ee69d84)
RUNS = int(os.environ.get("CLI_START_RUNS", "15"))
TARGET_MS = 300.0
TIMEOUT = 120.0
GIT = shutil.which("git") or "git"


@dataclass
class Case:
    name: str
    argv: list[str]
    env: dict[str, str]
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    failed: str | None = None

    def run_once(self) -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = _run(self.argv, self.env)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            self.failed = f"exit {done.returncode}: {lines[-1] if lines else ''}"[:160]
            return
        self.walls.append(wall)
        self.cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


def _run(
    argv: list[str], env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this venv's python and git, with our arguments
        argv,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )


def _ms(values: list[float], quantile: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    if quantile == 0.5:
        return f"{statistics.median(ordered) * 1000:.0f}"
    index = min(len(ordered) - 1, round(quantile * (len(ordered) - 1)))
    return f"{ordered[index] * 1000:.0f}"


def _python() -> list[str]:
    return [sys.executable]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tgfleet", *args]


@contextlib.contextmanager
def _old_tree() -> Iterator[Path | None]:
    """Commit ``BEFORE`` checked out into a temporary worktree (removed at the end)."""
    folder = Path(tempfile.mkdtemp(prefix="tgfleet-before-"))
    tree = folder / "tree"
    added = _run([GIT, "-C", str(_common.ROOT), "worktree", "add", "--detach", str(tree), BEFORE])
    try:
        yield tree if added.returncode == 0 else None
    finally:
        if added.returncode == 0:
            _run([GIT, "-C", str(_common.ROOT), "worktree", "remove", "--force", str(tree)])
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def _signed_in(home: Path) -> Iterator[dict[str, str] | None]:
    """A demo server, and the environment of a CLI signed in to it as the admin."""
    folder = Path(tempfile.mkdtemp(prefix="tgfleet-cli-start-"))
    server_env = demo_env(
        folder,
        TGFLEET_ARGON2_TIME_COST="1",
        TGFLEET_ARGON2_MEMORY_KIB="1024",
        TGFLEET_ARGON2_PARALLELISM="1",
    )
    with demo_process(folder, server_env, folder / "run.log") as url:
        password = secrets.token_urlsafe(18)
        reset = _run(
            _cli("user", "reset-password", "admin", "--password-stdin"), server_env, password
        )
        client_env = tgfleet_env(XDG_CONFIG_HOME=str(home), COLUMNS="120", NO_COLOR="1")
        login = _run(
            _cli("login", "--server", url, "-u", "admin", "--password-stdin"), client_env, password
        )
        yield client_env if reset.returncode == 0 and login.returncode == 0 else None


def top_imports(argv: list[str], env: dict[str, str], count: int = 8) -> list[tuple[str, int]]:
    """What a command's imports cost, by top-level package (``typer``, ``rich``,
    ``email``...): the sum of its modules' own import times (µs, one run), largest first."""
    done = _run([argv[0], "-X", "importtime", *argv[1:]], env)
    totals: dict[str, int] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, _, name = line.removeprefix("import time:").split("|")
        if not own.strip().isdigit():
            continue  # the header
        package = name.strip().split(".")[0]
        totals[package] = totals.get(package, 0) + int(own)
    return sorted(totals.items(), key=lambda row: -row[1])[:count]


def main() -> str:
    with tempfile.TemporaryDirectory(prefix="tgfleet-cli-home-") as home_dir:
        home = Path(home_dir)
        local_env = tgfleet_env(XDG_CONFIG_HOME=str(home / "nobody"), COLUMNS="120")
        with _old_tree() as old, _signed_in(home / "admin") as remote_env:
            cases = [
                Case(
                    "`python -c pass` (the interpreter alone)",
                    [*_python(), "-c", "pass"],
                    local_env,
                ),
                Case("`tgfleet --help`", _cli("--help"), local_env),
                Case("`tgfleet version`", _cli("version"), local_env),
                Case("`tgfleet context list`", _cli("context", "list"), local_env),
            ]
            if remote_env is not None:
                cases.append(
                    Case(
                        "`tgfleet account list` (remote, 20 accounts)",
                        _cli("account", "list"),
                        remote_env,
                    )
                )
            old_env = {**local_env, "PYTHONPATH": f"{old}/src"} if old is not None else None
            if old_env is not None:
                cases += [
                    Case(f"before ({BEFORE}): `tgfleet --help`", _cli("--help"), old_env),
                    Case(f"before ({BEFORE}): `tgfleet version`", _cli("version"), old_env),
                ]
            for _ in range(RUNS):
                for case in cases:
                    if case.failed is None:
                        case.run_once()
            after_top = top_imports(_cli("--help"), local_env)
            before_top = top_imports(_cli("--help"), old_env) if old_env is not None else []
    return _section(cases, after_top, before_top, remote_env is not None, old_env is not None)


def _section(
    cases: list[Case],
    after_top: list[tuple[str, int]],
    before_top: list[tuple[str, int]],
    remote: bool,
    old: bool,
) -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines = [
        "### CLI start: wall and CPU time per command (issue 19 item 4)",
        "",
        (
            f"{RUNS} runs of each, interleaved; load average at the end: {load}. Wall time "
            "is what a person waits (it grows with the machine's load); CPU time (user + "
            "system of the process) is what the start costs. Target: under "
            f"{TARGET_MS:.0f} ms for `--help` and a remote `account list`."
        ),
        "",
        "| command | wall median | wall p90 | CPU median | CPU p90 |",
        "|---|---|---|---|---|",
    ]
    for case in cases:
        if case.failed is not None:
            lines.append(f"| {case.name} | failed: {case.failed} | | | |")
            continue
        lines.append(
            f"| {case.name} | {_ms(case.walls, 0.5)} ms | {_ms(case.walls, 0.9)} ms "
            f"| {_ms(case.cpus, 0.5)} ms | {_ms(case.cpus, 0.9)} ms |"
        )
    if not remote:
        lines += ["", "The remote `account list` was not measured: the demo server's login failed."]
    if not old:
        lines += ["", f"The before ({BEFORE}) was not measured: `git worktree add` failed."]
    for title, top in (("after", after_top), (f"before ({BEFORE})", before_top)):
        if not top:
            continue
        lines += [
            "",
            (
                f"What `tgfleet --help` imports, {title}, by package (`python -X importtime`, "
                "one run; each package's own time, the modules it pulls in under theirs):"
            ),
            "",
            "| package | ms |",
            "|---|---|",
            *(f"| `{name}` | {micros / 1000:.0f} |" for name, micros in top),
        ]
    return "\n".join(lines)
