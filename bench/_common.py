"""Helpers the benchmarks share: process CPU and RSS from /proc, percentiles, limits.

Importing it also puts the repository root on ``sys.path``: the benchmarks start their
processes with the tests' harness (``tests/harness.py``, ``tests/e2e/harness.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
import resource
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr
from telethon.crypto import aes as telethon_aes
from telethon.crypto import libssl

from tgfleet.config import Environment, Settings
from tgfleet.logging import configure_logging

T = TypeVar("T")
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))  # after bench/ itself


def backend() -> str:
    """Which AES implementation Telethon uses here."""
    if telethon_aes.cryptg is not None:
        return "cryptg"
    if libssl.encrypt_ige and libssl.decrypt_ige:
        return "libssl (ctypes; cryptg absent)"
    return "pyaes (pure Python; cryptg and libssl absent)"


def bench_settings(data_dir: Path, database_url: str | None, **options: Any) -> Settings:
    """Test settings on ``database_url`` (None: SQLite in ``data_dir``) with a fresh vault
    key, cheap password hashing, no Telegram probe, and ``options``."""
    return Settings(
        env=Environment.TEST,
        data_dir=data_dir,
        database_url=database_url,
        vault_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
        vault_key_file=None,
        vault_passphrase=None,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        argon2_parallelism=1,
        telegram_dcs="",
        **options,
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def raise_nofile(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_in_tempdir(run: Callable[[Path], Coroutine[Any, Any, T]], prefix: str) -> T:
    """``run`` on a fresh temporary directory (removed after), on its own event loop."""
    configure_logging(level="WARNING")  # as bench/run.py does, also when run alone
    logging.getLogger("telethon").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        return asyncio.run(run(Path(tmp)))


@dataclasses.dataclass
class Connection:
    """One keep-alive HTTP/1.1 connection that speaks just enough of the protocol for a
    request without a body answered with a Content-Length (uvicorn's answers here).
    Concurrent callers use one each: a shared httpx pool costs the callers far more CPU
    than the server spends (encode/httpx#3215), and on 2 shared cores that would be what
    the latency measures."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    headers: str  # with every request, each line ending in CRLF
    within: float  # seconds for each connect and each request

    @classmethod
    async def open(cls, host: str, port: int, within: float, **headers: str) -> Connection:
        """``headers`` (``Host`` first) go with every request; each step ``within`` s."""
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return cls(reader, writer, lines, within)

    async def send(self, method: str, path: str, headers: str = "") -> int:
        """``method path`` with the connection's and these (``Name: value\\r\\n``)
        headers; the status code (the body is read and dropped)."""
        async with asyncio.timeout(self.within):
            self.writer.write(f"{method} {path} HTTP/1.1\r\n{self.headers}{headers}\r\n".encode())
            head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            status_line, *fields = head.split("\r\n")
            length = None
            for field in fields:
                name, _, value = field.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length is None:
                msg = f"{method} {path}: no Content-Length in {head!r}"
                raise RuntimeError(msg)
            await self.reader.readexactly(length)
        return int(status_line.split(" ", 2)[1])

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
