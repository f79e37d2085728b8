"""The shipped Grafana dashboard (deploy/grafana/tgfleet-dashboard.json) and the PromQL
metric-name scanner the deploy tests share (tests/deploy/promql.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

import tgfleet.metrics  # noqa: F401 - registers every tgfleet metric in the default registry
from tests.deploy.promql import (
    PROMETHEUS_SERIES,
    UnsupportedExpression,
    exported_sample_names,
    metric_names,
)

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "tgfleet-dashboard.json"
#: Links, bookmarks and provisioning find the dashboard by this uid: never change it.
DASHBOARD_UID = "tgfleet-fleet"
GRAFANA_GLOBALS = frozenset(
    {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}
)
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*\w+\s*\)\s*$", re.DOTALL)

Panel = dict[str, Any]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def all_panels(panels: list[Panel]) -> Iterator[Panel]:
    """Every panel, the ones inside (collapsed) rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels") or [])


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets") or []:
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        label_values = _LABEL_VALUES.match(text)
        if label_values:  # Grafana's function, not PromQL: its optional first argument is
            if label_values.group(1):
                yield f"variable {variable['name']}", label_values.group(1)
        else:
            yield f"variable {variable['name']}", text


def unknown_metrics(expr: str, exported: frozenset[str]) -> set[str]:
    return metric_names(expr) - exported - PROMETHEUS_SERIES


@pytest.fixture(scope="module")
def exported() -> frozenset[str]:
    return exported_sample_names()


class TestDashboard:
    def test_identity(self, dashboard: dict[str, Any]) -> None:
        """The uid is the stable one, the schema is Grafana 10's (39), and it has a title."""
        assert dashboard["uid"] == DASHBOARD_UID
        assert dashboard["schemaVersion"] == 39
        assert dashboard["title"]
        assert dashboard.get("id") is None  # an id from one Grafana breaks an import into another

    def test_datasource_is_a_variable(self, dashboard: dict[str, Any]) -> None:
        """One `datasource` variable of type Prometheus; no panel names a data source of one
        particular Grafana."""
        variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for panel in all_panels(dashboard["panels"]):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", panel["title"]

    def test_panels_have_title_datasource_and_targets(self, dashboard: dict[str, Any]) -> None:
        """Every panel (rows are containers) has a title, a data source and a query."""
        panels = list(all_panels(dashboard["panels"]))
        assert sum(panel["type"] == "row" for panel in panels) >= 10
        for panel in panels:
            assert panel.get("title"), panel
            if panel["type"] == "row":
                continue
            assert panel.get("datasource"), panel["title"]
            assert panel.get("targets"), panel["title"]
            assert all(target.get("expr") for target in panel["targets"]), panel["title"]
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), panel["title"]

    def test_panel_ids_are_unique(self, dashboard: dict[str, Any]) -> None:
        """No two panels, nested ones included, share an id."""
        ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
        duplicates = {panel_id for panel_id in ids if ids.count(panel_id) > 1}
        assert duplicates == set()

    def test_panels_fit_the_grid(self, dashboard: dict[str, Any]) -> None:
        """Every panel lies within Grafana's 24 columns."""
        for panel in all_panels(dashboard["panels"]):
            grid = panel["gridPos"]
            assert grid["x"] >= 0, panel["title"]
            assert grid["w"] > 0, panel["title"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]

    def test_queries_use_only_defined_variables(self, dashboard: dict[str, Any]) -> None:
        """A `$name` in a query is a dashboard variable or one of Grafana's own."""
        defined = {variable["name"] for variable in dashboard["templating"]["list"]}
        for where, expr in queries(dashboard):
            for match in _VARIABLE.finditer(expr):
                name = next(group for group in match.groups() if group)
                assert name in defined | GRAFANA_GLOBALS, f"{where}: ${name}"

    def test_queries_read_only_metrics_tgfleet_exports(
        self, dashboard: dict[str, Any], exported: frozenset[str]
    ) -> None:
        """Every metric a panel or variable reads is a sample name tgfleet exports (its own
        metrics, the process and Python collectors) or Prometheus's `up`."""
        unknown = {
            where: sorted(unknown_metrics(expr, exported))
            for where, expr in queries(dashboard)
            if unknown_metrics(expr, exported)
        }
        assert unknown == {}

    def test_sections_are_covered(self, dashboard: dict[str, Any]) -> None:
        """The dashboard reads from every area an operator looks at."""
        names: set[str] = set()
        for _, expr in queries(dashboard):
            names |= metric_names(expr)
        for name in (
            "tgfleet_accounts",
            "tgfleet_fleet_online_ratio",
            "tgfleet_workers_alive",
            "tgfleet_replies_sent_total",
            "tgfleet_replies_suppressed_total",
            "tgfleet_errors_total",
            "tgfleet_flood_wait_seconds_bucket",
            "tgfleet_lease_failovers_total",
            "tgfleet_http_request_duration_seconds_bucket",
            "tgfleet_db_query_duration_seconds_bucket",
            "tgfleet_vault_decrypts_total",
            "tgfleet_audit_write_failures_total",
            "tgfleet_telegram_dc_up",
            "tgfleet_telegram_dc_probe_duration_seconds_bucket",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "tgfleet_event_loop_lag_seconds_bucket",
        ):
            assert name in names, name


class TestMetricNames:
    @pytest.mark.parametrize(
        ("expr", "names"),
        [
            ("tgfleet_accounts", {"tgfleet_accounts"}),
            (
                'max by (state) (tgfleet_accounts{job=~"$job",state!="stopped"})',
                {"tgfleet_accounts"},
            ),
            (
                (
                    "histogram_quantile(0.95, sum by (route, le) "
                    '(rate(tgfleet_http_request_duration_seconds_bucket{route!~"/livez|/readyz"}'
                    "[$__rate_interval])))"
                ),
                {"tgfleet_http_request_duration_seconds_bucket"},
            ),
            (
                "a:b:rate5m / on (namespace) group_left () clamp_min(c_total offset 1h30m, 1)",
                {"a:b:rate5m", "c_total"},
            ),
            ("x > bool 1e3 and y < Inf or z != NaN unless w", {"x", "y", "z", "w"}),
            ("sum without (instance) (q) # a comment naming not_a_metric", {"q"}),
            ('label_replace(v, "dst", "$1 sum(fake)", "src", "(.*)")', {"v"}),
            ('absent(up{job="tgfleet-api"} == 1) unless time() - m[5m:1m] @ start()', {"up", "m"}),
            ('count_values("version", tgfleet_build_info) * 0x1f', {"tgfleet_build_info"}),
            ("topk by (dc) (3, tgfleet_telegram_dc_up)", {"tgfleet_telegram_dc_up"}),
        ],
    )
    def test_extracts_metric_names(self, expr: str, names: set[str]) -> None:
        """Functions, keywords, label names and values, durations, numbers, strings,
        comments and Grafana variables are not metric names."""
        assert metric_names(expr) == names

    def test_refuses_name_matchers(self) -> None:
        """A selector by __name__ is refused rather than read wrong."""
        with pytest.raises(UnsupportedExpression):
            metric_names('{__name__=~"tgfleet_.*"}')

    def test_a_misspelt_metric_is_reported(self, exported: frozenset[str]) -> None:
        """The dashboard and rule checks catch a wrong suffix, a typo and a gauge read as a
        counter."""
        assert (
            unknown_metrics('sum(rate(tgfleet_replies_sent_total{job="x"}[5m]))', exported) == set()
        )
        assert unknown_metrics("rate(tgfleet_replies_sent[5m])", exported) == {
            "tgfleet_replies_sent"
        }
        assert unknown_metrics("tgfleet_acounts", exported) == {"tgfleet_acounts"}
        assert unknown_metrics("rate(tgfleet_accounts_total[5m])", exported) == {
            "tgfleet_accounts_total"
        }
        assert unknown_metrics("tgfleet_flood_wait_seconds_bucket", exported) == set()
        assert unknown_metrics("tgfleet_flood_wait_seconds", exported) == {
            "tgfleet_flood_wait_seconds"
        }

    def test_sample_names_follow_the_metric_types(self) -> None:
        """Counters expose _total, histograms _bucket/_count/_sum, info metrics _info,
        gauges their name, labelled or not, used or not."""
        registry = CollectorRegistry()
        Counter("c", "a counter", ["reason"], registry=registry)
        Histogram("h_seconds", "a histogram", registry=registry)
        Gauge("g", "a gauge", registry=registry)
        Info("build", "an info", registry=registry)
        assert exported_sample_names([registry]) == {
            "c_total",
            "c_created",
            "h_seconds_bucket",
            "h_seconds_count",
            "h_seconds_sum",
            "h_seconds_created",
            "g",
            "build_info",
        }

    def test_default_registry_has_tgfleet_and_process_metrics(
        self, exported: frozenset[str]
    ) -> None:
        """The set the dashboard is checked against holds tgfleet's metrics and the
        standard process and Python collectors'."""
        assert {
            "tgfleet_accounts",
            "tgfleet_http_requests_total",
            "tgfleet_build_info",
            "process_resident_memory_bytes",
            "python_gc_collections_total",
        } <= exported
