"""The host's check: free space in the data directory."""

from __future__ import annotations

import asyncio
import shutil

from tgfleet.config import Settings
from tgfleet.health.checks.result import SYSTEM, result
from tgfleet.health.schemas import CheckResult, Status


async def disk_free(settings: Settings) -> list[CheckResult]:
    """Free bytes in ``data_dir`` against ``health_disk_warn_bytes`` and ``..._fail_bytes``."""
    usage = await asyncio.to_thread(shutil.disk_usage, settings.data_dir)
    warn_below = settings.health_disk_warn_bytes
    fail_below = settings.health_disk_fail_bytes
    if usage.free < fail_below:
        status = Status.FAIL
    elif usage.free < warn_below:
        status = Status.WARN
    else:
        status = Status.PASS
    output = (
        f"{_size(usage.free)} free in the data directory (warn below {_size(warn_below)}, "
        f"fail below {_size(fail_below)})"
    )
    return [
        result(
            SYSTEM,
            status,
            usage.free,
            "bytes",
            component_id="data_dir",
            output=None if status is Status.PASS else output,
        )
    ]


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
