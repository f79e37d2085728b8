"""Every command's ``--help`` reads well: no summary cut mid-sentence in a command list, no
typer type metavar (``<bool>``, ``<str>``), and the server's commands show an example."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.harness import tgfleet_env

#: Verbs whose commands run on the server's host (issue 19: their help was checked here).
SERVER_VERBS = ("db", "vault", "session", "backup", "sandbox")
TYPE_METAVAR = re.compile(r"<(?:bool|str|int|float|path|uuid|list\[\w+\])>", re.IGNORECASE)


def _help(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tgfleet", *args, "--help"],
        capture_output=True,
        text=True,
        env=tgfleet_env(COLUMNS="80", XDG_CONFIG_HOME="/nonexistent"),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _commands(text: str) -> dict[str, str]:
    """A group's ``Commands:`` section: name -> summary."""
    rows = text.split("Commands:", 1)[1].strip().splitlines() if "Commands:" in text else []
    return dict(row.strip().split(None, 1) for row in rows if row.strip())


@pytest.mark.parametrize("verb", SERVER_VERBS)
def test_server_commands_summarise_in_a_sentence_and_show_an_example(verb: str) -> None:
    group = _help(verb)
    commands = _commands(group)
    assert commands, group
    for name, summary in commands.items():
        assert not summary.endswith("..."), f"{verb} {name}: {summary!r} is cut"
        own = _help(verb, name)
        assert "Example" in own, f"`tgfleet {verb} {name} --help` shows no example"
        assert not TYPE_METAVAR.search(own), own
    assert not TYPE_METAVAR.search(group), group


@pytest.mark.parametrize("verb", ["run", "api"])
def test_serving_commands_show_an_example(verb: str) -> None:
    text = _help(verb)
    assert "Example" in text
    assert not TYPE_METAVAR.search(text), text


def test_sandbox_options_name_what_they_take() -> None:
    text = _help("sandbox")
    assert "--world FILE" in text
    assert "--control-port PORT" in text
    assert "CONTROL_PORT" not in text


@pytest.mark.parametrize(
    "verb",
    ["account", "group", "playbook", "alert", "silence", "worker", "audit", "context", "user"],
)
def test_command_lists_show_whole_first_sentences(verb: str) -> None:
    """Click cut a long summary to the width with '...'; the first sentence now wraps."""
    text = _help(verb)
    listing = text.split("Commands:", 1)[1]
    assert "..." not in listing, listing
    for line in listing.strip("\n").splitlines():
        assert not line or line.startswith("  "), listing
