"""The check of Telegram's reachability, from the network monitor's last probes."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from tgfleet.health.checks.result import SYSTEM, result
from tgfleet.health.network import NetworkMonitor
from tgfleet.health.schemas import CheckResult, Status
from tgfleet.kit.clock import utcnow

#: Telegram probe results older than this many probe intervals warn (the monitor stalled).
STALE_INTERVALS: Final = 3


async def telegram_reachability(network: NetworkMonitor | None) -> list[CheckResult]:
    """The network monitor's last probes, one entry per DC (no probe is made here)."""
    snapshot = network.snapshot() if network is not None else None
    if snapshot is None or not snapshot.enabled:
        return [
            result(
                SYSTEM,
                Status.PASS,
                None,
                None,
                output="network monitor off (TGFLEET_TELEGRAM_DCS is empty)",
            )
        ]
    now = utcnow()
    stale_after = STALE_INTERVALS * snapshot.interval
    probes = [snapshot.probes.get(dc) for dc in sorted(snapshot.dcs)]
    fresh = [p for p in probes if p is not None and _age(now, p.probed_at) <= stale_after]
    all_down = len(fresh) == len(probes) and not any(p.up for p in fresh)
    down_status = Status.FAIL if all_down else Status.WARN
    results: list[CheckResult] = []
    for dc in sorted(snapshot.dcs):
        host, port = snapshot.dcs[dc]
        probe = snapshot.probes.get(dc)
        if probe is None:
            results.append(
                result(
                    SYSTEM,
                    Status.WARN,
                    None,
                    "ms",
                    component_id=f"dc{dc}",
                    output="not probed yet",
                )
            )
            continue
        latency = round(probe.latency * 1000, 2) if probe.latency is not None else None
        age = _age(now, probe.probed_at)
        if age > stale_after:
            status = Status.WARN
            output: str | None = (
                f"the last probe is {age:.0f} s old (probes run every "
                f"{snapshot.interval:g} s): the network monitor is not running"
            )
        elif probe.up:
            status, output = Status.PASS, None
        else:
            status = down_status
            output = f"TCP connect to {host}:{port} failed ({probe.error})"
        results.append(
            result(
                SYSTEM,
                status,
                latency,
                "ms",
                component_id=f"dc{dc}",
                output=output,
                at=probe.probed_at,
            )
        )
    return results


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())
