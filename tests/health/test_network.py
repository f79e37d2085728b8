"""The Telegram network monitor: TCP probes of real local listeners, up, refused and
unanswered; its results, its metrics, its background task and retargeting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY

from tests.health.conftest import closed_port, listener, sample, unanswered_port
from tgfleet.config import parse_dcs
from tgfleet.health.network import NetworkMonitor

UP = "tgfleet_telegram_dc_up"
PROBES = "tgfleet_telegram_dc_probes_total"
DURATION_COUNT = "tgfleet_telegram_dc_probe_duration_seconds_count"


async def _until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class TestProbes:
    @pytest.mark.timeout(10)
    async def test_an_up_and_a_down_dc_are_told_apart_with_latency_and_metrics(self) -> None:
        """A listening port is up with a measured latency; a closed port is down with the
        error's type name; the gauges, the counters and the latency histogram follow."""
        refused = closed_port()
        before = {
            "ok": sample(PROBES, dc="101", outcome="success"),
            "refused": sample(PROBES, dc="102", outcome="refused"),
            "timed": sample(DURATION_COUNT, dc="101"),
        }
        async with listener() as port:
            monitor = NetworkMonitor(
                {101: ("127.0.0.1", port), 102: ("127.0.0.1", refused)}, interval=60, timeout=2
            )
            results = await monitor.probe_once()
        up, down = results[101], results[102]
        assert up.up
        assert up.latency is not None
        assert 0 < up.latency < 2
        assert up.error is None
        assert not down.up
        assert down.latency is None
        assert down.error == "ConnectionRefusedError"
        assert monitor.snapshot().probes == results
        assert REGISTRY.get_sample_value(UP, {"dc": "101"}) == 1.0
        assert REGISTRY.get_sample_value(UP, {"dc": "102"}) == 0.0
        assert sample(PROBES, dc="101", outcome="success") == before["ok"] + 1
        assert sample(PROBES, dc="102", outcome="refused") == before["refused"] + 1
        assert sample(DURATION_COUNT, dc="101") == before["timed"] + 1
        assert sample(DURATION_COUNT, dc="102") == 0  # only successful connects are timed

    @pytest.mark.timeout(10)
    async def test_a_connect_that_never_completes_times_out(self) -> None:
        """A DC that drops SYNs is down after the probe timeout, counted as a timeout."""
        before = sample(PROBES, dc="103", outcome="timeout")
        with unanswered_port() as port:
            monitor = NetworkMonitor({103: ("127.0.0.1", port)}, interval=60, timeout=0.3)
            started = time.monotonic()
            results = await monitor.probe_once()
            elapsed = time.monotonic() - started
        assert not results[103].up
        assert results[103].error == "TimeoutError"
        assert 0.25 < elapsed < 2.0
        assert sample(PROBES, dc="103", outcome="timeout") == before + 1
        assert REGISTRY.get_sample_value(UP, {"dc": "103"}) == 0.0

    @pytest.mark.timeout(10)
    async def test_dcs_are_probed_concurrently(self) -> None:
        """Three unanswered DCs with a 0.5 s timeout take one timeout, not three."""
        with unanswered_port() as port:
            monitor = NetworkMonitor(
                {104: ("127.0.0.1", port), 105: ("127.0.0.1", port), 106: ("127.0.0.1", port)},
                interval=60,
                timeout=0.5,
            )
            started = time.monotonic()
            results = await monitor.probe_once()
            elapsed = time.monotonic() - started
        assert sorted(results) == [104, 105, 106]
        assert elapsed < 1.2


class TestLifecycle:
    @pytest.mark.timeout(10)
    async def test_start_probes_at_once_then_every_interval_and_stop_cancels(self) -> None:
        """The first round runs at start (not after an interval); rounds repeat at the
        interval; stop ends the task and no round runs after it."""
        async with listener() as port:
            monitor = NetworkMonitor({107: ("127.0.0.1", port)}, interval=0.2, timeout=1)
            monitor.start()
            try:
                await _until(lambda: monitor.rounds >= 1, 1.0)
                assert monitor.snapshot().probes[107].up
                await _until(lambda: monitor.rounds >= 4, 3.0)
                assert monitor.running
            finally:
                await monitor.stop()
            assert not monitor.snapshot().running
            rounds = monitor.rounds
            await asyncio.sleep(0.5)
            assert monitor.rounds == rounds

    @pytest.mark.timeout(10)
    async def test_no_dcs_means_no_probes(self) -> None:
        """An empty DC list (TGFLEET_TELEGRAM_DCS="") is off: no round ever runs."""
        monitor = NetworkMonitor(parse_dcs(""), interval=0.05, timeout=1)
        assert not monitor.enabled
        monitor.start()
        try:
            await asyncio.sleep(0.3)
            assert monitor.rounds == 0
            assert await monitor.probe_once() == {}
            assert not monitor.snapshot().enabled
        finally:
            await monitor.stop()

    @pytest.mark.timeout(10)
    async def test_retarget_probes_the_new_dcs_at_once_and_forgets_the_old(self) -> None:
        """Retargeting a running monitor (long interval) probes the new DC without waiting
        for the interval, and drops the old DC's result and its dc_up series."""
        async with listener() as port:
            monitor = NetworkMonitor({108: ("127.0.0.1", closed_port())}, interval=60, timeout=1)
            monitor.start()
            try:
                await _until(lambda: 108 in monitor.snapshot().probes, 2.0)
                assert REGISTRY.get_sample_value(UP, {"dc": "108"}) == 0.0
                monitor.retarget({109: ("127.0.0.1", port)})
                await _until(lambda: 109 in monitor.snapshot().probes, 2.0)
            finally:
                await monitor.stop()
        snapshot = monitor.snapshot()
        assert set(snapshot.probes) == {109}
        assert snapshot.probes[109].up
        assert REGISTRY.get_sample_value(UP, {"dc": "108"}) is None
        assert REGISTRY.get_sample_value(UP, {"dc": "109"}) == 1.0

    @pytest.mark.timeout(10)
    async def test_a_round_in_flight_when_retargeted_records_nothing_stale(self) -> None:
        """A probe that ends after its DC was retargeted away leaves no result and no
        dc_up series (the demo retargets while the first round to the real DCs runs)."""
        with unanswered_port() as port:
            monitor = NetworkMonitor({110: ("127.0.0.1", port)}, interval=60, timeout=0.5)
            round_in_flight = asyncio.create_task(monitor.probe_once())
            await asyncio.sleep(0.1)
            monitor.retarget({})
            assert await round_in_flight == {}
        assert monitor.snapshot().probes == {}
        assert REGISTRY.get_sample_value(UP, {"dc": "110"}) is None
        assert sample(PROBES, dc="110", outcome="timeout") == 0

    def test_bad_settings_are_refused(self) -> None:
        """A zero interval or timeout would spin or never probe: refused at construction."""
        with pytest.raises(ValueError, match="positive"):
            NetworkMonitor({}, interval=0, timeout=1)
