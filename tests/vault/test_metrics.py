"""The vault feeds its Prometheus metrics: imports by format and outcome, decrypts and
exports, key rotation and the keyring's size. Real database (both backends), real services.

Counters are process-wide, so every test reads the samples it cares about before acting
and asserts what it added (`Watch`), never an absolute value; gauges are asserted
right after the call that sets them.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.audit.test_service import TRIGGERS, execute
from tests.conftest import TEST_VAULT_KEY, make_settings
from tests.factories import telethon_file, telethon_string
from tests.prometheus_watch import Series, Watch, outcome_of, plain, value
from tests.vault.test_endpoints import sql
from tests.vault.test_rotation import fill
from tgfleet.audit.exceptions import AuditWriteFailed
from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings
from tgfleet.exceptions import AppError
from tgfleet.kit.db import unit_of_work
from tgfleet.vault import service as vault_service
from tgfleet.vault.archive import Entry
from tgfleet.vault.exceptions import SessionNotFound
from tgfleet.vault.formats import SessionFormat

CONTEXT = AuditContext(actor="cli:test")


def imports(fmt: str, outcome: str) -> Series:
    return ("tgfleet_vault_imports_total", {"format": fmt, "outcome": outcome})


@pytest.fixture
def vault(app: FastAPI) -> vault_service.Vault:
    loaded: vault_service.Vault = app.state.vault
    return loaded


def strings(seeds: range) -> list[Entry]:
    return [Entry(name=f"s{seed}.txt", data=telethon_string(seed).encode()) for seed in seeds]


class TestVaultImports:
    async def test_each_file_counts_once_by_format_and_outcome(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: vault_service.Vault,
        tmp_path: Path,
    ) -> None:
        """Three string sessions and a session file import as ok under their formats; a
        garbage file is rejected as unknown, a copy of an imported key as its format."""
        watch = Watch(
            strings_ok=imports("telethon-string", "ok"),
            file_ok=imports("telethon", "ok"),
            garbage=imports("unknown", "rejected"),
            duplicate=imports("telethon-string", "rejected"),
            failed=imports("telethon-string", "failed"),
        )
        entries = [
            *strings(range(3)),
            Entry(name="acct.session", data=telethon_file(tmp_path, 3).read_bytes()),
            Entry(name="garbage.txt", data=b"not a session"),
            Entry(name="copy.txt", data=telethon_string(1).encode()),
        ]
        results = await vault_service.import_entries(sessionmaker, vault, CONTEXT, entries)
        assert [r.ok for r in results] == [True, True, True, True, False, False]
        assert watch.delta() == {
            "strings_ok": 3,
            "file_ok": 1,
            "garbage": 1,
            "duplicate": 1,
            "failed": 0,
        }

    async def test_chunks_count_every_file_once(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        """Small chunks, and a chunk redone file by file, still count each file once."""
        watch = Watch(ok=imports("telethon-string", "ok"))
        await vault_service.import_entries(
            sessionmaker, vault, CONTEXT, strings(range(10, 17)), chunk_size=3
        )
        assert watch.delta() == {"ok": 7}

    async def test_a_store_that_raises_counts_its_files_as_failed(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        """With audit inserts failing in the database nothing is imported, and every file of
        the chunk counts as failed (not ok, not rejected)."""
        async with sessionmaker() as session:
            dialect = session.get_bind().dialect.name
        for statement in TRIGGERS[dialect]:
            await execute(sessionmaker, statement)
        watch = Watch(
            ok=imports("telethon-string", "ok"),
            failed=imports("telethon-string", "failed"),
            unknown=imports("unknown", "failed"),
        )
        entries = [*strings(range(20, 22)), Entry(name="bad.txt", data=b"nope")]
        with pytest.raises(AuditWriteFailed):
            await vault_service.import_entries(sessionmaker, vault, CONTEXT, entries)
        assert watch.delta() == {"ok": 0, "failed": 2, "unknown": 1}

    async def test_replace_counts_as_an_import(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        (imported,) = await fill(sessionmaker, vault, 1)
        assert imported.account_id is not None
        watch = Watch(ok=imports("telethon-string", "ok"), bad=imports("unknown", "rejected"))
        await vault_service.replace_session(
            sessionmaker, vault, CONTEXT, imported.account_id, strings(range(30, 31))[0]
        )
        with pytest.raises(AppError):
            await vault_service.replace_session(
                sessionmaker, vault, CONTEXT, imported.account_id, Entry("x.txt", b"nope")
            )
        assert watch.delta() == {"ok": 1, "bad": 1}


class TestVaultDecryptAndExport:
    async def test_decrypt_many_counts_each_secret_and_times_the_batch(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        """Four secrets, one of them tampered: three ok, one failed, one observation."""
        results = await fill(sessionmaker, vault, 4)
        ids = [r.account_id for r in results if r.account_id is not None]
        await sql(
            sessionmaker,
            "UPDATE session_secret SET nonce = :n WHERE account_id = :a",
            n=b"\x00" * 12,
            a=ids[0].hex,
        )
        watch = Watch(
            ok=outcome_of("tgfleet_vault_decrypts_total", "ok"),
            failed=outcome_of("tgfleet_vault_decrypts_total", "failed"),
            batches=plain("tgfleet_vault_decrypt_duration_seconds_count"),
        )
        async with unit_of_work(sessionmaker) as session:
            decrypted = await vault_service.decrypt_many(
                session, vault, CONTEXT, ids, purpose="test"
            )
        assert sum(isinstance(v, vault_service.Decrypted) for v in decrypted.values()) == 3
        assert watch.delta() == {"ok": 3, "failed": 1, "batches": 1}

    async def test_a_secret_refused_without_a_try_is_not_a_decrypt(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        """An account with no secret is answered without decrypting: no decrypt counted."""
        watch = Watch(
            ok=outcome_of("tgfleet_vault_decrypts_total", "ok"),
            failed=outcome_of("tgfleet_vault_decrypts_total", "failed"),
        )
        async with unit_of_work(sessionmaker) as session:
            decrypted = await vault_service.decrypt_many(
                session, vault, CONTEXT, [uuid.uuid4()], purpose="test"
            )
        assert all(isinstance(v, SessionNotFound) for v in decrypted.values())
        assert watch.delta() == {"ok": 0, "failed": 0}

    async def test_export_counts_ok_and_failed(
        self, sessionmaker: async_sessionmaker[AsyncSession], vault: vault_service.Vault
    ) -> None:
        (imported,) = await fill(sessionmaker, vault, 1)
        assert imported.account_id is not None
        watch = Watch(
            ok=outcome_of("tgfleet_vault_exports_total", "ok"),
            failed=outcome_of("tgfleet_vault_exports_total", "failed"),
        )
        async with unit_of_work(sessionmaker) as session:
            content = await vault_service.export(
                session,
                vault,
                CONTEXT,
                imported.account_id,
                fmt=SessionFormat.TELETHON_STRING,
                reason="metrics",
            )
        assert content
        with pytest.raises(AppError):
            async with unit_of_work(sessionmaker) as session:
                await vault_service.export(
                    session,
                    vault,
                    CONTEXT,
                    uuid.uuid4(),
                    fmt=SessionFormat.TELETHON_STRING,
                    reason="metrics",
                )
        assert watch.delta() == {"ok": 1, "failed": 1}


class TestVaultKeys:
    async def test_rotation_counts_the_run_and_its_rewrapped_keys(
        self, file_settings: Settings, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A key-file rotation of five secrets: one ok run, five data keys re-wrapped, and
        one KEK loaded at the end (the old one is retired)."""
        vault = await asyncio.to_thread(vault_service.Vault.load, file_settings)
        assert value(plain("tgfleet_vault_keys_loaded")) == 1
        await fill(maker, vault, 5)
        watch = Watch(
            ok=outcome_of("tgfleet_vault_rotations_total", "ok"),
            failed=outcome_of("tgfleet_vault_rotations_total", "failed"),
            rewrapped=plain("tgfleet_vault_rewrapped_secrets_total"),
        )
        report = await vault_service.rotate(maker, vault, CONTEXT, batch_size=2)
        assert report.rewrapped == 5
        assert watch.delta() == {"ok": 1, "failed": 0, "rewrapped": 5}
        assert value(plain("tgfleet_vault_keys_loaded")) == 1

    async def test_rotation_leaving_secrets_behind_is_a_failed_run(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        vault: vault_service.Vault,
        db_url: str,
        tmp_path: Path,
    ) -> None:
        """A process whose keyring lacks the KEK of two secrets re-wraps nothing: the run
        counts as failed (and on PostgreSQL its 18-character final state now fits)."""
        await fill(sessionmaker, vault, 2)
        other_key = base64.b64encode(b"\x07" * 32).decode()
        other = await asyncio.to_thread(
            vault_service.Vault.load,
            make_settings(db_url, tmp_path / "other", vault_key=SecretStr(other_key)),
        )
        watch = Watch(
            ok=outcome_of("tgfleet_vault_rotations_total", "ok"),
            failed=outcome_of("tgfleet_vault_rotations_total", "failed"),
            rewrapped=plain("tgfleet_vault_rewrapped_secrets_total"),
        )
        report = await vault_service.rotate(sessionmaker, other, CONTEXT)
        assert (report.rewrapped, report.failed) == (0, 2)
        assert watch.delta() == {"ok": 0, "failed": 1, "rewrapped": 0}

    async def test_loading_a_keyring_sets_the_number_of_keys(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """An environment key with one previous key is two KEKs loaded."""
        previous = base64.b64encode(b"\x09" * 32).decode()
        settings = make_settings(
            db_url,
            tmp_path / "env",
            vault_key=SecretStr(TEST_VAULT_KEY),
            vault_previous_keys=SecretStr(previous),
        )
        await asyncio.to_thread(vault_service.Vault.load, settings)
        assert value(plain("tgfleet_vault_keys_loaded")) == 2
