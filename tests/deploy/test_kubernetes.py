"""The Kubernetes manifests (deploy/kubernetes): every overlay rendered by ``kubectl kustomize``
(no cluster), validated by ``kubernetes-validate --strict`` for the three newest Kubernetes
versions it knows and by checkov's Kubernetes checks, then read object by object: the
restricted Pod Security Standard on every container, probes, resources, secrets referenced and
never embedded, the worker's grace period against its drain, the NetworkPolicies, one image,
and the Prometheus Operator's objects equal to what deploy/prometheus says.

The tools come from ``tools/deploy-tools.sh`` (``require_tool``: skipped locally without them,
failed under CI=true). Each tool runs once per module (checkov once for every overlay: it is
the slow one).
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import SecretStr

from tests.deploy.tools import ROOT, require_tool
from tgfleet import config as tgfleet_config
from tgfleet.alert.config import config_from_settings
from tgfleet.cli import app as cli_app
from tgfleet.config import Settings, parse_dcs, unknown_settings
from tgfleet.worker.supervisor import Supervisor

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
IMAGE = "ghcr.io/tgfleet/tgfleet"
TOOL_TIMEOUT = 120.0
#: The checks skipped on purpose, each annotated on the object with its reason.
ALLOWED_SKIPS = frozenset({"CKV_K8S_43"})
MONITORING_GROUP = "monitoring.coreos.com/v1"
POD_OWNERS = frozenset({"Deployment", "Job"})
#: Telegram's published ranges (core.telegram.org/resources/cidr.txt).
TELEGRAM_CIDRS = frozenset(
    {
        "91.105.192.0/23",
        "91.108.4.0/22",
        "91.108.8.0/22",
        "91.108.12.0/22",
        "91.108.16.0/22",
        "91.108.20.0/22",
        "91.108.56.0/22",
        "95.161.64.0/20",
        "149.154.160.0/20",
        "185.76.151.0/24",
        "2001:67c:4e8::/48",
        "2001:b28:f23c::/47",
        "2001:b28:f23f::/48",
        "2a0a:f280::/32",
    }
)
SECRET_WORDS = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSPHRASE|HASH|DATABASE_URL", re.IGNORECASE)

Doc = dict[str, Any]


def _run(args: list[str], *, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False
    )


@pytest.fixture(scope="module")
def rendered_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each overlay rendered by ``kubectl kustomize`` into a file of its own."""
    kubectl = require_tool("kubectl")
    out = tmp_path_factory.mktemp("kustomize")
    files = {}
    for overlay in OVERLAYS:
        result = _run([kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)])
        assert result.returncode == 0, f"{overlay}: {result.stderr}"
        files[overlay] = out / f"{overlay}.yaml"
        files[overlay].write_text(result.stdout, encoding="utf-8")
    return files


@pytest.fixture(scope="module")
def rendered(rendered_files: dict[str, Path]) -> dict[str, list[Doc]]:
    return {
        overlay: [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
        for overlay, path in rendered_files.items()
    }


def objects(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    (found,) = (d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
    return found


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in POD_OWNERS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def containers(spec: Doc) -> list[Doc]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and In expressions, or a bare map) matches."""
    match = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pod_labels(docs: list[Doc]) -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["metadata"]["labels"]
        for doc in docs
        if doc["kind"] in POD_OWNERS
    }


# ------------------------------------------------------------------------------ the tools


@pytest.fixture(scope="module")
def versions() -> list[str]:
    """The three newest Kubernetes minor versions this kubernetes-validate ships schemas
    for, asked of the tool itself (its venv's Python)."""
    tool = Path(require_tool("kubernetes-validate"))
    result = _run(
        [
            str(tool.parent / "python"),
            "-c",
            "import json, kubernetes_validate.utils as u; print(json.dumps(u.all_versions()))",
        ]
    )
    assert result.returncode == 0, result.stderr
    known = sorted(
        set(json.loads(result.stdout)), key=lambda v: tuple(int(p) for p in v.split("."))
    )
    assert len(known) >= 3, known
    return known[-3:]


@pytest.fixture(scope="module")
def checkov_report(
    rendered_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Doc:
    """checkov's Kubernetes checks, once over every rendered overlay (``--skip-download``:
    no policy download from its platform)."""
    checkov = require_tool("checkov")
    target = tmp_path_factory.mktemp("checkov")
    for path in rendered_files.values():
        shutil.copy(path, target / path.name)
    result = _run(
        [
            checkov,
            "--framework",
            "kubernetes",
            "-d",
            str(target),
            "--skip-download",
            "--output",
            "json",
        ]
    )
    assert result.returncode in {0, 1}, result.stderr
    document = json.loads(result.stdout)
    assert isinstance(document, dict), document
    return document


class TestKubernetesValidate:
    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_strict_for_the_three_newest_versions(
        self,
        overlay: str,
        versions: list[str],
        rendered_files: dict[str, Path],
        rendered: dict[str, list[Doc]],
    ) -> None:
        """Every object of the overlay passes strict validation (no unknown field) for each
        version. The Prometheus Operator's kinds have no schema in the tool (CRDs): they are
        the only ones it may skip, and the monitoring tests below check them instead."""
        tool = require_tool("kubernetes-validate")
        args = [tool, "--strict"]
        for version in versions:
            args += ["-k", version]
        result = _run([*args, str(rendered_files[overlay])])
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert not [line for line in lines if line.startswith(("ERROR", "FATAL"))]
        docs = rendered[overlay]
        crds = [d for d in docs if d["apiVersion"] == MONITORING_GROUP]
        checked = len(docs) - len(crds)
        passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
        assert len(passed) == checked * len(versions), result.stdout
        for version in versions:
            minor = ".".join(version.split(".")[:2])
            assert sum(line.endswith(f"against version {minor}") for line in passed) == checked
        warned = [line for line in lines if line.startswith("WARN")]
        assert len(warned) == len(crds) * len(versions), warned
        assert all(MONITORING_GROUP in line for line in warned), warned


class TestCheckov:
    def test_no_failed_check(self, checkov_report: Doc) -> None:
        """Zero failures and zero parsing errors over every object of every overlay."""
        summary = checkov_report["summary"]
        failed = [
            f"{r['check_id']} {r['resource']}: {r['check_name']}"
            for r in checkov_report["results"]["failed_checks"]
        ]
        assert failed == []
        assert summary["parsing_errors"] == 0
        assert summary["passed"] > 100

    def test_every_skip_is_deliberate_and_explained(self, checkov_report: Doc) -> None:
        """Only the allowed checks are skipped, each with the reason written on the object."""
        skipped = checkov_report["results"]["skipped_checks"]
        assert skipped, "the skip annotations were not read"
        for check in skipped:
            assert check["check_id"] in ALLOWED_SKIPS, check["check_id"]
            assert len(check["check_result"].get("suppress_comment", "")) > 20, check


# ------------------------------------------------------------------------------ the objects


@pytest.mark.parametrize("overlay", OVERLAYS)
class TestObjects:
    def test_every_pod_is_restricted(self, overlay: str, rendered: dict[str, list[Doc]]) -> None:
        """The restricted Pod Security Standard on every pod and container: non-root 10001,
        read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp, no
        service account token; the namespace enforces it."""
        docs = rendered[overlay]
        specs = list(pod_specs(docs))
        assert len(specs) >= 3
        for where, spec in specs:
            pod = spec["securityContext"]
            assert pod["runAsNonRoot"] is True, where
            assert pod["runAsUser"] == 10001, where
            assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert spec["automountServiceAccountToken"] is False, where
            assert spec["serviceAccountName"] == "tgfleet", where
            assert not spec.get("hostNetwork"), where
            assert not spec.get("hostPID"), where
            for container in containers(spec):
                context = container["securityContext"]
                name = f"{where} {container['name']}"
                assert context["runAsNonRoot"] is True, name
                assert context["runAsUser"] == 10001, name
                assert context["readOnlyRootFilesystem"] is True, name
                assert context["allowPrivilegeEscalation"] is False, name
                assert context.get("privileged", False) is False, name
                assert context["capabilities"] == {"drop": ["ALL"]}, name
                assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
                mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
                assert "/tmp" in mounts, name  # noqa: S108 - the container's own tmpfs
        namespace = one(docs, "Namespace", "tgfleet")["metadata"]["labels"]
        assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
        account = one(docs, "ServiceAccount", "tgfleet")
        assert account["automountServiceAccountToken"] is False

    def test_probes_and_resources(self, overlay: str, rendered: dict[str, list[Doc]]) -> None:
        """Every long-running container: liveness on /livez, readiness on /readyz and a
        startup probe, each on a port it declares by name; every container (init ones too):
        CPU and memory requests and limits."""
        docs = rendered[overlay]
        serving = 0
        for where, spec in pod_specs(docs):
            for container in containers(spec):
                name = f"{where} {container['name']}"
                for bound in ("requests", "limits"):
                    assert set(container["resources"][bound]) >= {"cpu", "memory"}, name
            if where.startswith("Job/"):
                continue
            for container in spec["containers"]:
                serving += 1
                name = f"{where} {container['name']}"
                ports = {p["name"] for p in container["ports"]}
                paths = ("/livez", "/readyz", "/livez")
                if container["name"] == "sandbox":  # the dev sandbox: its control API's
                    paths = ("/health", "/health", "/health")
                for probe, path in zip(
                    ("livenessProbe", "readinessProbe", "startupProbe"), paths, strict=True
                ):
                    http = container[probe]["httpGet"]
                    assert http["path"] == path, f"{name} {probe}"
                    assert http["port"] in ports, f"{name} {probe}"
        assert serving >= 2

    def test_the_workloads_and_their_ports(
        self, overlay: str, rendered: dict[str, list[Doc]]
    ) -> None:
        """The API serves 8000 (port "http"), the worker 9464 ("metrics"): the names the
        Prometheus jobs keep; the Deployments wait for the schema (`tgfleet db current`);
        the migration Job runs `db upgrade`."""
        docs = rendered[overlay]
        api = one(docs, "Deployment", "tgfleet-api")["spec"]["template"]["spec"]
        worker = one(docs, "Deployment", "tgfleet-worker")["spec"]["template"]["spec"]
        job = one(docs, "Job", "tgfleet-migrate")["spec"]["template"]["spec"]
        assert api["containers"][0]["args"] == ["api"]
        assert api["containers"][0]["ports"] == [
            {"name": "http", "containerPort": 8000, "protocol": "TCP"}
        ]
        assert worker["containers"][0]["args"] == ["worker"]
        assert worker["containers"][0]["ports"] == [
            {"name": "metrics", "containerPort": 9464, "protocol": "TCP"}
        ]
        assert job["containers"][0]["args"] == ["db", "upgrade"]
        for spec in (api, worker):
            (wait,) = spec["initContainers"]
            assert "tgfleet db current" in " ".join(wait["command"])

    def test_secrets_are_referenced_never_embedded(
        self, overlay: str, rendered: dict[str, list[Doc]]
    ) -> None:
        """No Secret object is rendered; every tgfleet container (not the dev sandbox's
        server) mounts the operator's Secret `tgfleet` where TGFLEET_SECRETS_DIR points; no
        env value, env reference or ConfigMap entry carries a secret; every TGFLEET_
        variable names a real setting."""
        docs = rendered[overlay]
        assert objects(docs, "Secret") == []
        config = [c for c in objects(docs, "ConfigMap") if "-config-" in c["metadata"]["name"]]
        assert len(config) == 1
        data = config[0]["data"]
        assert not [k for k in data if SECRET_WORDS.search(k) and k != "TGFLEET_SECRETS_DIR"]
        assert unknown_settings(data) == []
        assert data["TGFLEET_ALERTING_CONFIG"].startswith("/etc/tgfleet/alerting/")
        mounted = 0
        for where, spec in pod_specs(docs):
            volumes = {v["name"]: v for v in spec["volumes"]}
            for container in containers(spec):
                name = f"{where} {container['name']}"
                for source in container.get("envFrom", []):
                    assert "secretRef" not in source, name
                for variable in container.get("env", []):
                    assert "value" not in variable or not SECRET_WORDS.search(variable["name"])
                    assert "secretKeyRef" not in variable.get("valueFrom", {}), name
                if where.endswith("-sandbox") and container["name"] in {"mint", "sandbox"}:
                    continue  # the dev sandbox's own world: no tgfleet settings
                assert {"configMapRef": {"name": config[0]["metadata"]["name"]}} in container[
                    "envFrom"
                ], name
                (mount,) = [
                    m
                    for m in container["volumeMounts"]
                    if m["mountPath"] == data["TGFLEET_SECRETS_DIR"]
                ]
                assert mount["readOnly"] is True, name
                secret = volumes[mount["name"]]["secret"]
                assert secret["secretName"] == "tgfleet", name
                assert secret["defaultMode"] == 0o440, name
                assert spec["securityContext"]["fsGroup"] == 10001, name
                mounted += 1
        assert mounted >= 5

    def test_worker_grace_period_outlasts_its_drain(
        self, overlay: str, rendered: dict[str, list[Doc]]
    ) -> None:
        """The worker's grace period is longer than its stop on SIGTERM can take: the
        clients' stop (the supervisor's shutdown timeout), the wait for the last ones (1 s),
        the lease hand-over (3 s), the status and reply flushes (2 s each)."""
        default = inspect.signature(Supervisor).parameters["shutdown_timeout"].default
        assert isinstance(default, float)
        drain_bound = default + 1.0 + 3.0 + 2.0 + 2.0
        worker = one(rendered[overlay], "Deployment", "tgfleet-worker")["spec"]["template"]
        assert worker["spec"]["terminationGracePeriodSeconds"] > drain_bound
        assert worker["spec"]["terminationGracePeriodSeconds"] >= 2 * drain_bound

    def test_selectors_find_their_pods(self, overlay: str, rendered: dict[str, list[Doc]]) -> None:
        """Every Service, PodDisruptionBudget and the HPA's target name pods or workloads
        that exist; the Deployments' own selectors match their templates."""
        docs = rendered[overlay]
        labels = pod_labels(docs)
        for doc in docs:
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            if doc["kind"] == "Service":
                assert any(selects(doc["spec"]["selector"], v) for v in labels.values()), where
            if doc["kind"] in {"PodDisruptionBudget", "Deployment"}:
                assert any(selects(doc["spec"]["selector"], v) for v in labels.values()), where
        (hpa,) = objects(docs, "HorizontalPodAutoscaler")
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] in labels
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]

    def test_one_image(self, overlay: str, rendered: dict[str, list[Doc]]) -> None:
        """tgfleet's containers all run one image reference, with a tag (never `latest`)."""
        references = {
            container["image"]
            for _, spec in pod_specs(rendered[overlay])
            for container in containers(spec)
        }
        assert len(references) == 1, references
        (reference,) = references
        name, _, tag = reference.rpartition(":")
        assert name == IMAGE
        assert tag
        assert tag != "latest"

    def test_network_policies(self, overlay: str, rendered: dict[str, list[Doc]]) -> None:
        """Default deny in and out; the API reachable from the ingress controller's namespace
        and Prometheus on 8000, the workers from Prometheus on 9464; out: DNS to kube-dns,
        PostgreSQL on 5432, and (API and workers only) Telegram's ranges on 443."""
        docs = rendered[overlay]
        policies = objects(docs, "NetworkPolicy")
        deny = one(docs, "NetworkPolicy", "tgfleet-default-deny")["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        labels = pod_labels(docs)

        def rules(workload: str, direction: str) -> list[Doc]:
            found = []
            for policy in policies:
                spec = policy["spec"]
                if direction in spec["policyTypes"] and selects(
                    spec["podSelector"], labels[workload]
                ):
                    found += spec.get(direction.lower(), [])
            return found

        prometheus = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
        ingress_nginx = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
        }
        (api_in,) = rules("tgfleet-api", "Ingress")
        assert api_in["ports"] == [{"port": 8000, "protocol": "TCP"}]
        assert sorted(map(json.dumps, api_in["from"])) == sorted(
            map(json.dumps, [ingress_nginx, prometheus])
        )
        (worker_in,) = rules("tgfleet-worker", "Ingress")
        assert worker_in == {"from": [prometheus], "ports": [{"port": 9464, "protocol": "TCP"}]}
        assert rules("tgfleet-migrate", "Ingress") == []

        for workload, telegram in (
            ("tgfleet-api", True),
            ("tgfleet-worker", True),
            ("tgfleet-migrate", False),
        ):
            by_port: dict[int, list[Doc]] = {}
            for rule in rules(workload, "Egress"):
                for port in rule["ports"]:
                    peers = by_port.setdefault(port["port"], [])
                    peers += [peer for peer in rule["to"] if peer not in peers]
            expected = {53, 5432} | ({443} if telegram else set())
            if overlay == "dev" and telegram:
                expected.add(8443)  # the demo sandbox, the dev fleet's Telegram
                assert by_port[8443] == [
                    {"podSelector": {"matchLabels": labels["tgfleet-sandbox"]}}
                ]
            assert set(by_port) == expected, workload
            assert by_port[53] == [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    },
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ]
            assert by_port[5432] == [
                {
                    "namespaceSelector": {},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgresql"}},
                }
            ]
            if telegram:
                cidrs = {peer["ipBlock"]["cidr"] for peer in by_port[443]}
                assert cidrs == TELEGRAM_CIDRS
                assert all(set(peer) == {"ipBlock"} for peer in by_port[443])


def test_telegram_ranges_cover_the_data_centres() -> None:
    """Every DC address tgfleet knows (its probes' defaults) lies in the allowed ranges."""
    networks = [ipaddress.ip_network(cidr) for cidr in TELEGRAM_CIDRS]
    addresses = parse_dcs(tgfleet_config.DEFAULT_TELEGRAM_DCS).values()
    assert len(addresses) == 5
    for host, port in addresses:
        assert port == 443
        assert any(ipaddress.ip_address(host) in network for network in networks), host


def test_overlays_differ_as_documented(rendered: dict[str, list[Doc]]) -> None:
    """dev: one replica of each, the demo sandbox, no Operator objects (no CRDs needed);
    production: three workers, the API autoscaled from 2 to 10, the Operator's objects."""
    dev, production = rendered["dev"], rendered["production"]
    assert one(dev, "Deployment", "tgfleet-worker")["spec"]["replicas"] == 1
    dev_hpa = one(dev, "HorizontalPodAutoscaler", "tgfleet-api")["spec"]
    assert (dev_hpa["minReplicas"], dev_hpa["maxReplicas"]) == (1, 1)
    sandbox = one(dev, "Deployment", "tgfleet-sandbox")["spec"]["template"]["spec"]
    (mint,) = [c for c in sandbox["initContainers"] if c["name"] == "mint"]
    service = one(dev, "Service", "tgfleet-sandbox")["spec"]
    # The sessions hold the sandbox's address: the Service's fixed clusterIP and its port.
    address = mint["args"][mint["args"].index("--address") + 1]
    port = int(mint["args"][mint["args"].index("--port") + 1])
    assert service["clusterIP"] == address
    assert [p["port"] for p in service["ports"]] == [port]
    assert any("sandbox seed" in " ".join(c.get("command", [])) for c in sandbox["initContainers"])
    assert not [d for d in dev if d["apiVersion"] == MONITORING_GROUP]
    assert one(production, "Deployment", "tgfleet-worker")["spec"]["replicas"] == 3
    assert "replicas" not in one(production, "Deployment", "tgfleet-api")["spec"]
    hpa = one(production, "HorizontalPodAutoscaler", "tgfleet-api")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert not [d for d in production if d["metadata"]["name"].startswith("tgfleet-sandbox")]
    kinds = {d["kind"] for d in production if d["apiVersion"] == MONITORING_GROUP}
    assert kinds == {"ServiceMonitor", "PrometheusRule"}


@pytest.mark.parametrize(
    ("where", "token", "receivers"),
    [("base", "123456:test-token", ["operators"]), ("overlays/dev", None, ["console"])],
)
def test_shipped_alerting_configs_load(
    where: str,
    token: str | None,
    receivers: list[str],
    tmp_path: Path,
    rendered: dict[str, list[Doc]],
) -> None:
    """Each alerting.yml the ConfigMaps carry is a configuration tgfleet accepts (what
    `tgfleet alert check` runs): production's with the bot token from the Secret, dev's with
    none; the rendered ConfigMap holds that very file."""
    path = KUBERNETES / where / "alerting.yml"
    settings = Settings(
        data_dir=tmp_path,
        alerting_config=path,
        alerting_telegram_bot_token=SecretStr(token) if token else None,
    )
    config = config_from_settings(settings)
    assert list(config.receiver_names) == receivers
    assert not config.warnings
    overlay = "dev" if where == "overlays/dev" else "production"
    (alerting,) = [
        c for c in objects(rendered[overlay], "ConfigMap") if "-alerting-" in c["metadata"]["name"]
    ]
    assert alerting["data"] == {"alerting.yml": path.read_text(encoding="utf-8")}


# ------------------------------------------------------------------------------ monitoring


class TestMonitoring:
    SCRIPT = ROOT / "tools" / "k8s_monitoring.py"

    def test_generated_files_are_current(self) -> None:
        """The committed ServiceMonitors and PrometheusRule are what the script makes of
        deploy/prometheus now."""
        result = _run([sys.executable, str(self.SCRIPT), "--check"])
        assert result.returncode == 0, result.stderr

    def test_check_notices_a_source_change(self, tmp_path: Path) -> None:
        """A rule changed in deploy/prometheus alone makes --check fail, naming the file
        to regenerate; writing regenerates it."""
        shutil.copytree(ROOT / "deploy" / "prometheus", tmp_path / "deploy" / "prometheus")
        component = Path("deploy/kubernetes/components/monitoring")
        shutil.copytree(ROOT / component, tmp_path / component)
        rules = tmp_path / "deploy" / "prometheus" / "rules" / "tgfleet.rules.yml"
        rules.write_text(
            rules.read_text(encoding="utf-8").replace("for: 5m", "for: 6m", 1), encoding="utf-8"
        )
        stale = _run([sys.executable, str(self.SCRIPT), "--root", str(tmp_path), "--check"])
        assert stale.returncode == 1
        assert "prometheusrule.yaml" in stale.stderr
        assert "servicemonitors.yaml" not in stale.stderr
        assert _run([sys.executable, str(self.SCRIPT), "--root", str(tmp_path)]).returncode == 0
        fresh = _run([sys.executable, str(self.SCRIPT), "--root", str(tmp_path), "--check"])
        assert fresh.returncode == 0, fresh.stderr

    def test_rendered_objects_match_deploy_prometheus(self, rendered: dict[str, list[Doc]]) -> None:
        """In the production overlay: the PrometheusRule's groups are the rules file's; one
        ServiceMonitor per Kubernetes job, which sets `job` to that job's name (the names
        the rules select by), selects a Service with the job's pod labels and scrapes the
        port the job keeps."""
        docs = rendered["production"]
        source = ROOT / "deploy" / "prometheus"
        rules = yaml.safe_load((source / "rules" / "tgfleet.rules.yml").read_text("utf-8"))
        prometheus = yaml.safe_load((source / "prometheus.yml").read_text("utf-8"))
        (rule,) = objects(docs, "PrometheusRule")
        assert rule["spec"]["groups"] == rules["groups"]
        assert rule["metadata"]["namespace"] == "tgfleet"
        jobs = {
            job["job_name"]: job
            for job in prometheus["scrape_configs"]
            if "kubernetes_sd_configs" in job
        }
        assert set(jobs) == {"tgfleet-api", "tgfleet-worker"}
        monitors = {m["metadata"]["name"]: m for m in objects(docs, "ServiceMonitor")}
        assert set(monitors) == set(jobs)
        services = objects(docs, "Service")
        for name, job in jobs.items():
            (endpoint,) = monitors[name]["spec"]["endpoints"]
            assert endpoint["relabelings"][-1] == {
                "action": "replace",
                "targetLabel": "job",
                "replacement": name,
            }
            label = job["kubernetes_sd_configs"][0]["selectors"][0]["label"]
            wanted = dict(pair.split("=", 1) for pair in label.split(","))
            assert monitors[name]["spec"]["selector"]["matchLabels"] == wanted
            (service,) = [s for s in services if selects(wanted, s["metadata"]["labels"])]
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
            keep = [
                r
                for r in job["relabel_configs"]
                if r.get("action") == "keep"
                and r["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]
            ]
            assert [r["regex"] for r in keep] == [endpoint["port"]]
        expressions = "\n".join(r["expr"] for g in rules["groups"] for r in g["rules"])
        selected = set(re.findall(r'job=~?"([^"]+)"', expressions))
        named = {n for alternatives in selected for n in alternatives.split("|")}
        assert named - {"tgfleet-run"} == set(jobs)


def test_secret_example_names_settings_and_holds_no_value() -> None:
    """secret.example.yaml (in no kustomization) names only real settings, as `envFrom`
    needs, and every value is a placeholder."""
    example = yaml.safe_load((KUBERNETES / "base" / "secret.example.yaml").read_text("utf-8"))
    data = example["stringData"]
    assert unknown_settings(data) == []
    assert {"TGFLEET_DATABASE_URL", "TGFLEET_VAULT_KEY", "TGFLEET_AUDIT_KEY"} <= set(data)
    assert all("CHANGE-ME" in value for value in data.values())
    for overlay in ("base", *(f"overlays/{o}" for o in OVERLAYS)):
        kustomization = yaml.safe_load((KUBERNETES / overlay / "kustomization.yaml").read_text())
        assert "secret.example.yaml" not in kustomization["resources"]


def command_lines(container: Doc) -> list[list[str]]:
    """The tgfleet command lines a container runs: its ``args`` after the image's
    ``tgfleet`` entrypoint, or each ``tgfleet ...`` of a ``sh -c`` script."""
    command = container.get("command")
    if command is None:
        return [list(container["args"])]
    assert command[:2] == ["sh", "-c"], command
    return [shlex.split(line)[1:] for line in re.findall(r"tgfleet [^;&|]+", command[2])]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_run_real_commands(overlay: str, rendered: dict[str, list[Doc]]) -> None:
    """Every command line in the manifests names a tgfleet command that exists and only
    options that command has (a renamed option would otherwise surface on a cluster)."""
    root = typer.main.get_command(cli_app)
    context = typer.Context(root)
    seen = 0
    for where, spec in pod_specs(rendered[overlay]):
        for container in containers(spec):
            for line in command_lines(container):
                command: Any = root
                words = list(line)
                while words and words[0] in getattr(command, "list_commands", lambda _: [])(
                    context
                ):
                    command = command.get_command(context, words.pop(0))
                # A group runs only when it runs without a subcommand (`tgfleet worker`).
                assert not hasattr(command, "list_commands") or command.invoke_without_command, (
                    where,
                    line,
                )
                options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
                flags = [w.split("=", 1)[0] for w in words if w.startswith("--")]
                assert set(flags) <= options, (where, line, set(flags) - options)
                seen += 1
    assert seen >= 5


def test_a_mounted_secret_is_read_through_the_secrets_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kubelet's layout of a Secret volume (each key a symlink into a timestamped
    directory behind ``..data``, swapped atomically on update) is what TGFLEET_SECRETS_DIR
    reads: the manifests' secrets reach the settings."""
    mount = tmp_path / "tgfleet"
    payload = mount / "..2026_12_07_20_50_00.000000001"
    payload.mkdir(parents=True)
    values = {
        "TGFLEET_JWT_SECRET": "jwt-from-the-secret",
        "TGFLEET_DATABASE_URL": "postgresql+asyncpg://tgfleet:pw@db:5432/tgfleet",
        "TGFLEET_ALERTING_TELEGRAM_BOT_TOKEN": "123456:bot",
    }
    for key, value in values.items():
        (payload / key).write_text(value + "\n", encoding="utf-8")
    (mount / "..data").symlink_to(payload.name)
    for key in values:
        (mount / key).symlink_to(Path("..data") / key)
    for key in (*values, "TGFLEET_SECRETS_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TGFLEET_SECRETS_DIR", str(mount))
    settings = Settings.load()
    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == "jwt-from-the-secret"
    assert settings.database_url == values["TGFLEET_DATABASE_URL"]
    assert settings.alerting_telegram_bot_token is not None
    assert settings.alerting_telegram_bot_token.get_secret_value() == "123456:bot"
