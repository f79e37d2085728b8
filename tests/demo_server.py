"""``tgfleet run --demo`` as a real process for the suites that drive a whole server from
outside (the browser console, the remote CLI): a free loopback port, its own data dir
and SQLite, nothing leaving loopback; ready once ``/readyz`` answers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.harness import free_port, tgfleet_env

START_TIMEOUT = 90.0


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def stop_group(process: subprocess.Popen[bytes], within: float) -> None:
    """SIGTERM the process group, SIGKILL it after ``within`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def demo_env(folder: Path, **settings: str) -> dict[str, str]:
    return tgfleet_env(
        TGFLEET_ENV="dev",
        TGFLEET_DATA_DIR=str(folder / "data"),
        TGFLEET_LOG_LEVEL="INFO",
        TGFLEET_TELEGRAM_DCS="",  # nothing leaves loopback
        **settings,
    )


@contextlib.contextmanager
def demo_process(folder: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """Start ``tgfleet run --demo`` (stdout and stderr to ``log``), yield its base URL once
    it is ready, SIGTERM its process group at the end."""
    port = free_port()
    argv = [sys.executable, "-m", "tgfleet", "run", "--demo", "--host", "127.0.0.1"]
    with log.open("wb") as output:
        server = subprocess.Popen(
            [*argv, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            cwd=folder,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers(f"{url}/readyz"):
            exited = server.poll()
            assert exited is None, f"tgfleet run --demo exited ({exited}):\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no /readyz in {START_TIMEOUT} s"
            time.sleep(0.2)  # polling another process
        yield url
    finally:
        stop_group(server, within=20)
