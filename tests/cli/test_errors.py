"""An error no command expected is one line on stderr and a non-zero exit, not a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.cli._process import tgfleet


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    return {
        **os.environ,
        "TGFLEET_DATA_DIR": str(data),
        "TGFLEET_ENV": "test",
        "COLUMNS": "80",
    }


class TestMissingDatabase:
    def test_missing_postgresql_database_is_one_line(
        self, cli_env: dict[str, str], db_url: str
    ) -> None:
        """A PostgreSQL server that has no such database (typer printed ~700 lines with the
        Settings among the locals): one line naming the problem, exit 1, no traceback."""
        if not db_url.startswith("postgresql"):
            pytest.skip("a missing database is a PostgreSQL condition")
        missing = make_url(db_url).set(database="tgfleet_no_such_database")
        cli_env["TGFLEET_DATABASE_URL"] = missing.render_as_string(hide_password=False)
        cli_env["TGFLEET_JWT_SECRET"] = "planted-" + "j" * 40
        for args in (("user", "list"), ("account", "list"), ("audit", "verify")):
            result = tgfleet(cli_env, *args)
            assert result.returncode == 1, args
            lines = result.stderr.strip().splitlines()
            assert lines == [
                'error: database error: database "tgfleet_no_such_database" does not exist'
            ], (
                args,
                result.stderr[:2000],
            )
            assert "planted-" not in result.stderr + result.stdout

    def test_debug_log_level_shows_the_traceback_without_locals(
        self, cli_env: dict[str, str], db_url: str
    ) -> None:
        """With TGFLEET_LOG_LEVEL=DEBUG the log holds the traceback (for the operator who
        asks), still without a local variable's value, and the last line is the error."""
        if not db_url.startswith("postgresql"):
            pytest.skip("a missing database is a PostgreSQL condition")
        missing = make_url(db_url).set(database="tgfleet_no_such_database")
        cli_env["TGFLEET_DATABASE_URL"] = missing.render_as_string(hide_password=False)
        cli_env["TGFLEET_JWT_SECRET"] = "planted-" + "j" * 40
        cli_env["TGFLEET_LOG_LEVEL"] = "DEBUG"
        result = tgfleet(cli_env, "user", "list")
        assert result.returncode == 1
        assert "cli.unexpected_error" in result.stderr
        assert "Traceback (most recent call last)" in result.stderr
        assert "planted-" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: database error:")

    def test_unreachable_database_is_one_line(self, cli_env: dict[str, str]) -> None:
        """No server listening: one line, exit 1, for the commands that open a session."""
        cli_env["TGFLEET_DATABASE_URL"] = "postgresql+asyncpg://postgres@127.0.0.1:9/none"
        for args in (("user", "list"), ("account", "list")):
            result = tgfleet(cli_env, *args)
            assert result.returncode == 1, args
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr[:2000]
            assert result.stderr.startswith("error:")
