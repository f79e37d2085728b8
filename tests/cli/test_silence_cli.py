"""``tgfleet silence add|list|expire`` as a real subprocess, audited, with clear errors."""

from __future__ import annotations

import re

import pytest

from tests.cli.test_cli import Cli, cli

__all__ = ["cli"]

pytestmark = pytest.mark.timeout(120)


def test_add_list_expire(cli: Cli) -> None:
    added = cli("silence", "add", 'account="fleet_0001"', "--for", "2h", "-c", "new session")
    assert added.returncode == 0, added.stderr
    found = re.search(r"silence ([0-9a-f-]{36}) until", added.stdout)
    assert found, added.stdout
    silence_id = found[1]
    listed = cli("silence", "list")
    assert silence_id in listed.stdout
    assert 'account="fleet_0001"' in listed.stdout
    expired = cli("silence", "expire", silence_id)
    assert expired.returncode == 0, expired.stderr
    assert silence_id not in cli("silence", "list").stdout
    assert silence_id in cli("silence", "list", "--expired").stdout
    audit = cli("audit", "export")
    assert '"silence.create"' in audit.stdout
    assert '"silence.expire"' in audit.stdout


def test_expire_by_id_prefix(cli: Cli) -> None:
    """On the server's host too, a silence is expired by the prefix a table shows; a
    prefix under 6 characters is refused (exit 2)."""
    added = cli("silence", "add", 'account="fleet_0002"', "-c", "prefix")
    silence_id = added.stdout.split()[1]
    short = cli("silence", "expire", silence_id[:5])
    assert short.returncode == 2
    assert "too short" in short.stderr
    expired = cli("silence", "expire", silence_id[:8])
    assert expired.returncode == 0, expired.stderr
    assert expired.stdout == f"silence {silence_id} expired\n"
    assert silence_id not in cli("silence", "list").stdout
    assert silence_id in cli("silence", "list", "--expired").stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["account"], 2, "is not a matcher"),
        (['account="x"', "--for", "soon"], 2, "is not a duration"),
        (['account=~".*"'], 1, "match every alert"),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    cli: Cli, args: list[str], code: int, message: str
) -> None:
    result = cli("silence", "add", *args, "-c", "why")
    assert result.returncode == code
    assert message in result.stderr


def test_expiring_an_unknown_silence_says_so(cli: Cli) -> None:
    result = cli("silence", "expire", "00000000-0000-0000-0000-000000000000")
    assert result.returncode == 1
    assert "no silence" in result.stderr
