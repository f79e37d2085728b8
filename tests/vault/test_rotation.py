"""Key rotation with a key-file keyring: re-wrap, retire, resume after SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from asyncio.subprocess import PIPE
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.conftest import make_settings
from tests.factories import auth_key, telethon_string
from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.vault import service as vault_service
from tgfleet.vault.archive import Entry
from tgfleet.vault.exceptions import RotationInProgress

CONTEXT = AuditContext(actor="cli:test")


async def fill(
    maker: async_sessionmaker[AsyncSession], vault: vault_service.Vault, count: int
) -> list[vault_service.ImportResult]:
    entries = [Entry(name=f"s{i}.txt", data=telethon_string(i).encode()) for i in range(count)]
    results = await vault_service.import_entries(maker, vault, CONTEXT, entries)
    assert all(r.ok for r in results)
    return results


async def decrypt_all(
    maker: async_sessionmaker[AsyncSession],
    vault: vault_service.Vault,
    results: list[vault_service.ImportResult],
) -> None:
    async with unit_of_work(maker) as session:
        for index, result in enumerate(results):
            assert result.account_id is not None
            record = await vault_service.decrypt(
                session, vault, CONTEXT, result.account_id, purpose="test"
            )
            assert record.auth_key == auth_key(index)


async def keys_in_use(maker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    # Read-only: a sample must not queue for the write lock behind the rotation it watches.
    async with unit_of_work(maker, read_only=True) as session:
        rows = await session.execute(
            text("SELECT kek_id, count(*) FROM session_secret GROUP BY kek_id")
        )
        return {str(k): int(v) for k, v in rows.all()}


MID_WAY_SECRETS = 2000


class TestRotate:
    async def test_rotate_rewraps_everything_and_retires_the_old_key(
        self, file_settings: Settings, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        vault = await asyncio.to_thread(vault_service.Vault.load, file_settings)
        old = vault.keyring.active.id
        results = await fill(maker, vault, 25)
        report = await vault_service.rotate(maker, vault, CONTEXT, batch_size=7)
        assert report.rewrapped == 25
        assert report.failed == 0
        assert report.retired == [old]
        assert await keys_in_use(maker) == {report.target_kek_id: 25}
        assert vault.keyring.active.id == report.target_kek_id
        key_text = file_settings.effective_vault_key_file.read_text()
        assert old in key_text  # the id stays, for the record
        await decrypt_all(maker, vault, results)
        async with unit_of_work(maker) as session:
            status = await vault_service.status(session, vault)
        states = {k.id: (k.state, k.secrets) for k in status.keks}
        assert states == {old: ("retired", 0), report.target_kek_id: ("active", 25)}

    async def test_rotation_killed_mid_way_then_rerun(
        self, file_settings: Settings, maker: async_sessionmaker[AsyncSession], db_url: str
    ) -> None:
        """SIGKILL during `tgfleet vault rotate`; the rerun continues to the same key, every
        secret still decrypts, and the old key ends retired."""
        vault = await asyncio.to_thread(vault_service.Vault.load, file_settings)
        old = vault.keyring.active.id
        # Enough one-secret batches that the watcher below sees the rotation mid-way even
        # when the machine is busy (400 were once done between two samples).
        results = await fill(maker, vault, MID_WAY_SECRETS)
        env = {
            **os.environ,
            "TGFLEET_DATABASE_URL": db_url,
            "TGFLEET_DATA_DIR": str(file_settings.data_dir),
            "TGFLEET_ENV": "test",
        }
        env.pop("TGFLEET_VAULT_KEY", None)
        command = ["-m", "tgfleet", "vault", "rotate", "--batch-size", "1"]
        process = await asyncio.create_subprocess_exec(
            sys.executable, *command, env=env, stdout=PIPE, stderr=PIPE
        )
        deadline = time.monotonic() + 60
        split: dict[str, int] = {}
        while time.monotonic() < deadline:
            split = await keys_in_use(maker)
            if len(split) == 2 and 0 < split.get(old, 0) < MID_WAY_SECRETS:
                break
            assert process.returncode is None, await process.communicate()
            await asyncio.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(process.wait(), timeout=10)
        assert len(split) == 2, f"never caught the rotation mid-way: {split}"

        rerun = await asyncio.create_subprocess_exec(
            sys.executable, *command, env=env, stdout=PIPE, stderr=PIPE
        )
        stdout, stderr = await asyncio.wait_for(rerun.communicate(), timeout=120)
        assert rerun.returncode == 0, stderr.decode()
        assert "continued to key" in stdout.decode()
        final = await keys_in_use(maker)
        assert list(final.values()) == [MID_WAY_SECRETS]
        assert old not in final
        vault = await asyncio.to_thread(vault_service.Vault.load, file_settings)
        await decrypt_all(maker, vault, results)
        async with unit_of_work(maker) as session:
            status = await vault_service.status(session, vault)
        retired = [k.id for k in status.keks if k.state == "retired"]
        assert old in retired

    async def test_env_keyring_rotates_to_the_new_key(self, db_url: str, tmp_path: Path) -> None:
        """Env keys: the new key in TGFLEET_VAULT_KEY, the old one in _PREVIOUS_KEYS."""
        import base64

        old_key = base64.b64encode(b"\x01" * 32).decode()
        new_key = base64.b64encode(b"\x02" * 32).decode()
        from pydantic import SecretStr

        before = make_settings(db_url, tmp_path / "data", vault_key=SecretStr(old_key))
        engine = create_engine(db_url)
        maker = create_sessionmaker(engine)
        try:
            vault = await asyncio.to_thread(vault_service.Vault.load, before)
            results = await fill(maker, vault, 5)
            after = make_settings(
                db_url,
                tmp_path / "data",
                vault_key=SecretStr(new_key),
                vault_previous_keys=SecretStr(old_key),
            )
            vault = await asyncio.to_thread(vault_service.Vault.load, after)
            report = await vault_service.rotate(maker, vault, CONTEXT)
            assert report.rewrapped == 5
            only_new = make_settings(db_url, tmp_path / "data", vault_key=SecretStr(new_key))
            vault = await asyncio.to_thread(vault_service.Vault.load, only_new)
            await decrypt_all(maker, vault, results)
        finally:
            await engine.dispose()


class TestStaleKeyring:
    async def test_import_after_another_process_rotated_uses_the_new_key(
        self, file_settings: Settings, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A vault loaded before a rotation elsewhere (a second process) notices the key
        file changed and never wraps a new secret with the retired KEK."""
        stale = await asyncio.to_thread(vault_service.Vault.load, file_settings)
        rotator = await asyncio.to_thread(vault_service.Vault.load, file_settings)
        old = stale.keyring.active.id
        await fill(maker, rotator, 3)
        report = await vault_service.rotate(maker, rotator, CONTEXT)
        assert report.retired == [old]
        entry = Entry(name="late.txt", data=telethon_string(999).encode())
        (result,) = await vault_service.import_entries(maker, stale, CONTEXT, [entry])
        assert result.ok
        assert await keys_in_use(maker) == {report.target_kek_id: 4}


class TestOneAtATime:
    async def test_concurrent_rotations_run_one_and_refuse_the_others(
        self, file_settings: Settings, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Three processes' vaults rotate at once: one runs, the other two raise
        RotationInProgress having changed nothing (one KEK added, not three); every secret
        ends under that one key, decrypts, and no rotation row is left running."""
        vaults = [
            await asyncio.to_thread(vault_service.Vault.load, file_settings) for _ in range(3)
        ]
        old = vaults[0].keyring.active.id
        results = await fill(maker, vaults[0], 40)
        outcomes = await asyncio.gather(
            *(vault_service.rotate(maker, v, CONTEXT, batch_size=3) for v in vaults),
            return_exceptions=True,
        )
        reports = [o for o in outcomes if isinstance(o, vault_service.RotationReport)]
        refused = [o for o in outcomes if isinstance(o, RotationInProgress)]
        assert (len(reports), len(refused)) == (1, 2), outcomes
        (report,) = reports
        assert (report.rewrapped, report.failed, report.retired) == (40, 0, [old])
        assert await keys_in_use(maker) == {report.target_kek_id: 40}
        fresh = await asyncio.to_thread(vault_service.Vault.load, file_settings)
        assert [k.id for k in fresh.keyring.all()] == [old, report.target_kek_id]
        await decrypt_all(maker, fresh, results)
        async with unit_of_work(maker, read_only=True) as session:
            states = (await session.execute(text("SELECT state FROM vault_rotation"))).all()
        assert [row[0] for row in states] == ["done"]
        # The lock is free again: the next rotation runs.
        again = await vault_service.rotate(maker, fresh, CONTEXT, batch_size=50)
        assert again.rewrapped == 40

    async def test_progress_is_reported_from_zero_to_the_total(
        self, file_settings: Settings, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """progress(0, total) first, then after each batch, ending at (total, total)."""
        vault = await asyncio.to_thread(vault_service.Vault.load, file_settings)
        await fill(maker, vault, 10)
        seen: list[tuple[int, int]] = []
        await vault_service.rotate(
            maker, vault, CONTEXT, batch_size=4, progress=lambda d, t: seen.append((d, t))
        )
        assert seen == [(0, 10), (4, 10), (8, 10), (10, 10)]
