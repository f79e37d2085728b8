"""``tgfleet playbook``: apply, diff, versions, show and the dry run from files, against a
real ``tgfleet run --demo`` server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.remote.conftest import Cli, DemoServer

GREETER = """\
description: Greets people
rules:
  - name: hello
    when:
      keywords: [hello]
    reply:
      templates: ["Hi {{ sender.name }}!"]
"""
#: The same with another reply: one changed line.
GREETER_2 = GREETER.replace('"Hi {{', '"Hello there, {{')
#: A typo on line 5 (``keywrds``).
TYPO = GREETER.replace("keywords:", "keywrds:")


def by_name(demo_server: DemoServer, name: str) -> dict[str, Any] | None:
    with demo_server.api() as api:
        items = api.get("/api/v1/playbooks", params={"limit": 500}).json()["items"]
    return next((p for p in items if p["name"] == name), None)


def test_apply_creates_then_versions_then_says_unchanged(
    demo_server: DemoServer, operator: Cli, tmp_path: Path
) -> None:
    """A new file creates version 1 under the file's name, a changed file saves version 2,
    the same file again saves nothing; `versions` and `show --version` read them back."""
    path = tmp_path / "greeter.yaml"
    path.write_text(GREETER)
    assert "playbook greeter created: version 1" in operator.ok("playbook", "apply", str(path))
    created = by_name(demo_server, "greeter")
    assert created is not None
    assert created["latest_version"] == 1
    with demo_server.api() as api:
        assert api.get(f"/api/v1/playbooks/{created['id']}").json()["source"] == GREETER

    path.write_text(GREETER_2)
    assert "playbook greeter updated: version 2" in operator.ok("playbook", "apply", str(path))
    assert "playbook greeter unchanged (version 2)" in operator.ok("playbook", "apply", str(path))
    updated = by_name(demo_server, "greeter")
    assert updated is not None
    assert updated["latest_version"] == 2

    with demo_server.api() as api:
        versions = api.get(f"/api/v1/playbooks/{created['id']}/versions").json()["items"]
    listed = operator.json("playbook", "versions", "greeter")
    assert listed == versions
    assert [v["version"] for v in listed] == [2, 1]
    first = operator.ok("playbook", "show", created["id"][:8], "--version", "1", "--source")
    assert first == GREETER
    shown = operator.json("playbook", "show", "greeter")
    assert (shown["id"], shown["latest_version"], shown["source"]) == (created["id"], 2, GREETER_2)


def test_a_typo_names_its_line_and_saves_nothing(
    demo_server: DemoServer, operator: Cli, tmp_path: Path
) -> None:
    """The API's problem comes back as one line with the file and the YAML line; exit 1."""
    path = tmp_path / "typo.yaml"
    path.write_text(TYPO)
    done = operator.run("playbook", "apply", str(path))
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert lines
    assert all(line.startswith(f"error: {path}: line ") for line in lines)
    assert any("line 5," in line and "keywrds" in line and "keywords" in line for line in lines)
    assert by_name(demo_server, "typo") is None


def test_diff_exits_1_with_the_changed_line_and_0_when_equal(operator: Cli, tmp_path: Path) -> None:
    """`diff` prints a unified diff of the server's latest against the file."""
    path = tmp_path / "differ.yaml"
    path.write_text(GREETER)
    missing = operator.run("playbook", "diff", str(path))
    assert missing.returncode == 1
    assert "+  - name: hello" in missing.stdout
    operator.ok("playbook", "apply", str(path))
    same = operator.run("playbook", "diff", str(path))
    assert (same.returncode, same.stdout) == (0, "")
    path.write_text(GREETER_2)
    changed = operator.run("playbook", "diff", str(path))
    assert changed.returncode == 1, changed.stderr
    assert '-      templates: ["Hi {{ sender.name }}!"]' in changed.stdout.splitlines()
    assert '+      templates: ["Hello there, {{ sender.name }}!"]' in changed.stdout.splitlines()
    assert "--- differ (server, version 1)" in changed.stdout


def test_dry_run_answers_what_the_api_answers(
    demo_server: DemoServer, operator: Cli, tmp_path: Path
) -> None:
    """The CLI's dry run is the API's: the rule, the reply and the reason, as JSON."""
    path = tmp_path / "dry.yaml"
    path.write_text(GREETER)
    operator.ok("playbook", "apply", str(path))
    playbook = by_name(demo_server, "dry")
    assert playbook is not None
    body = {"message": {"text": "hello all", "sender_first_name": "Ana"}}
    with demo_server.api() as api:
        expected = api.post(f"/api/v1/playbooks/{playbook['id']}/dry-run", json=body).json()
    answered = operator.json("playbook", "dry-run", "dry", "--text", "hello all", "--sender", "Ana")
    assert answered == expected
    assert (answered["fired"], answered["rule"], answered["reply"]) == (True, "hello", "Hi Ana!")
    quiet = operator.json("playbook", "dry-run", "dry", "--text", "nothing to see")
    assert (quiet["fired"], quiet["reason"]) == (False, "no_rule_matched")
    table = operator.ok("playbook", "dry-run", "dry", "--text", "hello")
    assert "Hi Alex!" in table


def test_a_viewer_cannot_apply(demo_server: DemoServer, viewer: Cli, tmp_path: Path) -> None:
    """Exit 4, the permission named, nothing created; the viewer may still read."""
    path = tmp_path / "viewers.yaml"
    path.write_text(GREETER)
    done = viewer.run("playbook", "apply", str(path))
    assert done.returncode == 4, done.stderr
    assert "playbook:write" in done.stderr
    assert by_name(demo_server, "viewers") is None
    assert {p["name"] for p in viewer.json("playbook", "list")} >= {"support-faq"}


def test_playbook_names_complete_from_the_current_context(
    operator: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TAB values of a playbook NAME: the server's names with that start, nothing
    (and no output) without a context."""
    from tgfleet.cli import _complete, _remote

    monkeypatch.setenv("XDG_CONFIG_HOME", str(operator.home))
    for name in ("TGFLEET_SERVER", "TGFLEET_CONTEXT", "TGFLEET_CONFIG", "TGFLEET_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    _remote.choose(server=None, context=None)
    assert _complete.playbook_names("supp") == ["support-faq"]
    assert "community-welcome" in _complete.playbook_names("")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(operator.home / "nobody"))
    assert _complete.playbook_names("") == []
