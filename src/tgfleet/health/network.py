"""The Telegram network monitor: can this process reach Telegram's data centres?

Every ``interval`` seconds each configured DC is probed, all at once, by a plain TCP
connect (``asyncio.open_connection`` within ``timeout``, closed at once: no MTProto byte is
sent, so a probe costs Telegram nothing and needs no credentials). Each result records
whether the DC is up, the connect latency, when it was probed and, when it failed, the
exception's type name (never its message). The results feed ``tgfleet_telegram_dc_up``,
``tgfleet_telegram_dc_probe_duration_seconds`` and ``tgfleet_telegram_dc_probes_total``,
and ``/health`` reads them from :meth:`NetworkMonitor.snapshot` (a request never waits
on a probe).

A TCP connect is what the account clients do first, so a DC that refuses or drops it is
unreachable for every account; a connect that succeeds does not prove MTProto works
(a proxy or firewall may accept and then drop), which is what the accounts' own states say.

With no DCs (``TGFLEET_TELEGRAM_DCS=""``) the monitor is off: it runs no probe at all.
:meth:`NetworkMonitor.retarget` changes the DCs of a running monitor (the demo points it
at its sandbox).

Usage (the app lifespan does this; a worker process does the same)::

    monitor = NetworkMonitor.from_settings(settings)
    monitor.start()            # first probe at once, then every interval
    ...
    await monitor.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from tgfleet import metrics
from tgfleet.config import Settings, parse_dcs
from tgfleet.kit.clock import utcnow
from tgfleet.kit.lifecycle import TaskLifecycle
from tgfleet.logging import get_logger

log = get_logger(__name__)

#: Seconds a probe's socket may take to close after a successful connect.
CLOSE_TIMEOUT: Final = 1.0

#: ``tgfleet_telegram_dc_probes_total`` outcomes (a bounded set).
SUCCESS: Final = "success"
TIMEOUT: Final = "timeout"
REFUSED: Final = "refused"
ERROR: Final = "error"


@dataclass(frozen=True, slots=True)
class DcProbe:
    """The last probe of one DC."""

    dc: int
    host: str
    port: int
    up: bool
    #: Seconds the TCP connect took (None when it failed).
    latency: float | None
    probed_at: datetime
    #: The exception type that failed the probe (``TimeoutError``, ``ConnectionRefusedError``).
    error: str | None = None


@dataclass(frozen=True, slots=True)
class NetworkSnapshot:
    """What the monitor knows now, for ``/health``."""

    #: The DCs probed, id -> (host, port); empty when the monitor is off.
    dcs: Mapping[int, tuple[str, int]]
    #: The last probe of each DC; a DC not probed yet is missing.
    probes: Mapping[int, DcProbe]
    interval: float
    running: bool

    @property
    def enabled(self) -> bool:
        return bool(self.dcs)


class NetworkMonitor(TaskLifecycle):
    """Probes Telegram's DCs by TCP connect, in the background, and keeps the last results.

    ``dcs`` maps a DC id to its ``(host, port)`` (``config.parse_dcs`` reads the setting);
    ``interval`` is the seconds between the starts of two probe rounds and ``timeout`` each
    connect's time limit. The monitor owns one task, started by :meth:`start` (which probes
    at once) and cancelled by :meth:`stop`.
    """

    task_name = "health:network-monitor"

    def __init__(
        self, dcs: Mapping[int, tuple[str, int]], *, interval: float, timeout: float
    ) -> None:
        if interval <= 0 or timeout <= 0:
            msg = "the probe interval and timeout must be positive"
            raise ValueError(msg)
        self.interval = interval
        self.timeout = timeout
        self._dcs: dict[int, tuple[str, int]] = dict(dcs)
        self._probes: dict[int, DcProbe] = {}
        self._wake = asyncio.Event()
        self.rounds = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> NetworkMonitor:
        """The monitor ``TGFLEET_TELEGRAM_DCS`` and the ``TGFLEET_NETWORK_PROBE_*`` settings
        describe (off when the DC list is empty)."""
        return cls(
            parse_dcs(settings.telegram_dcs),
            interval=settings.network_probe_interval_seconds,
            timeout=settings.network_probe_timeout_seconds,
        )

    @property
    def dcs(self) -> dict[int, tuple[str, int]]:
        return dict(self._dcs)

    @property
    def enabled(self) -> bool:
        return bool(self._dcs)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start probing in the background: a first round now, then one every interval
        (nothing at all while there are no DCs). Call from inside the event loop."""
        if self._task is None:
            super().start()
            log.info("network.monitor_started", dcs=sorted(self._dcs), interval=self.interval)

    def retarget(self, dcs: Mapping[int, tuple[str, int]]) -> None:
        """Probe these DCs from now on (a running monitor probes them at once). Results and
        ``tgfleet_telegram_dc_up`` series of DCs no longer listed are dropped."""
        new = dict(dcs)
        for dc in set(self._dcs) - set(new):
            self._forget(dc)
        for dc, address in new.items():
            if self._dcs.get(dc) != address:
                self._probes.pop(dc, None)
        self._dcs = new
        log.info("network.monitor_retargeted", dcs=sorted(new))
        self._wake.set()

    # ------------------------------------------------------------------ probes

    def snapshot(self) -> NetworkSnapshot:
        """The DCs and their last probes (cheap: no probe is made)."""
        return NetworkSnapshot(
            dcs=dict(self._dcs),
            probes=dict(self._probes),
            interval=self.interval,
            running=self.running,
        )

    async def probe_once(self) -> dict[int, DcProbe]:
        """Probe every DC now, concurrently; record and return the results."""
        targets = dict(self._dcs)
        if not targets:
            return {}
        results = await asyncio.gather(
            *(self._probe(dc, host, port) for dc, (host, port) in targets.items())
        )
        recorded: dict[int, DcProbe] = {}
        for probe, outcome in results:
            # Retargeted during the round: a result for an address no longer listed is
            # dropped, metrics included (no series for a DC nobody probes any more).
            if self._dcs.get(probe.dc) == (probe.host, probe.port):
                self._record(probe, outcome)
                recorded[probe.dc] = probe
        self.rounds += 1
        return recorded

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            started = time.monotonic()
            try:
                await self.probe_once()
            except Exception as exc:  # noqa: BLE001 - the monitor outlives any one round
                log.warning("network.probe_round_failed", error=type(exc).__name__)
            delay = self.interval - (time.monotonic() - started) if self._dcs else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _probe(self, dc: int, host: str, port: int) -> tuple[DcProbe, str]:
        """One TCP connect: the result and its outcome label (nothing recorded yet)."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                _reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a bad host name
            if isinstance(exc, TimeoutError):
                outcome = TIMEOUT
            elif isinstance(exc, ConnectionRefusedError):
                outcome = REFUSED
            else:
                outcome = ERROR
            error = type(exc).__name__
            return DcProbe(dc, host, port, False, None, utcnow(), error), outcome
        latency = time.perf_counter() - started
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
        return DcProbe(dc, host, port, True, latency, utcnow()), SUCCESS

    def _record(self, probe: DcProbe, outcome: str) -> None:
        label = str(probe.dc)
        previous = self._probes.get(probe.dc)
        self._probes[probe.dc] = probe
        metrics.DC_UP.labels(label).set(1 if probe.up else 0)
        metrics.DC_PROBES.labels(label, outcome).inc()
        if probe.up and probe.latency is not None:
            metrics.DC_PROBE_DURATION.labels(label).observe(probe.latency)
            if previous is not None and not previous.up:
                log.info("network.dc_up", dc=probe.dc, latency_ms=round(probe.latency * 1000, 1))
        elif not probe.up and (previous is None or previous.up):
            log.warning("network.dc_down", dc=probe.dc, error=probe.error)

    def _forget(self, dc: int) -> None:
        self._probes.pop(dc, None)
        with contextlib.suppress(KeyError):
            metrics.DC_UP.remove(str(dc))
