"""The ``tgfleet`` command as a real subprocess against a real database (both backends)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import TEST_AUDIT_KEY
from tgfleet import migrations
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work


class Cli:
    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.env = {
            **os.environ,
            "TGFLEET_DATABASE_URL": db_url,
            "TGFLEET_DATA_DIR": str(data_dir),
            "TGFLEET_ENV": "test",
            # The records this test appends in-process are keyed by the same audit key.
            "TGFLEET_AUDIT_KEY": TEST_AUDIT_KEY,
            "TGFLEET_ARGON2_TIME_COST": "1",
            "TGFLEET_ARGON2_MEMORY_KIB": "1024",
            "TGFLEET_ARGON2_PARALLELISM": "1",
            "COLUMNS": "200",
        }
        self.db_url = db_url

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tgfleet", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )

    async def append_records(self, count: int) -> None:
        """Audit records written in-process (faster than a CLI start per record)."""
        engine = create_engine(self.db_url)
        try:
            async with unit_of_work(create_sessionmaker(engine)) as session:
                for index in range(count):
                    await audit_service.record(
                        session, AuditContext(actor="cli:test"), action="test", target=f"t:{index}"
                    )
        finally:
            await engine.dispose()

    async def sql(self, statement: str) -> None:
        engine = create_engine(self.db_url)
        try:
            async with unit_of_work(create_sessionmaker(engine)) as session:
                await session.execute(text(statement))
        finally:
            await engine.dispose()


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path / "data")


class TestUserCommands:
    def test_create_with_generated_password_list_disable_enable(self, cli: Cli) -> None:
        created = cli("user", "create", "alice", "--role", "admin")
        assert created.returncode == 0, created.stderr
        assert "password (shown once):" in created.stdout
        second = cli(
            "user",
            "create",
            "bob",
            "--role",
            "viewer",
            "--password-stdin",
            stdin="a fine long password\n",
        )
        assert second.returncode == 0, second.stderr
        assert "password" not in second.stdout.replace("--password", "")
        listed = cli("user", "list")
        assert listed.returncode == 0
        assert "alice" in listed.stdout
        assert "bob" in listed.stdout
        disabled = cli("user", "disable", "bob")
        assert disabled.returncode == 0
        assert "disabled user bob" in disabled.stdout
        assert "disabled" in cli("user", "list").stdout
        enabled = cli("user", "enable", "bob")
        assert enabled.returncode == 0, enabled.stderr
        assert "enabled user bob" in enabled.stdout
        assert "disabled" not in cli("user", "list").stdout

    def test_errors_are_specific_and_exit_1(self, cli: Cli) -> None:
        cli("user", "create", "alice", "--role", "admin")
        duplicate = cli("user", "create", "ALICE", "--role", "viewer")
        assert duplicate.returncode == 1
        assert "already exists" in duplicate.stderr
        weak = cli(
            "user", "create", "carl", "--role", "viewer", "--password-stdin", stdin="short\n"
        )
        assert weak.returncode == 1
        assert "at least 12" in weak.stderr
        role = cli("user", "create", "dan", "--role", "wizard")
        assert role.returncode == 1
        assert "no role named 'wizard'" in role.stderr
        last = cli("user", "disable", "alice")
        assert last.returncode == 1
        assert "last enabled admin" in last.stderr
        missing = cli("user", "disable", "nobody")
        assert missing.returncode == 1
        assert "no user named 'nobody'" in missing.stderr
        for result in (duplicate, weak, role, last, missing):
            assert "Traceback" not in result.stderr


class TestAuditCommands:
    def test_verify_ok_then_tampered(self, cli: Cli) -> None:
        cli("user", "create", "alice", "--role", "admin")
        cli("user", "create", "bob", "--role", "viewer")
        cli("user", "disable", "bob")
        ok = cli("audit", "verify")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == (
            "OK 3 records (3 keyed, 0 from before audit keys); MACs checked; no checkpoint file"
        )

    @pytest.mark.parametrize(
        ("statements", "seq"),
        [
            (["UPDATE audit_record SET target = 'user:mallory' WHERE seq = 2"], 2),
            (["DELETE FROM audit_record WHERE seq = 2"], 2),
            (
                [
                    "UPDATE audit_record SET seq = 100 WHERE seq = 1",
                    "UPDATE audit_record SET seq = 1 WHERE seq = 2",
                    "UPDATE audit_record SET seq = 2 WHERE seq = 100",
                ],
                1,
            ),
            (
                [
                    (
                        "INSERT INTO audit_record (seq, at, actor, action, target, result, "
                        "details, prev_hash, hash) SELECT 4, at, actor, action, target, "
                        "result, details, hash, hash FROM audit_record WHERE seq = 3"
                    )
                ],
                4,
            ),
        ],
        ids=["edit", "delete", "reorder", "insert"],
    )
    async def test_verify_names_the_first_bad_seq(
        self, cli: Cli, statements: list[str], seq: int
    ) -> None:
        await cli.append_records(3)
        for statement in statements:
            await cli.sql(statement)
        result = cli("audit", "verify")
        assert result.returncode == 1
        assert f"broken at seq {seq}:" in result.stderr

    def test_export_json_lines(self, cli: Cli, tmp_path: Path) -> None:
        cli("user", "create", "alice", "--role", "admin")
        cli("user", "create", "bob", "--role", "viewer")
        out = cli("audit", "export")
        assert out.returncode == 0, out.stderr
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert [line["seq"] for line in lines] == [1, 2]
        assert lines[0]["action"] == "user.create"
        assert lines[1]["prev_hash"] == lines[0]["hash"]
        target = tmp_path / "audit.jsonl"
        to_file = cli(
            "audit", "export", "--since", "2000-01-01T00:00:00+00:00", "-o", str(target),
            "--reason", "backup check",
        )  # fmt: skip
        assert to_file.returncode == 0
        exported = [json.loads(line) for line in target.read_text().splitlines()]
        # the first export is itself on the record
        assert [line["action"] for line in exported] == [
            "user.create",
            "user.create",
            "audit.export",
        ]
        assert exported[2]["details"]["records"] == 2
        last = json.loads(cli("audit", "export").stdout.splitlines()[-1])
        assert (last["action"], last["details"]["reason"]) == ("audit.export", "backup check")
        assert target.stat().st_mode & 0o777 == 0o600
        none = cli("audit", "export", "--since", "2999-01-01T00:00:00Z")
        assert none.stdout == ""
        bad = cli("audit", "export", "--since", "yesterday")
        assert bad.returncode == 1
        assert "not an ISO 8601 time" in bad.stderr


class TestDbCommands:
    def test_upgrade_is_idempotent_and_current_matches(self, cli: Cli) -> None:
        upgraded = cli("db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        current = cli("db", "current")
        assert current.returncode == 0
        assert f"database: {migrations.head_revision()}" in current.stdout


class TestResetAndConfigErrors:
    def test_reset_password_generated_and_from_stdin(self, cli: Cli) -> None:
        cli("user", "create", "alice", "--role", "admin")
        generated = cli("user", "reset-password", "alice")
        assert generated.returncode == 0, generated.stderr
        assert "password (shown once):" in generated.stdout
        given = cli(
            "user", "reset-password", "alice", "--password-stdin", stdin="another long password\n"
        )
        assert given.returncode == 0
        assert "shown once" not in given.stdout
        weak = cli("user", "reset-password", "alice", "--password-stdin", stdin="alice\n")
        assert weak.returncode == 1
        assert "at least 12" in weak.stderr

    def test_bad_username_from_the_cli(self, cli: Cli) -> None:
        result = cli("user", "create", "bad name!", "--role", "viewer")
        assert result.returncode == 1
        assert "username must be" in result.stderr

    def test_unsafe_data_dir_is_a_clean_error(self, cli: Cli, tmp_path: Path) -> None:
        loose = tmp_path / "loose"
        loose.mkdir()
        loose.chmod(0o755)
        cli.env["TGFLEET_DATA_DIR"] = str(loose)
        for args in (("user", "list"), ("db", "current"), ("audit", "verify")):
            result = cli(*args)
            assert result.returncode == 2
            assert "chmod 700" in result.stderr
            assert "Traceback" not in result.stderr

    def test_short_jwt_secret_is_a_clean_error(self, cli: Cli) -> None:
        cli.env["TGFLEET_JWT_SECRET"] = "short"
        result = cli("user", "create", "alice", "--role", "admin")
        assert result.returncode == 2
        assert "at least 32" in result.stderr
        assert "Traceback" not in result.stderr

    def test_misspelt_variable_is_warned_about(self, cli: Cli) -> None:
        cli.env["TGFLEET_DATABSE_URL"] = "x"
        result = cli("user", "list")
        assert result.returncode == 0
        assert "TGFLEET_DATABSE_URL" in result.stderr

    def test_unreachable_database_is_a_clean_error(self, cli: Cli) -> None:
        cli.env["TGFLEET_DATABASE_URL"] = "postgresql+asyncpg://postgres@127.0.0.1:9/none"
        for args in (("db", "current"), ("db", "upgrade"), ("user", "list"), ("audit", "verify")):
            result = cli(*args)
            assert result.returncode == 1, args
            assert "cannot be reached" in result.stderr
            assert "Traceback" not in result.stderr
