"""Two promises of docs/observability.md: with ``PROMETHEUS_MULTIPROC_DIR`` set, /metrics
aggregates the processes that share it; and every metric we define is documented there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram, Info
from prometheus_client.parser import text_string_to_metric_families

from tgfleet import metrics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "observability.md"

WRITER = """
import sys
from tgfleet import metrics
count = int(sys.argv[1])
for _ in range(count):
    metrics.HTTP_REQUESTS.labels("GET", "/livez", "200").inc()
metrics.HTTP_DURATION.labels("GET", "/livez").observe(0.01 * count)
metrics.ACCOUNTS.labels("online").set(count)
"""

READER = """
import sys
from tgfleet import metrics
sys.stdout.write(metrics.exposition().decode())
"""


@pytest.mark.timeout(60)
def test_processes_sharing_a_multiprocess_dir_are_aggregated(tmp_path: Path) -> None:
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    for writes in (2, 3):  # two "uvicorn workers", one after the other
        subprocess.run([sys.executable, "-c", WRITER, str(writes)], env=env, check=True, timeout=30)
    shown = subprocess.run(
        [sys.executable, "-c", READER], env=env, check=True, timeout=30, capture_output=True
    ).stdout.decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(shown)
        for s in family.samples
    }
    requests = (
        "tgfleet_http_requests_total",
        (("method", "GET"), ("route", "/livez"), ("status", "200")),
    )
    assert samples[requests] == 5  # summed over both processes
    count = (
        "tgfleet_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/livez")),
    )
    assert samples[count] == 2
    assert samples[("tgfleet_accounts", (("state", "online"),))] == 3  # the most recent value


def test_every_metric_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    suffix = {Counter: "_total", Info: "_info", Gauge: "", Histogram: ""}
    missing = [
        metric._name + suffix[type(metric)]
        for metric in vars(metrics).values()
        if isinstance(metric, (Counter, Gauge, Histogram, Info))
        and f"`{metric._name}{suffix[type(metric)]}`" not in text
    ]
    assert not missing, f"not in docs/observability.md: {missing}"
