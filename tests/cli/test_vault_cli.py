"""`tgfleet vault`, `tgfleet session` and `tgfleet account` as real subprocesses."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest
from telethon.sessions import StringSession

from tests.cli.test_cli import Cli
from tests.factories import auth_key, telethon_file, telethon_string


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path / "data")


def export(
    cli: Cli, account: str, fmt: str, out: Path, reason: str, *more: str
) -> subprocess.CompletedProcess[str]:
    """``tgfleet session export`` of ``account`` in ``fmt`` to ``out``, for ``reason``."""
    return cli(
        "session", "export", account, "--format", fmt, "--out", str(out), "--reason", reason, *more
    )


class TestVaultCommands:
    def test_without_a_key_commands_explain_how_to_get_one(self, cli: Cli) -> None:
        result = cli("vault", "status")
        assert result.returncode == 2
        assert "tgfleet vault init" in result.stderr
        assert "Traceback" not in result.stderr

    def test_init_status_and_refuse_second_init(self, cli: Cli, tmp_path: Path) -> None:
        created = cli("vault", "init")
        assert created.returncode == 0, created.stderr
        key_file = tmp_path / "data" / "vault.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        again = cli("vault", "init")
        assert again.returncode == 1
        assert "exists" in again.stderr
        status = cli("vault", "status")
        assert status.returncode == 0, status.stderr
        assert "active" in status.stdout
        assert "source: file" in status.stdout

    def test_readable_key_file_is_refused_with_the_fix(self, cli: Cli, tmp_path: Path) -> None:
        cli("vault", "init")
        key_file = tmp_path / "data" / "vault.key"
        key_file.chmod(0o644)
        result = cli("vault", "status")
        assert result.returncode == 2
        assert "chmod 600" in result.stderr
        cli.env["TGFLEET_VAULT_ALLOW_READABLE_KEY_FILE"] = "true"
        allowed = cli("vault", "status")
        assert allowed.returncode == 0


class TestSessionCommands:
    def test_import_folder_zip_and_files_then_export(self, cli: Cli, tmp_path: Path) -> None:
        assert cli("vault", "init").returncode == 0
        folder = tmp_path / "in"
        (folder / "nested").mkdir(parents=True)
        telethon_file(folder, 1, name="alpha.session")
        telethon_file(folder / "nested", 2, name="beta.session")
        (folder / "broken.session").write_bytes(b"SQLite format 3\x00garbage")
        archive = tmp_path / "more.zip"
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("gamma.txt", telethon_string(3))
        single = tmp_path / "delta.txt"
        single.write_text(telethon_string(4))

        result = cli("session", "import", str(folder), str(archive), str(single))
        assert result.returncode == 1  # one file failed
        assert "3 imported" not in result.stdout
        assert "4 imported, 1 failed" in result.stdout
        assert "broken.session" in result.stdout

        listed = cli("account", "list")
        for label in ("alpha", "beta", "gamma", "delta"):
            assert label in listed.stdout

        out = tmp_path / "alpha.txt"
        exported = export(cli, "alpha", "telethon-string", out, "migrating host")
        assert exported.returncode == 0, exported.stderr
        assert out.stat().st_mode & 0o777 == 0o600
        session = StringSession(out.read_text())
        assert session.auth_key is not None
        assert session.auth_key.key == auth_key(1)

        refused = export(cli, "alpha", "telethon", out, "again")
        assert refused.returncode == 1
        assert "--force" in refused.stderr
        forced = export(cli, "alpha", "telethon", out, "again", "--force")
        assert forced.returncode == 0
        assert out.read_bytes().startswith(b"SQLite format 3\x00")

        missing = export(cli, "nobody", "telethon", tmp_path / "x", "none")
        assert missing.returncode == 1
        assert "no account with id or label 'nobody'" in missing.stderr

        audit = cli("audit", "export")
        assert '"action":"session.export"' in audit.stdout
        assert '"reason":"migrating host"' in audit.stdout
        assert auth_key(1).hex() not in audit.stdout

    def test_re_import_replaces_one_accounts_session(self, cli: Cli, tmp_path: Path) -> None:
        assert cli("vault", "init").returncode == 0
        first, second = tmp_path / "alpha.txt", tmp_path / "beta.txt"
        first.write_text(telethon_string(1))
        second.write_text(telethon_string(2))
        assert cli("session", "import", str(first), str(second)).returncode == 0

        fresh = tmp_path / "alpha-new.txt"
        fresh.write_text(telethon_string(7))  # the account logged in again: a new key
        result = cli("session", "import", str(fresh), "--account", "alpha")
        assert result.returncode == 0, result.stderr
        assert "version 2" in result.stdout
        taken = cli("session", "import", str(second), "--account", "alpha")
        assert taken.returncode != 0
        assert "already in the vault" in taken.stderr + taken.stdout
        unknown = cli("session", "import", str(fresh), "--account", "nobody")
        assert unknown.returncode != 0
        assert "nobody" in unknown.stderr + unknown.stdout

        out = tmp_path / "exported.txt"
        exported = export(cli, "alpha", "telethon-string", out, "check the re-import")
        assert exported.returncode == 0, exported.stderr
        session = StringSession(out.read_text())
        assert session.auth_key is not None
        assert session.auth_key.key == auth_key(7)

    def test_rotate_from_the_cli(self, cli: Cli, tmp_path: Path) -> None:
        cli("vault", "init")
        single = tmp_path / "one.txt"
        single.write_text(telethon_string(9))
        assert cli("session", "import", str(single)).returncode == 0
        rotated = cli("vault", "rotate")
        assert rotated.returncode == 0, rotated.stderr
        assert "1 re-wrapped" in rotated.stdout
        status = cli("vault", "status")
        assert "retired" in status.stdout

    def test_a_minted_folder_imports_its_sessions_and_skips_the_rest(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        """`session import DIR` on a folder `sandbox mint` wrote: world.yaml (and a README)
        are skipped with a note on stderr, every session is imported, exit 0. A file named
        on the command line is still tried."""
        assert cli("vault", "init").returncode == 0
        folder = tmp_path / "minted"
        minted = cli("sandbox", "mint", "--accounts", "2", "--groups", "1", "--out", str(folder))
        assert minted.returncode == 0, minted.stderr
        (folder / "README.md").write_text("# the sandbox world\n")

        result = cli("session", "import", str(folder))
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert "2 imported, 0 failed" in result.stdout
        assert "world.yaml" not in result.stdout
        skipped = sorted(line for line in result.stderr.splitlines() if line.startswith("skipped"))
        note = "not a session file (a {} file without a SQLite header)"
        assert skipped == [
            f"skipped {folder}/README.md: {note.format('.md')}",
            f"skipped {folder}/world.yaml: {note.format('.yaml')}",
        ]
        listed = cli("account", "list").stdout
        assert "fleet_0001" in listed
        assert "fleet_0002" in listed

        named = cli("session", "import", str(folder / "world.yaml"))
        assert named.returncode == 1
        assert "world.yaml" in named.stdout
        assert "skipped" not in named.stderr

    def test_a_taken_label_says_which_label_was_given_instead(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        """Two files that ask for the label `alpha`: the second account is `alpha-2`, and its
        result line says that `alpha` was taken."""
        assert cli("vault", "init").returncode == 0
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        (tmp_path / "a" / "alpha.txt").write_text(telethon_string(1))
        (tmp_path / "b" / "alpha.txt").write_text(telethon_string(2))
        first = cli("session", "import", str(tmp_path / "a" / "alpha.txt"))
        assert first.returncode == 0, first.stderr
        assert "was taken" not in first.stdout
        second = cli("session", "import", str(tmp_path / "b" / "alpha.txt"))
        assert second.returncode == 0, second.stderr
        line = next(row for row in second.stdout.splitlines() if row.startswith("alpha.txt"))
        assert line.split()[1] == "imported"
        assert line.endswith("alpha-2 ('alpha' was taken)")
