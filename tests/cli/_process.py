"""``tgfleet`` as a real process: its environment, a run to completion, and a long-running
server started until it prints a given line."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import TEST_JWT_SECRET, TEST_VAULT_KEY

START_TIMEOUT = 60.0


def tgfleet_env(db_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    data_dir.mkdir(mode=0o700, exist_ok=True)
    return {
        **os.environ,
        "TGFLEET_DATABASE_URL": db_url,
        "TGFLEET_DATA_DIR": str(data_dir),
        "TGFLEET_ENV": "test",
        "TGFLEET_JWT_SECRET": TEST_JWT_SECRET,
        "TGFLEET_VAULT_KEY": TEST_VAULT_KEY,
        "TGFLEET_TELEGRAM_DCS": "",
        "TGFLEET_ALERTING_ENABLED": "false",
        "TGFLEET_ARGON2_TIME_COST": "1",
        "TGFLEET_ARGON2_MEMORY_KIB": "1024",
        "TGFLEET_ARGON2_PARALLELISM": "1",
        "COLUMNS": "200",
        **extra,
    }


def tgfleet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tgfleet", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=START_TIMEOUT,
        check=False,
    )


@contextlib.contextmanager
def busy_port() -> Iterator[int]:
    """A port some other process (this test) listens on."""
    holder = socket.create_server(("127.0.0.1", 0))
    try:
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


def free_port() -> int:
    with busy_port() as port:
        return port


class Server:
    """A long-running ``tgfleet`` command; stdout is read line by line, stderr to a file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tgfleet", *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        self.lines: list[str] = []

    def wait_for_line(self, marker: str, timeout: float = START_TIMEOUT) -> str:
        """The first stdout line containing ``marker``; fails if the process exits first."""
        stdout = self.process.stdout
        assert stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} within {timeout} s: {self.lines}"
            if not selector.select(remaining):
                continue
            line = stdout.readline()
            assert line, f"tgfleet exited ({self.process.wait()}): {self.lines}"
            self.lines.append(line)
            if marker in line:
                return line

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path, *args: str) -> Iterator[Server]:
    server = Server(env, log, *args)
    try:
        yield server
    finally:
        server.stop()
