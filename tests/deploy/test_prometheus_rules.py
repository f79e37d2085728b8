"""The shipped Prometheus configuration, rules and rule unit tests (deploy/prometheus).

promtool checks the configuration and the rules and runs the unit tests. Without promtool
these tests skip, unless ``CI=true`` (.ci/run installs it). The rest needs no promtool:
every alert has a unit test where it fires and one where it does not, a runbook section,
a severity and templated annotations, and every metric a rule reads is one tgfleet exports.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import tgfleet.metrics  # noqa: F401 - registers every tgfleet metric in the default registry
from tests.deploy.promql import PROMETHEUS_SERIES, exported_sample_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules" / "tgfleet.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "tgfleet.rules.test.yml"
RUNBOOKS = ROOT / "docs" / "alerting-rules.md"

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PROMTOOL_TIMEOUT = 60.0
SEVERITIES = frozenset({"critical", "warning", "info"})
KUBERNETES_ROLES = frozenset({"node", "service", "pod", "endpoints", "endpointslice", "ingress"})
# key=value, key!=value, key==value or a bare key (exists), comma-separated
_LABEL_SELECTOR = re.compile(
    r"^[A-Za-z0-9_./-]+(\s*(!=|==|=)\s*[A-Za-z0-9_.-]*)?"
    r"(,[A-Za-z0-9_./-]+(\s*(!=|==|=)\s*[A-Za-z0-9_.-]*)?)*$"
)

Doc = dict[str, Any]


def load_yaml(path: Path) -> Doc:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path}: not a YAML mapping"
    return document


def rules_of(rules_doc: Doc) -> Iterator[Doc]:
    for group in rules_doc["groups"]:
        yield from group["rules"]


def alert_rules(rules_doc: Doc) -> list[Doc]:
    return [rule for rule in rules_of(rules_doc) if "alert" in rule]


def _rule_name(rule: Doc) -> str:
    return f"{rule['alert']} ({rule.get('labels', {}).get('severity', 'no severity')})"


def _cases(tests_doc: Doc, alertname: str) -> Iterator[list[Doc]]:
    """The expected alerts of every alert_rule_test case of ``alertname``."""
    for test in tests_doc.get("tests") or []:
        for case in test.get("alert_rule_test") or []:
            if case.get("alertname") == alertname:
                yield case.get("exp_alerts") or []


def _matches(rule: Doc, expected: Doc) -> bool:
    """Whether an expected alert is this rule's: its labels include the rule's static ones
    (two rules of one alert name differ by their severity)."""
    labels = expected.get("exp_labels") or {}
    return all(labels.get(name) == value for name, value in (rule.get("labels") or {}).items())


def rules_never_firing(rules_doc: Doc, tests_doc: Doc) -> list[str]:
    """Alert rules no unit test expects to fire."""
    return [
        _rule_name(rule)
        for rule in alert_rules(rules_doc)
        if not any(
            _matches(rule, expected)
            for exp_alerts in _cases(tests_doc, rule["alert"])
            for expected in exp_alerts
        )
    ]


def rules_never_quiet(rules_doc: Doc, tests_doc: Doc) -> list[str]:
    """Alert rules no unit test expects to stay silent at some time."""
    return [
        _rule_name(rule)
        for rule in alert_rules(rules_doc)
        if not any(
            not any(_matches(rule, expected) for expected in exp_alerts)
            for exp_alerts in _cases(tests_doc, rule["alert"])
        )
    ]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


@pytest.fixture(scope="module")
def rules_doc() -> Doc:
    return load_yaml(RULES)


@pytest.fixture(scope="module")
def tests_doc() -> Doc:
    return load_yaml(RULE_TESTS)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if IN_CI:
            pytest.fail(
                "CI=true but promtool is not on PATH: .ci/run installs the prometheus package"
            )
        pytest.skip("promtool is not on PATH (apt-get install prometheus): rules not checked")
    return path


def run_promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="module")
def promtool_has_kubernetes_sd(promtool: str, tmp_path_factory: pytest.TempPathFactory) -> bool:
    """Debian's Prometheus is built without Kubernetes service discovery."""
    probe = tmp_path_factory.mktemp("promtool") / "kubernetes.yml"
    probe.write_text(
        "scrape_configs:\n  - job_name: x\n    kubernetes_sd_configs:\n      - role: pod\n"
    )
    return run_promtool(promtool, "check", "config", str(probe), cwd=probe.parent).returncode == 0


class TestPromtool:
    def test_config_passes_promtool(
        self, promtool: str, promtool_has_kubernetes_sd: bool, tmp_path: Path
    ) -> None:
        """`promtool check config` accepts prometheus.yml and the rule files it names; a
        promtool without Kubernetes discovery checks everything else (the discovery blocks
        are checked by TestKubernetesDiscovery)."""
        config = CONFIG
        if not promtool_has_kubernetes_sd:
            document = load_yaml(CONFIG)
            document["rule_files"] = [str(CONFIG.parent / name) for name in document["rule_files"]]
            for job in document["scrape_configs"]:
                job.pop("kubernetes_sd_configs", None)
            config = tmp_path / "prometheus.yml"
            config.write_text(yaml.safe_dump(document, sort_keys=False))
        result = run_promtool(promtool, "check", "config", str(config), cwd=config.parent)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout

    def test_kubernetes_discovery_passes_promtool(
        self, promtool: str, promtool_has_kubernetes_sd: bool
    ) -> None:
        """The configuration as shipped, Kubernetes discovery included, passes a promtool
        built with it (upstream's releases; not Debian's)."""
        if not promtool_has_kubernetes_sd:
            pytest.skip("this promtool has no kubernetes_sd_configs (Debian build)")
        result = run_promtool(promtool, "check", "config", str(CONFIG), cwd=CONFIG.parent)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_rules_pass_promtool(self, promtool: str) -> None:
        """`promtool check rules` accepts the rules (syntax, templates, no duplicates)."""
        result = run_promtool(promtool, "check", "rules", str(RULES), cwd=RULES.parent)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_rule_unit_tests_pass(self, promtool: str) -> None:
        """Every promtool unit test of the rules passes."""
        result = run_promtool(promtool, "test", "rules", str(RULE_TESTS), cwd=RULE_TESTS.parent)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout

    def test_a_wrong_expectation_fails_promtool(
        self, promtool: str, tests_doc: Doc, tmp_path: Path
    ) -> None:
        """promtool really judges the cases: the same tests expecting a different severity
        fail."""
        tampered = yaml.safe_load(yaml.safe_dump(tests_doc))
        tampered["rule_files"] = [str(RULE_TESTS.parent / name) for name in tampered["rule_files"]]
        expected = next(
            alert
            for test in tampered["tests"]
            for case in test.get("alert_rule_test") or []
            for alert in case.get("exp_alerts") or []
        )
        expected["exp_labels"]["severity"] = "page-me-maybe"
        path = tmp_path / "tampered.test.yml"
        path.write_text(yaml.safe_dump(tampered, sort_keys=False))
        result = run_promtool(promtool, "test", "rules", str(path), cwd=tmp_path)
        assert result.returncode != 0
        assert "page-me-maybe" in result.stdout + result.stderr


class TestKubernetesDiscovery:
    @staticmethod
    def _jobs() -> dict[str, Doc]:
        return {job["job_name"]: job for job in load_yaml(CONFIG)["scrape_configs"]}

    def test_discovery_blocks_are_well_formed(self) -> None:
        """Each kubernetes_sd_configs block has a known role, and pod selectors with
        Kubernetes label-selector syntax (what promtool checks when it knows the block)."""
        blocks = [
            (name, block)
            for name, job in self._jobs().items()
            for block in job.get("kubernetes_sd_configs") or []
        ]
        assert blocks, "no Kubernetes discovery example in prometheus.yml"
        known = {"role", "namespaces", "selectors", "api_server", "attach_metadata"}
        for name, block in blocks:
            assert set(block) <= known, f"{name}: unknown keys {set(block) - known}"
            assert block["role"] in KUBERNETES_ROLES, name
            for selector in block.get("selectors") or []:
                assert set(selector) <= {"role", "label", "field"}, name
                # Prometheus allows only selectors of the discovery's own role for pods.
                assert selector["role"] == block["role"], name
                assert _LABEL_SELECTOR.match(selector["label"]), (name, selector["label"])

    @pytest.mark.parametrize(
        ("job_name", "component", "port_name"),
        [("tgfleet-api", "api", "http"), ("tgfleet-worker", "worker", "metrics")],
    )
    def test_jobs_select_their_component_and_port(
        self, job_name: str, component: str, port_name: str
    ) -> None:
        """The API job finds pods labelled component=api on their port named http, the worker
        job component=worker on the port named metrics, and both label namespace and pod
        (the rules aggregate by namespace)."""
        job = self._jobs()[job_name]
        labels = {
            selector["label"]
            for block in job["kubernetes_sd_configs"]
            for selector in block["selectors"]
        }
        assert f"app.kubernetes.io/component={component}" in ",".join(labels)
        relabels = job["relabel_configs"]
        assert {
            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": port_name,
            "action": "keep",
        } in relabels
        targets = {relabel.get("target_label") for relabel in relabels}
        assert {"namespace", "pod"} <= targets


class TestRuleCoverage:
    def test_every_alert_rule_has_a_case_where_it_fires(
        self, rules_doc: Doc, tests_doc: Doc
    ) -> None:
        """A new alert rule without a firing unit test fails CI."""
        assert alert_rules(rules_doc), "no alert rules found"
        assert rules_never_firing(rules_doc, tests_doc) == []

    def test_every_alert_rule_has_a_case_where_it_stays_silent(
        self, rules_doc: Doc, tests_doc: Doc
    ) -> None:
        """...and one where it must not fire (below threshold or before `for:`)."""
        assert rules_never_quiet(rules_doc, tests_doc) == []

    def test_the_coverage_check_finds_untested_rules(self) -> None:
        """The two checks above report a rule without cases, and a severity whose only
        case is silent."""
        rules = {
            "groups": [
                {
                    "name": "g",
                    "rules": [
                        {"alert": "Covered", "expr": "x > 1", "labels": {"severity": "warning"}},
                        {"alert": "Covered", "expr": "x > 9", "labels": {"severity": "critical"}},
                        {"alert": "Forgotten", "expr": "y > 1", "labels": {"severity": "info"}},
                    ],
                }
            ]
        }
        fired = {"exp_labels": {"severity": "warning"}}
        tests = {
            "tests": [
                {
                    "alert_rule_test": [
                        {"alertname": "Covered", "exp_alerts": [fired]},
                        {"alertname": "Covered", "exp_alerts": []},
                    ]
                }
            ]
        }
        assert rules_never_firing(rules, tests) == ["Covered (critical)", "Forgotten (info)"]
        assert rules_never_quiet(rules, tests) == ["Forgotten (info)"]

    def test_group_eval_order_names_every_group(self, rules_doc: Doc, tests_doc: Doc) -> None:
        """The unit tests fix the order of the groups (promtool's is random otherwise, and
        alerts read recorded series): a new group must be added there."""
        groups = [group["name"] for group in rules_doc["groups"]]
        assert sorted(tests_doc["group_eval_order"]) == sorted(groups)
        recording = [
            group["name"]
            for group in rules_doc["groups"]
            if all("record" in rule for rule in group["rules"])
        ]
        assert tests_doc["group_eval_order"][: len(recording)] == recording

    def test_every_recording_rule_is_checked(self, rules_doc: Doc, tests_doc: Doc) -> None:
        """Each recording rule is evaluated by a promql_expr_test or read by an alert the
        unit tests fire, directly or through another recording rule."""
        recorded = {
            rule["record"]: rule["expr"] for rule in rules_of(rules_doc) if "record" in rule
        }
        checked: set[str] = set()
        for test in tests_doc["tests"]:
            for case in test.get("promql_expr_test") or []:
                checked |= metric_names(case["expr"])
        fired = {
            case["alertname"]
            for test in tests_doc["tests"]
            for case in test.get("alert_rule_test") or []
            if case.get("exp_alerts")
        }
        for rule in alert_rules(rules_doc):
            if rule["alert"] in fired:
                checked |= metric_names(rule["expr"])
        while True:  # what a checked recording rule reads is checked with it
            more = set().union(*(metric_names(recorded[name]) for name in checked & set(recorded)))
            if more <= checked:
                break
            checked |= more
        assert set(recorded) - checked == set()


class TestRuleContent:
    def test_alerts_have_severity_annotations_and_runbook(self, rules_doc: Doc) -> None:
        """Each alert has a known severity, a templated summary and description, and a
        runbook_url whose anchor is a heading of docs/alerting-rules.md named after it."""
        anchors = github_anchors(RUNBOOKS.read_text(encoding="utf-8"))
        for rule in alert_rules(rules_doc):
            name = rule["alert"]
            assert rule["labels"]["severity"] in SEVERITIES, name
            annotations = rule["annotations"]
            assert annotations["summary"].strip(), name
            assert annotations["description"].strip(), name
            assert "{{" in annotations["summary"] + annotations["description"], name
            url = annotations["runbook_url"]
            assert url == f"docs/alerting-rules.md#{name.lower()}", name
            assert name.lower() in anchors, f"docs/alerting-rules.md has no heading {name}"

    def test_rules_read_only_metrics_tgfleet_exports(self, rules_doc: Doc) -> None:
        """Every name an expression selects is a sample name tgfleet exports, a series
        Prometheus writes itself (`up`) or a recording rule of the file."""
        known = exported_sample_names() | PROMETHEUS_SERIES
        recorded = {rule["record"] for rule in rules_of(rules_doc) if "record" in rule}
        unknown = {
            rule.get("alert") or rule["record"]: sorted(
                metric_names(rule["expr"]) - known - recorded
            )
            for rule in rules_of(rules_doc)
        }
        assert {name: names for name, names in unknown.items() if names} == {}

    def test_unit_tests_feed_only_metrics_tgfleet_exports(self, tests_doc: Doc) -> None:
        """The input series of the unit tests are real tgfleet series (a test and a rule
        cannot share one misspelling)."""
        known = exported_sample_names() | PROMETHEUS_SERIES
        series = {
            re.split(r"[{\s]", item["series"], maxsplit=1)[0]
            for test in tests_doc["tests"]
            for item in test.get("input_series") or []
        }
        assert series - known == set()
