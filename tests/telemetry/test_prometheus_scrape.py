"""A real Prometheus scrapes a real ``tgfleet run --demo`` on loopback, and its HTTP API
returns our series with plausible values once the demo's sandbox traffic has flowed.

Needs the Debian package ``prometheus``: skipped with a reason when it is missing, unless
``CI=true`` (``.ci/run`` installs it, and there a missing binary is a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI
from tests.harness import Proc, free_port, stopping, tgfleet_env

pytestmark = pytest.mark.timeout(180)

SCRAPE_INTERVAL = "1s"


def _prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        if IN_CI:
            pytest.fail("CI=true but prometheus is missing: .ci/run installs it")
        pytest.skip("prometheus not installed (Debian package prometheus; CI installs it)")
    return found


async def _until(http: httpx.AsyncClient, url: str, within: float, log: Path, **params: str) -> Any:
    """GET ``url`` until it answers 200 (and, for queries, a non-empty result)."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            response = await http.get(url, params=params or None)
            if response.status_code == 200:
                if not params:
                    return response
                last = response.json()["data"]["result"]
                if last:
                    return last
        await asyncio.sleep(0.5)
    tail = await asyncio.to_thread(_tail, log)
    pytest.fail(f"{url} {params} not satisfied within {within} s (last: {last})\n{tail}")


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""


def _value(result: list[dict[str, Any]]) -> float:
    return float(result[0]["value"][1])


async def test_prometheus_scrapes_tgfleet_and_finds_our_series(tmp_path: Path) -> None:
    prometheus = _prometheus_binary()
    api_port, prometheus_port = free_port(), free_port()
    env = tgfleet_env(
        TGFLEET_DATA_DIR=str(tmp_path / "data"),
        TGFLEET_LOG_LEVEL="WARNING",
        TGFLEET_METRICS_FLEET_REFRESH_SECONDS="1",
        TGFLEET_TELEGRAM_DCS="",  # the demo points the monitor at its sandbox
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL}\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL}\n"
        "scrape_configs:\n"
        "  - job_name: tgfleet\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{api_port}']\n"
    )
    tgfleet_log, prometheus_log = tmp_path / "tgfleet.log", tmp_path / "prometheus.log"
    tgfleet_argv = [sys.executable, "-m", "tgfleet", "run", "--demo", "--host", "127.0.0.1"]
    tgfleet_argv += ["--port", str(api_port)]
    prometheus_argv = [
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
    ]
    base = f"http://127.0.0.1:{prometheus_port}"
    query = f"{base}/api/v1/query"
    async with (
        stopping(await Proc.spawn("tgfleet", tgfleet_argv, tgfleet_log, env), within=15),
        stopping(await Proc.spawn("prometheus", prometheus_argv, prometheus_log), within=15),
        httpx.AsyncClient(timeout=10) as http,
    ):
        await _until(http, f"http://127.0.0.1:{api_port}/livez", 60, tgfleet_log)
        await _until(http, f"{base}/-/ready", 60, prometheus_log)
        up = await _until(http, query, 60, prometheus_log, query='up{job="tgfleet"} == 1')
        assert _value(up) == 1
        # The demo's 20 accounts come online; Prometheus sees it through the fleet gauges.
        online = await _until(
            http, query, 90, tgfleet_log, query='tgfleet_accounts{state="online"} == 20'
        )
        assert _value(online) == 20
        ratio = await _until(http, query, 30, tgfleet_log, query="tgfleet_fleet_online_ratio")
        assert _value(ratio) == 1.0
        workers = await _until(http, query, 30, tgfleet_log, query="tgfleet_worker_accounts")
        assert sum(float(r["value"][1]) for r in workers) == 20
        # The sandbox's members chat: messages arrive and some are answered.
        received = await _until(
            http, query, 90, tgfleet_log, query="tgfleet_messages_received_total > 0"
        )
        assert _value(received) > 0
        sent = await _until(
            http, query, 90, tgfleet_log, query="sum(tgfleet_replies_sent_total) > 0"
        )
        assert _value(sent) > 0
        connects = await _until(
            http,
            query,
            30,
            tgfleet_log,
            query='tgfleet_client_connect_attempts_total{outcome="ok"}',
        )
        assert _value(connects) >= 20
        # Prometheus' own scrape of /metrics counts in our HTTP series, by route template.
        scrapes = await _until(
            http,
            query,
            30,
            tgfleet_log,
            query='tgfleet_http_requests_total{route="/metrics",status="200"}',
        )
        assert _value(scrapes) >= 1
        latency = await _until(
            http,
            query,
            30,
            tgfleet_log,
            query="histogram_quantile(0.99, sum by (le) "
            "(rate(tgfleet_http_request_duration_seconds_bucket[30s]))) >= 0",
        )
        assert 0 <= _value(latency) < 5
        statements = await _until(
            http, query, 30, tgfleet_log, query="sum(tgfleet_db_query_duration_seconds_count) > 0"
        )
        assert _value(statements) > 0
        info = await _until(http, query, 30, tgfleet_log, query="tgfleet_build_info")
        assert info[0]["metric"]["version"]
        process = await _until(http, query, 30, tgfleet_log, query="process_resident_memory_bytes")
        assert 10 * 2**20 < _value(process) < 4 * 2**30
