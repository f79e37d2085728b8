"""``tgfleet backup``: online SQLite copies under writes, round trips into a new data dir,
key checks that fail closed, damaged files, no key material, and PostgreSQL's pg_dump."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sqlite3
import sys
import tarfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import make_url

from tests.cli.test_cli import Cli
from tests.conftest import TEST_AUDIT_KEY, TEST_VAULT_KEY, Backend, make_settings
from tests.factories import auth_key, telethon_string
from tgfleet import migrations
from tgfleet.app import create_app
from tgfleet.audit.schemas import AuditContext
from tgfleet.backup import archive
from tgfleet.backup import service as backup_service
from tgfleet.backup.exceptions import BackupError, BackupFileError, BackupKeyMissing
from tgfleet.config import Settings
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.models import Account, AuditRecord
from tgfleet.vault import service as vault_service
from tgfleet.vault.archive import Entry
from tgfleet.vault.kek import kek_fingerprint
from tgfleet.vault.keyring import init_key_file

CONTEXT = AuditContext(actor="cli:test")
TEST_KEK_ID = kek_fingerprint(base64.b64decode(TEST_VAULT_KEY))
OTHER_VAULT_KEY = base64.b64encode(bytes(range(100, 132))).decode()
WAIT_SECONDS = 30.0


def sqlite_settings(data_dir: Path, **overrides: object) -> Settings:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return make_settings(f"sqlite+aiosqlite:///{data_dir / 'tgfleet.db'}", data_dir, **overrides)


async def import_sessions(settings: Settings, seeds: list[int]) -> None:
    """Accounts with real Telethon string sessions, imported through the vault."""
    engine = create_engine(settings.effective_database_url)
    try:
        vault = await asyncio.to_thread(vault_service.Vault.load, settings)
        entries = [Entry(f"acct{seed}.txt", telethon_string(seed).encode()) for seed in seeds]
        results = await vault_service.import_entries(
            create_sessionmaker(engine), vault, CONTEXT, entries
        )
        assert all(result.account_id is not None for result in results), results
    finally:
        await engine.dispose()


async def populated(data_dir: Path, **overrides: object) -> Settings:
    settings = sqlite_settings(data_dir, **overrides)
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url)
    await import_sessions(settings, [1, 2])
    return settings


async def audit_rows(url: str, action: str) -> list[AuditRecord]:
    engine = create_engine(url)
    try:
        async with unit_of_work(create_sessionmaker(engine), read_only=True) as session:
            result = await session.execute(select(AuditRecord).where(AuditRecord.action == action))
            return list(result.scalars())
    finally:
        await engine.dispose()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def manifest_of(path: Path) -> dict[str, object]:
    with tarfile.open(path) as tar:
        member = tar.extractfile(archive.MANIFEST)
        assert member is not None
        document: dict[str, object] = json.loads(member.read())
        return document


class TestSqliteBackup:
    async def test_a_backup_taken_while_another_process_writes_is_consistent(
        self, tmp_path: Path
    ) -> None:
        """A writer process commits (row n, total = n) pairs while the backup runs: the copy
        passes integrity_check and holds a gap-free prefix whose total matches its rows."""
        settings = await populated(tmp_path / "live")
        database = backup_service.sqlite_path(settings)
        writer_code = f"""
import sqlite3, sys, time
db = sqlite3.connect({str(database)!r}, timeout=30, isolation_level=None)
db.execute("PRAGMA journal_mode = WAL")
db.execute("CREATE TABLE IF NOT EXISTS probe (n INTEGER PRIMARY KEY, pad TEXT)")
db.execute("CREATE TABLE IF NOT EXISTS probe_total (id INTEGER PRIMARY KEY, total INTEGER)")
db.execute("INSERT OR IGNORE INTO probe_total VALUES (1, 0)")
n = 0
while True:
    n += 1
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO probe VALUES (?, ?)", (n, "x" * 2000))
    db.execute("UPDATE probe_total SET total = ? WHERE id = 1", (n,))
    db.execute("COMMIT")
    time.sleep(0.001)  # a busy app, not a lock hog: other writers (the audit record) get turns
"""
        writer = await asyncio.create_subprocess_exec(sys.executable, "-c", writer_code)
        try:
            committed = await self._wait_for_rows(database, 300)
            output = tmp_path / "live.tgfleet-backup"
            result = await backup_service.create(settings, output, CONTEXT)
            after = await self._wait_for_rows(database, committed + 300)
        finally:
            writer.terminate()
            await asyncio.wait_for(writer.wait(), timeout=10)
        assert writer.returncode is not None
        copy = tmp_path / "copy.db"
        with tarfile.open(output) as tar:
            archive.extract_database(tar, result.manifest, output, copy)
        connection = sqlite3.connect(copy)
        try:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            count, highest = connection.execute("SELECT count(*), max(n) FROM probe").fetchone()
            (total,) = connection.execute("SELECT total FROM probe_total").fetchone()
            accounts = connection.execute("SELECT count(*) FROM account").fetchone()[0]
        finally:
            connection.close()
        assert count == highest == total  # a snapshot: every committed pair, no torn one
        assert committed <= count < after  # rows committed before the backup are in it
        assert accounts == 2
        assert output.stat().st_mode & 0o777 == 0o600

    @staticmethod
    async def _wait_for_rows(database: Path, at_least: int) -> int:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            connection = sqlite3.connect(database, timeout=30)
            try:
                row = connection.execute("SELECT max(n) FROM probe").fetchone()
            except sqlite3.OperationalError:  # the writer has not created its table yet
                row = (None,)
            finally:
                connection.close()
            if row[0] is not None and row[0] >= at_least:
                return int(row[0])
            await asyncio.sleep(0.05)
        pytest.fail(f"the writer did not reach {at_least} rows in {WAIT_SECONDS} s")

    async def test_round_trip_into_a_new_data_dir_starts_and_decrypts(self, tmp_path: Path) -> None:
        """Backup, restore into an empty data dir with the same key: the app becomes ready,
        every session decrypts to its auth key, the restore is audited there, the backup in
        the source."""
        source = await populated(tmp_path / "source")
        output = tmp_path / "b.tgfleet-backup"
        await backup_service.create(source, output, CONTEXT)
        target = sqlite_settings(tmp_path / "target")
        restored = await backup_service.restore(target, output, CONTEXT)
        assert restored.database == backup_service.sqlite_path(target)
        assert restored.migrated_to == migrations.head_revision()
        assert listing(target.data_dir) == ["tgfleet.db"]

        app = create_app(target)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            vault = app.state.components.vault
            async with unit_of_work(app.state.sessionmaker) as session:
                ids = list((await session.execute(select(Account.id, Account.label))).all())
                decrypted = await vault_service.decrypt_many(
                    session, vault, CONTEXT, [i for i, _ in ids], purpose="run"
                )
        by_label = {label: decrypted[i] for i, label in ids}
        assert {label: r.record.auth_key for label, r in by_label.items()} == {  # type: ignore[union-attr]
            "acct1": auth_key(1),
            "acct2": auth_key(2),
        }
        (restore_record,) = await audit_rows(target.effective_database_url, "backup.restore")
        assert restore_record.details is not None
        assert restore_record.details["vault_key_ids"] == [TEST_KEK_ID]
        (create_record,) = await audit_rows(source.effective_database_url, "backup.create")
        assert create_record.target == f"backup:{output.name}"

    async def test_restore_without_the_right_key_fails_naming_it_and_writes_nothing(
        self, tmp_path: Path
    ) -> None:
        """A data dir whose vault key is another one: the restore fails naming the key id
        the backup needs, and leaves the data dir as it was (no database, no temp file)."""
        source = await populated(tmp_path / "source")
        output = tmp_path / "b.tgfleet-backup"
        await backup_service.create(source, output, CONTEXT)
        target = sqlite_settings(tmp_path / "target", vault_key=SecretStr(OTHER_VAULT_KEY))
        before = listing(target.data_dir)
        with pytest.raises(BackupKeyMissing) as caught:
            await backup_service.restore(target, output, CONTEXT)
        assert TEST_KEK_ID in caught.value.message
        assert "nothing was restored" in caught.value.message
        assert listing(target.data_dir) == before
        verification = await backup_service.verify(target, output)  # the drill's dry run
        assert [TEST_KEK_ID in problem for problem in verification.problems] == [True]

    async def test_restore_without_the_audit_key_fails_naming_it(self, tmp_path: Path) -> None:
        """The vault key is right but the audit key is another: the records it keyed could
        not be verified after the restore, so it is refused naming the audit key id."""
        source = await populated(tmp_path / "source")
        output = tmp_path / "b.tgfleet-backup"
        result = await backup_service.create(source, output, CONTEXT)
        (audit_key_id,) = [use.id for use in result.manifest.audit_keys]
        target = sqlite_settings(tmp_path / "target", audit_key=SecretStr(OTHER_VAULT_KEY))
        with pytest.raises(BackupKeyMissing, match=f"audit key {audit_key_id}"):
            await backup_service.restore(target, output, CONTEXT)
        assert listing(target.data_dir) == []

    async def test_a_passphrase_without_its_salt_is_reported_and_no_salt_is_made(
        self, tmp_path: Path
    ) -> None:
        """Passphrase mode: a restore where the salt file was not copied fails saying so,
        and does not create a new salt (which would derive another key for good)."""
        source = await populated(
            tmp_path / "source", vault_key=None, vault_passphrase=SecretStr("correct horse")
        )
        output = tmp_path / "b.tgfleet-backup"
        await backup_service.create(source, output, CONTEXT)
        target = sqlite_settings(
            tmp_path / "target", vault_key=None, vault_passphrase=SecretStr("correct horse")
        )
        with pytest.raises(BackupKeyMissing, match=r"vault salt file .* is missing"):
            await backup_service.restore(target, output, CONTEXT)
        assert listing(target.data_dir) == []
        (target.data_dir / "vault.salt").write_bytes(source.vault_salt_file.read_bytes())
        await backup_service.restore(target, output, CONTEXT)

    async def test_an_existing_database_is_refused_without_force_and_kept_with_it(
        self, tmp_path: Path
    ) -> None:
        """Restoring over a database says what to stop; --force keeps the old one aside."""
        source = await populated(tmp_path / "source")
        output = tmp_path / "b.tgfleet-backup"
        await backup_service.create(source, output, CONTEXT)
        with pytest.raises(BackupError) as caught:
            await backup_service.restore(source, output, CONTEXT)
        assert "stop every tgfleet process" in caught.value.message
        assert "--force" in caught.value.message
        result = await backup_service.restore(source, output, CONTEXT, force=True)
        assert result.replaced is not None
        assert result.replaced.exists()
        assert result.replaced.name.startswith("tgfleet.db.replaced-")

    @pytest.mark.parametrize("damage", ["truncated", "flipped", "not-a-backup", "manifest-only"])
    async def test_a_damaged_backup_is_refused_clearly(self, tmp_path: Path, damage: str) -> None:
        """Truncation, a changed byte in the database, another file, a lost database member:
        verify and restore refuse with what is wrong, and restore writes nothing."""
        source = await populated(tmp_path / "source")
        output = tmp_path / "b.tgfleet-backup"
        result = await backup_service.create(source, output, CONTEXT)
        raw = bytearray(output.read_bytes())
        if damage == "truncated":
            raw = raw[: len(raw) // 2]
        elif damage == "flipped":
            raw[len(raw) // 2] ^= 0xFF
        elif damage == "not-a-backup":
            raw = bytearray(b"SQLite format 3\x00" + bytes(4096))
        else:
            with tarfile.open(output, "w") as tar:
                content = result.manifest.to_json()
                info = tarfile.TarInfo(archive.MANIFEST)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            raw = bytearray(output.read_bytes())
        output.write_bytes(bytes(raw))
        expected = "not a tgfleet backup" if damage == "not-a-backup" else "truncated"
        with pytest.raises(BackupFileError, match=expected):
            await backup_service.verify(source, output)
        target = sqlite_settings(tmp_path / "target")
        with pytest.raises(BackupFileError, match=expected):
            await backup_service.restore(target, output, CONTEXT)
        assert listing(target.data_dir) == []

    async def test_no_key_material_in_the_backup_unless_asked(self, tmp_path: Path) -> None:
        """The manifest names key ids and where the keys live; the bytes of the vault key
        and the audit key (raw or base64) are nowhere in the file. --include-keys puts the
        key file in, and a restore into an empty dir can install it."""
        settings = sqlite_settings(tmp_path / "source", vault_key=None)
        init_key_file(settings.effective_vault_key_file)
        await asyncio.to_thread(migrations.upgrade, settings.effective_database_url)
        await import_sessions(settings, [1])
        key_text = json.loads(settings.effective_vault_key_file.read_text())["keys"][0]["key"]
        secrets = [
            base64.b64decode(key_text),
            key_text.encode(),
            base64.b64decode(TEST_AUDIT_KEY),
            TEST_AUDIT_KEY.encode(),
        ]
        output = tmp_path / "plain.tgfleet-backup"
        result = await backup_service.create(settings, output, CONTEXT)
        content = output.read_bytes()
        assert not [s for s in secrets if s in content]
        manifest = manifest_of(output)
        assert manifest["includes_keys"] is False
        assert manifest["vault_keys"] == [{"id": kek_fingerprint(secrets[0]), "records": 1}]
        assert f"vault: key file {settings.effective_vault_key_file}" in result.manifest.key_sources
        (create_record,) = await audit_rows(settings.effective_database_url, "backup.create")
        assert not [s for s in secrets if s in json.dumps(create_record.details).encode()]

        with_keys = tmp_path / "keys.tgfleet-backup"
        await backup_service.create(settings, with_keys, CONTEXT, include_keys=True)
        assert secrets[1] in with_keys.read_bytes()
        target = sqlite_settings(tmp_path / "target", vault_key=None)
        restored = await backup_service.restore(target, with_keys, CONTEXT, install_keys=True)
        assert restored.installed_keys == [target.effective_vault_key_file]
        assert target.effective_vault_key_file.stat().st_mode & 0o777 == 0o600
        vault, _ = await backup_service.check_keys(target, target.effective_database_url)
        assert [(c.key_id, c.problem) for c in vault] == [(kek_fingerprint(secrets[0]), None)]

    async def test_schema_newer_than_the_code_is_refused_older_is_migrated(
        self, tmp_path: Path
    ) -> None:
        """A backup at a revision this code does not know is refused naming it; one at an
        older revision is restored and migrated to the head."""
        old = sqlite_settings(tmp_path / "old")
        await asyncio.to_thread(
            migrations.upgrade, old.effective_database_url, "0011_traffic_minute"
        )
        old_backup = tmp_path / "old.tgfleet-backup"
        await backup_service.create(old, old_backup, CONTEXT)
        target = sqlite_settings(tmp_path / "target")
        restored = await backup_service.restore(target, old_backup, CONTEXT)
        assert (restored.migrated_from, restored.migrated_to) == (
            "0011_traffic_minute",
            migrations.head_revision(),
        )

        connection = sqlite3.connect(backup_service.sqlite_path(old))
        with connection:
            connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
        connection.close()
        future_backup = tmp_path / "future.tgfleet-backup"
        await backup_service.create(old, future_backup, CONTEXT)
        newer = sqlite_settings(tmp_path / "newer")
        with pytest.raises(BackupError, match=r"9999_from_the_future.*newer than this tgfleet"):
            await backup_service.restore(newer, future_backup, CONTEXT)
        assert listing(newer.data_dir) == []


class TestBackupCommand:
    def test_create_verify_and_restore_through_the_cli(self, tmp_path: Path) -> None:
        """The commands' exit statuses and what they tell the operator: the key ids and
        key files to keep, a clear refusal without the key, a restore with it."""
        source = Cli(f"sqlite+aiosqlite:///{tmp_path / 'src' / 'tgfleet.db'}", tmp_path / "src")
        source.env["TGFLEET_VAULT_KEY"] = TEST_VAULT_KEY
        asyncio.run(populated(tmp_path / "src"))
        output = tmp_path / "cli.tgfleet-backup"
        created = source("backup", "create", str(output))
        assert created.returncode == 0, created.stderr
        assert f"vault key ids it needs: {TEST_KEK_ID} (2)" in created.stdout
        assert "vault: TGFLEET_VAULT_KEY (environment)" in created.stdout

        target = Cli(f"sqlite+aiosqlite:///{tmp_path / 'dst' / 'tgfleet.db'}", tmp_path / "dst")
        target.env["TGFLEET_VAULT_KEY"] = OTHER_VAULT_KEY
        refused = target("backup", "restore", str(output))
        assert refused.returncode == 1
        assert TEST_KEK_ID in refused.stderr
        assert "Traceback" not in refused.stderr
        assert not (tmp_path / "dst" / "tgfleet.db").exists()

        target.env["TGFLEET_VAULT_KEY"] = TEST_VAULT_KEY
        restored = target("backup", "restore", str(output))
        assert restored.returncode == 0, restored.stderr
        checked = target("backup", "check-keys")
        assert checked.returncode == 0, checked.stderr
        assert f"vault key {TEST_KEK_ID}: 2 record(s), ok" in checked.stdout


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
class TestPostgresBackup:
    async def test_pg_dump_missing_or_too_old_is_a_clear_error(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """No pg_dump: an error that says what to install; a pg_dump older than the server:
        refused naming both versions. No file is left behind."""
        settings = make_settings(db_url, tmp_path / "data")
        output = tmp_path / "pg.tgfleet-backup"
        with pytest.raises(BackupError, match=r"not found.*postgresql-client"):
            await backup_service.create(settings, output, CONTEXT, pg_dump="/nonexistent/pg_dump")
        old = tmp_path / "pg_dump"
        old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
        old.chmod(0o700)
        with pytest.raises(BackupError, match="PostgreSQL 9, the server is"):
            await backup_service.create(settings, output, CONTEXT, pg_dump=str(old))
        assert listing(tmp_path) == ["pg_dump"]

    async def test_pg_dump_backup_restores_with_pg_restore_and_the_keys_check(
        self, db_url: str, backend: Backend, tmp_path: Path
    ) -> None:
        """pg_dump runs with the password in its environment only; the backup verifies; the
        documented pg_restore into an empty database gives back the sessions, which
        check-keys opens with the key (and names the key id without it)."""
        settings = make_settings(db_url, tmp_path / "data")
        (tmp_path / "data").mkdir(mode=0o700)
        await import_sessions(settings, [1, 2])
        output = tmp_path / "pg.tgfleet-backup"
        result = await backup_service.create(settings, output, CONTEXT)
        assert result.manifest.database_member == archive.PGDUMP_MEMBER
        assert [(u.id, u.records) for u in result.manifest.vault_keys] == [(TEST_KEK_ID, 2)]
        verified = await backup_service.verify(settings, output)
        assert verified.problems == []
        cli = Cli(db_url, tmp_path / "data")
        cli.env["TGFLEET_VAULT_KEY"] = TEST_VAULT_KEY
        steps = await asyncio.to_thread(cli, "backup", "restore", str(output))
        assert steps.returncode == 0, steps.stderr
        assert f"vault key {TEST_KEK_ID}: 2 record(s), ok" in steps.stdout
        assert "pg_restore --no-owner --single-transaction" in steps.stdout

        assert backend.admin_dsn is not None
        empty = f"tgfleet_restore_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(backend.admin_dsn, timeout=10)
        await admin.execute(f'CREATE DATABASE "{empty}"')
        try:
            restored_url = (
                make_url(db_url).set(database=empty).render_as_string(hide_password=False)
            )
            with tarfile.open(output) as tar:
                dump = tar.extractfile(archive.PGDUMP_MEMBER)
                assert dump is not None
                restore = await asyncio.create_subprocess_exec(
                    "/usr/bin/pg_restore",
                    "--no-owner",
                    "--single-transaction",
                    "--exit-on-error",
                    f"--dbname={empty}",
                    stdin=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env={**os.environ, **backup_service.pg_environment(restored_url)},
                )
                _, errors = await asyncio.wait_for(restore.communicate(dump.read()), timeout=60)
            assert restore.returncode == 0, errors
            restored = make_settings(restored_url, tmp_path / "data")
            vault, audit = await backup_service.check_keys(restored, restored_url)
            assert [(c.key_id, c.records, c.problem) for c in vault] == [(TEST_KEK_ID, 2, None)]
            assert all(c.problem is None for c in audit)
            wrong = make_settings(
                restored_url, tmp_path / "data", vault_key=SecretStr(OTHER_VAULT_KEY)
            )
            vault, _ = await backup_service.check_keys(wrong, restored_url)
            assert vault[0].problem is not None
            assert TEST_KEK_ID in vault[0].problem
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{empty}" WITH (FORCE)')
            await admin.close()
        with tarfile.open(output) as tar:
            member = tar.getmember(archive.PGDUMP_MEMBER)
        damaged = bytearray(output.read_bytes())
        damaged[member.offset_data + member.size // 2] ^= 0xFF
        output.write_bytes(bytes(damaged))
        with pytest.raises(BackupFileError, match="damaged or truncated"):
            await backup_service.verify(settings, output)
