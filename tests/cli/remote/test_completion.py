"""Shell completion, for real: the installed ``tgfleet`` script run with typer's completion
protocol (the variables the bash, zsh and fish scripts set), a real bash sourcing the
script ``tgfleet completion bash`` prints, and the value helpers asking a real
``tgfleet run --demo`` server."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.remote.conftest import ADMIN, CLI_TIMEOUT, Cli, DemoServer
from tests.harness import free_port
from tgfleet.cli import VERBS

#: The console script the shells call (``$1`` in the bash script): the venv's ``tgfleet``.
TGFLEET = Path(sys.executable).with_name("tgfleet")
BASH = shutil.which("bash")
#: The value helpers time out after 2 s; a TAB answered within this is not hanging.
SILENT_WITHIN = 10.0


def complete(cli: Cli, line: str, via: str = "bash", **env: str) -> list[str]:
    """What ``tgfleet`` offers for the last word of ``line`` (empty after a trailing
    space), through the protocol the script for the shell ``via`` speaks; nothing may
    reach stderr."""
    if via == "bash":
        words = line.split()
        cword = len(words) if line.endswith(" ") else len(words) - 1
        protocol = {"COMP_WORDS": line, "COMP_CWORD": str(cword)}
    else:
        protocol = {"_TYPER_COMPLETE_ARGS": line, "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    done = subprocess.run(
        [str(TGFLEET)],
        capture_output=True,
        text=True,
        env=cli.env(_TGFLEET_COMPLETE=f"complete_{via}", **protocol, **env),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, (line, done.stdout, done.stderr)
    assert done.stderr == "", done.stderr
    return done.stdout.rstrip("\n").splitlines()


def helper(cli: Cli, function: str, incomplete: str, **env: str) -> list[str]:
    """``tgfleet.cli._complete.<function>(incomplete)`` in a fresh process with the CLI's
    environment, as a TAB runs it; nothing may reach stderr."""
    code = (
        "import json, sys\n"
        "from tgfleet.cli import _complete\n"
        f"print(json.dumps(_complete.{function}(sys.argv[1])))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, incomplete],
        capture_output=True,
        text=True,
        env=cli.env(**env),
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    values: list[str] = json.loads(done.stdout)
    return values


class TestProtocol:
    def test_the_console_script_is_installed(self) -> None:
        """The shells call ``tgfleet`` itself; the tests below run that very script."""
        assert TGFLEET.is_file(), TGFLEET

    def test_bash_completes_verbs_from_the_table(self, cli: Cli) -> None:
        """Every verb, in the table's order, and only the matching ones for a prefix."""
        assert complete(cli, "tgfleet ") == list(VERBS)
        assert complete(cli, "tgfleet acc") == ["account"]
        assert complete(cli, "tgfleet co") == ["context", "completion"]

    def test_bash_completes_a_verbs_subcommands_and_options(self, cli: Cli) -> None:
        """The verb's module is loaded for its sub-commands and their options."""
        assert complete(cli, "tgfleet context ") == ["list", "use", "current", "delete"]
        assert complete(cli, "tgfleet context list --") == ["--output", "--help"]
        assert complete(cli, "tgfleet context list -o ") == ["table", "wide", "json", "yaml"]
        assert complete(cli, "tgfleet completion ") == ["bash", "zsh", "fish"]

    def test_bash_completes_the_roots_options(self, cli: Cli) -> None:
        """The root group's own options after a dash, beside no verb."""
        offered = complete(cli, "tgfleet --")
        assert {"--server", "--context", "--install-completion", "--help"} <= set(offered)
        assert not set(offered) & set(VERBS)

    def test_zsh_and_fish_complete_verbs(self, cli: Cli) -> None:
        """zsh's answer is an ``_arguments`` call with each verb and its summary (colons
        escaped); fish's is one ``value<TAB>help`` line per verb."""
        summary = VERBS["account"].summary
        escaped = summary.replace(":", "\\\\:")
        assert complete(cli, "tgfleet acc", via="zsh") == [
            f"""_arguments '*: :(("account":"{escaped}"))'"""
        ]
        assert complete(cli, "tgfleet acc", via="fish") == [f"account\t{summary}"]


class TestContextNames:
    def test_context_names_complete_everywhere_a_context_is_taken(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """``context use|delete``, ``logout`` and the root's ``--context`` offer the saved
        contexts' names from the config file."""
        operator.ok(
            "login",
            "--server",
            demo_server.url,
            "-u",
            ADMIN,
            "--password-stdin",
            "--name",
            "prod",
            stdin=demo_server.admin_password,
        )
        first = demo_server.url.split("://", 1)[1]
        assert complete(operator, "tgfleet context use ") == sorted([first, "prod"])
        assert complete(operator, "tgfleet context use pr") == ["prod"]
        assert complete(operator, "tgfleet context delete pr") == ["prod"]
        assert complete(operator, "tgfleet logout pr") == ["prod"]
        assert complete(operator, "tgfleet --context pr") == ["prod"]

    def test_a_refused_config_file_offers_nothing_and_prints_nothing(self, operator: Cli) -> None:
        """A config file open to others would make a command exit 2 with a message; a TAB
        must not print that message into the command line."""
        operator.config_file.chmod(0o644)
        assert complete(operator, "tgfleet context use ") == []
        assert helper(operator, "account_labels", "fleet_") == []


class TestServerValues:
    def test_account_labels_come_from_the_current_context(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """The labels starting with the typed prefix, as the API lists them: from the
        helper, and through the protocol after `account stop` and `account show`."""
        with demo_server.api() as api:
            listed = api.get("/api/v1/accounts", params={"label": "fleet_001", "limit": 100})
        expected = [item["label"] for item in listed.json()["items"]]
        assert expected == [f"fleet_{n:04d}" for n in range(10, 20)]
        assert helper(operator, "account_labels", "fleet_001") == expected
        assert helper(operator, "account_labels", "nobody_") == []
        assert complete(operator, "tgfleet account stop fleet_001") == expected
        assert complete(operator, "tgfleet account show fleet_0019") == ["fleet_0019"]

    def test_playbook_names_come_from_the_current_context(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """Every playbook's name for an empty word, the matching ones for a prefix."""
        with demo_server.api() as api:
            names = [p["name"] for p in api.get("/api/v1/playbooks").json()["items"]]
        assert len(names) >= 2
        assert helper(operator, "playbook_names", "") == names
        assert helper(operator, "playbook_names", names[0][:4]) == [
            n for n in names if n.startswith(names[0][:4])
        ]

    def test_a_tab_after_playbook_show_and_group_enable_playbook_offers_the_names(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """Through the protocol, as the shell asks: the NAME argument of ``playbook
        show`` and the ``--playbook`` option of ``group enable``; a ``--server`` typed on
        the line wins over the current context, as it would for the command."""
        with demo_server.api() as api:
            names = [p["name"] for p in api.get("/api/v1/playbooks").json()["items"]]
        assert complete(operator, "tgfleet playbook show ") == names
        assert complete(operator, "tgfleet group enable -1001 --playbook ") == names
        nowhere = f"http://127.0.0.1:{free_port()}"
        assert complete(operator, f"tgfleet --server {nowhere} playbook show ") == []

    def test_a_tab_after_account_list_label_offers_the_labels(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        with demo_server.api() as api:
            items = api.get("/api/v1/accounts", params={"label": "fleet_001"}).json()["items"]
        expected = sorted(a["label"] for a in items)
        assert expected
        assert sorted(complete(operator, "tgfleet account list --label fleet_001")) == expected

    def test_the_server_named_by_tgfleet_server_is_asked(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """TGFLEET_SERVER wins over the current context, as for a real command: a server
        that is not there gives nothing, the demo server with its saved token gives labels."""
        nowhere = f"http://127.0.0.1:{free_port()}"
        assert helper(operator, "account_labels", "fleet_", TGFLEET_SERVER=nowhere) == []
        got = helper(operator, "account_labels", "fleet_002", TGFLEET_SERVER=demo_server.url)
        assert got == ["fleet_0020"]


class TestSilentFailures:
    def test_nothing_without_a_server(self, cli: Cli) -> None:
        """Local mode (no context, no --server): nothing to ask, nothing offered."""
        assert helper(cli, "account_labels", "fleet_") == []
        assert helper(cli, "playbook_names", "") == []
        assert helper(cli, "context_names", "") == []

    def test_nothing_with_a_refused_token(self, demo_server: DemoServer, cli: Cli) -> None:
        """A 401 is no completion, not a message."""
        refused = {"TGFLEET_SERVER": demo_server.url, "TGFLEET_TOKEN": "tgf_not-a-token"}
        assert helper(cli, "account_labels", "fleet_", **refused) == []

    def test_a_server_that_never_answers_is_given_up_quickly(self, cli: Cli) -> None:
        """A listening socket that never answers: the TAB returns nothing after the 2 s
        timeout instead of hanging the shell."""
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            url = f"http://127.0.0.1:{silent.getsockname()[1]}"
            started = time.monotonic()
            got = helper(cli, "account_labels", "", TGFLEET_SERVER=url, TGFLEET_TOKEN="tgf_x")
            took = time.monotonic() - started
        assert got == []
        assert took < SILENT_WITHIN, took


class TestScripts:
    @pytest.mark.parametrize(
        ("shell", "marker"),
        [
            ("bash", "complete -o default -F _tgfleet_completion tgfleet"),
            ("zsh", "compdef _tgfleet_completion tgfleet"),
            ("fish", "complete --command tgfleet"),
        ],
    )
    def test_completion_prints_each_shells_script(self, cli: Cli, shell: str, marker: str) -> None:
        """``tgfleet completion SHELL`` prints the script that speaks that shell's protocol,
        the same as typer's ``--show-completion SHELL``."""
        script = cli.ok("completion", shell)
        assert marker in script
        assert f"_TGFLEET_COMPLETE=complete_{shell}" in script
        done = cli.run("--show-completion", shell, _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == script.strip()

    def test_install_completion_adds_the_script_to_bashrc(self, cli: Cli, tmp_path: Path) -> None:
        """``--install-completion bash`` writes the script under $HOME and sources it from
        ~/.bashrc."""
        home = tmp_path / "home"
        home.mkdir()
        done = cli.run(
            "--install-completion",
            "bash",
            HOME=str(home),
            _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1",
        )
        assert done.returncode == 0, done.stderr
        script = home / ".bash_completions" / "tgfleet.sh"
        assert "_TGFLEET_COMPLETE=complete_bash" in script.read_text()
        assert "source '" + str(script) + "'" in (home / ".bashrc").read_text()

    @pytest.mark.skipif(BASH is None, reason="no bash on this machine")
    def test_a_real_bash_completes_with_the_printed_script(
        self, demo_server: DemoServer, operator: Cli
    ) -> None:
        """bash sources ``tgfleet completion bash`` and runs its completion function as a
        TAB would: COMPREPLY holds the verbs, the saved context's name, then the server's
        account labels."""
        script = operator.ok("completion", "bash")
        program = (
            f"{script}\n"
            "COMP_WORDS=(tgfleet co); COMP_CWORD=1\n"
            '_tgfleet_completion tgfleet; echo "${COMPREPLY[*]}"\n'
            "COMP_WORDS=(tgfleet context use ''); COMP_CWORD=3\n"
            '_tgfleet_completion tgfleet; echo "${COMPREPLY[*]}"\n'
            "COMP_WORDS=(tgfleet account restart fleet_001); COMP_CWORD=3\n"
            '_tgfleet_completion tgfleet; echo "${COMPREPLY[*]}"\n'
        )
        path = f"{TGFLEET.parent}:/usr/bin:/bin"
        done = subprocess.run(
            [str(BASH), "--norc", "--noprofile", "-c", program],
            capture_output=True,
            text=True,
            env=operator.env(PATH=path),
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "context completion",
            demo_server.url.split("://", 1)[1],
            " ".join(f"fleet_{n:04d}" for n in range(10, 20)),
        ]
