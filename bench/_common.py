"""Helpers the benchmarks share: process CPU and RSS from /proc, percentiles, limits.

Importing it also puts the repository root on ``sys.path``: the benchmarks start their
processes with the tests' harness (``tests/harness.py``, ``tests/e2e/harness.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from telethon.crypto import aes as telethon_aes
from telethon.crypto import libssl

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
