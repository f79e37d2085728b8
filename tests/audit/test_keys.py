"""The keyed audit chain: every record carries a MAC under an audit key held outside the
database, so rewriting the log with the database alone is found; audit keys rotate; records
written before the chain was keyed still verify; the migration reverses. Both databases."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.audit.attack import append_exports, relabel_exports
from tests.conftest import make_settings
from tgfleet import migrations
from tgfleet.audit import keys as audit_keys
from tgfleet.audit import service as audit_service
from tgfleet.audit.chain import GENESIS_HASH, ChainedFields, chain_hash
from tgfleet.audit.exceptions import AuditKeyError, AuditWriteFailed
from tgfleet.audit.keys import AuditKey, AuditKeyring
from tgfleet.audit.schemas import AuditContext, AuditVerifyRead
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.kit.model import TZDateTime
from tgfleet.models import AuditRecord

CONTEXT = AuditContext(actor="cli:test")


async def verify(
    maker: async_sessionmaker[AsyncSession], keyring: AuditKeyring | None
) -> AuditVerifyRead:
    async with unit_of_work(maker, read_only=True) as session:
        return await audit_service.verify(session, keyring=keyring)


async def append(maker: async_sessionmaker[AsyncSession], count: int) -> None:
    async with unit_of_work(maker) as session:
        for index in range(count):
            await audit_service.record(session, CONTEXT, action="test.event", target=f"t:{index}")


def ring(*keys: AuditKey) -> AuditKeyring:
    return AuditKeyring(source="env", active=keys[0], keys=keys)


class TestKeyedChain:
    async def test_every_record_carries_the_active_key_and_its_mac(
        self, maker: async_sessionmaker[AsyncSession], audit_keyring: AuditKeyring
    ) -> None:
        """A record names the active audit key and holds the HMAC of its hash under it."""
        await append(maker, 3)
        async with maker() as session:
            rows = (await session.execute(text("SELECT hash, key_id, mac FROM audit_record"))).all()
        key = audit_keyring.active
        assert [(row.key_id, row.mac) for row in rows] == [
            (key.id, key.record_mac(row.hash)) for row in rows
        ]
        result = await verify(maker, audit_keyring)
        assert (result.ok, result.count, result.keyed, result.macs_checked) == (True, 3, 3, True)

    async def test_the_relabel_attack_is_found(
        self, maker: async_sessionmaker[AsyncSession], audit_keyring: AuditKeyring
    ) -> None:
        """Issue 14: exports relabelled as imports by ``cli:nobody`` with every public hash
        and the head recomputed passed verification; the MACs now name the first one."""
        await append(maker, 2)
        await append_exports(maker, 40)
        before = await verify(maker, audit_keyring)
        assert before.ok, before.reason
        first = await relabel_exports(maker, strip_macs=False)
        assert first == 3
        result = await verify(maker, audit_keyring)
        assert (result.ok, result.first_bad_seq) == (False, 3)
        assert result.reason == (
            "the MAC does not match: the record was rewritten without the audit key"
        )

    async def test_stripping_the_macs_of_a_tail_is_found(
        self, maker: async_sessionmaker[AsyncSession], audit_keyring: AuditKeyring
    ) -> None:
        """Records made to look unkeyed after keyed ones are refused: unkeyed records may
        only precede the keyed ones."""
        await append(maker, 3)
        await append_exports(maker, 5)
        async with unit_of_work(maker) as session:
            await session.execute(
                text("UPDATE audit_record SET mac = NULL, key_id = NULL WHERE seq > 5")
            )
        result = await verify(maker, audit_keyring)
        assert (result.ok, result.first_bad_seq) == (False, 6)
        assert "has no MAC but follows keyed records" in (result.reason or "")

    async def test_a_record_keyed_by_an_unknown_key_is_refused(
        self, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """Verifying with keys that do not include a record's key fails on that record and
        says how to load it."""
        await append(maker, 2)
        other = ring(AuditKey.generate())
        result = await verify(maker, other)
        assert (result.ok, result.first_bad_seq) == (False, 1)
        assert "which is not loaded" in (result.reason or "")
        assert "TGFLEET_AUDIT_PREVIOUS_KEYS" in (result.reason or "")

    async def test_without_a_key_the_hashes_still_verify(
        self, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A verifier without the key checks hashes and links and says the MACs were not."""
        await append(maker, 4)
        result = await verify(maker, None)
        assert (result.ok, result.count, result.keyed, result.macs_checked) == (True, 4, 4, False)

    async def test_no_key_configured_fails_closed(
        self, maker: async_sessionmaker[AsyncSession]
    ) -> None:
        """A process with no audit key writes nothing: the change is refused (503)."""
        audit_keys.install(None)
        with pytest.raises(AuditWriteFailed):
            await append(maker, 1)
        async with maker() as session:
            count = (await session.execute(text("SELECT count(*) FROM audit_record"))).scalar()
        assert count == 0


class TestKeySources:
    def test_the_key_file_is_created_private_on_first_use(self, tmp_path: Path) -> None:
        """Without TGFLEET_AUDIT_KEY the key file is created 0600 with one key; loading
        again reads the same key; it never lands in the database."""
        settings = make_settings("sqlite://", tmp_path, audit_key=None)
        first = audit_keys.load(settings)
        path = settings.effective_audit_key_file
        assert path.stat().st_mode & 0o777 == 0o600
        document = json.loads(path.read_text())
        assert document["active"] == first.active.id
        assert audit_keys.load(settings).active.id == first.active.id

    def test_a_readable_key_file_is_refused(self, tmp_path: Path) -> None:
        """A key file group or others can read is refused, saying how to fix it."""
        settings = make_settings("sqlite://", tmp_path, audit_key=None)
        audit_keys.load(settings)
        settings.effective_audit_key_file.chmod(0o644)
        with pytest.raises(AuditKeyError, match="chmod 600"):
            audit_keys.load(settings)

    def test_an_edited_key_file_is_refused(self, tmp_path: Path) -> None:
        """A key whose id does not match its material is refused."""
        settings = make_settings("sqlite://", tmp_path, audit_key=None)
        audit_keys.load(settings)
        path = settings.effective_audit_key_file
        document = json.loads(path.read_text())
        document["keys"][0]["key"] = base64.b64encode(b"x" * 32).decode()
        path.write_text(json.dumps(document))
        with pytest.raises(AuditKeyError, match="id does not match its key"):
            audit_keys.load(settings)

    def test_a_short_env_key_is_refused_without_echoing_it(self, tmp_path: Path) -> None:
        """TGFLEET_AUDIT_KEY must be 32 bytes of base64; the message never shows it."""
        secret = base64.b64encode(b"s" * 16).decode()
        settings = make_settings("sqlite://", tmp_path, audit_key=SecretStr(secret))
        with pytest.raises(AuditKeyError) as caught:
            audit_keys.load(settings)
        assert "TGFLEET_AUDIT_KEY decodes to 16 bytes; an audit key is exactly 32 bytes" in (
            caught.value.message
        )
        assert secret not in caught.value.message


class TestRotation:
    async def test_rotating_the_key_file_keeps_old_records_verifiable(
        self, maker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        """After ``add_key`` new records carry the new key id, old ones keep theirs, and
        verification uses each record's own key; without the old key the first old record
        is named."""
        settings = make_settings("sqlite://", tmp_path, audit_key=None)
        audit_keys.configure(settings)
        await append(maker, 3)
        old = audit_keys.load(settings).active
        new = audit_keys.add_key(settings.effective_audit_key_file)
        audit_keys.configure(settings)
        await append(maker, 2)
        async with maker() as session:
            ids = (
                await session.execute(text("SELECT key_id FROM audit_record ORDER BY seq"))
            ).scalars()
            assert list(ids) == [old.id] * 3 + [new.id] * 2
        rotated = audit_keys.load(settings)
        assert rotated.active.id == new.id
        result = await verify(maker, rotated)
        assert (result.ok, result.keyed) == (True, 5), result.reason
        only_new = await verify(maker, ring(new))
        assert (only_new.ok, only_new.first_bad_seq) == (False, 1)

    async def test_running_processes_pick_up_a_rotated_key_file(
        self,
        maker: async_sessionmaker[AsyncSession],
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A process keeps looking at its key file: after ``add_key`` (what ``tgfleet
        audit rotate-key`` does in another process) its next records use the new key,
        without a restart."""
        monkeypatch.setattr(audit_keys, "RELOAD_CHECK_SECONDS", 0.0)
        settings = make_settings("sqlite://", tmp_path, audit_key=None)
        audit_keys.configure(settings)
        await append(maker, 1)
        new = await asyncio.to_thread(audit_keys.add_key, settings.effective_audit_key_file)
        await append(maker, 1)
        async with maker() as session:
            ids = (
                await session.execute(text("SELECT key_id FROM audit_record ORDER BY seq"))
            ).scalars()
            old_id, new_id = list(ids)
        assert old_id != new_id
        assert new_id == new.id
        assert (await verify(maker, audit_keys.load(settings))).ok

    async def test_env_rotation_with_previous_keys(
        self, maker: async_sessionmaker[AsyncSession], tmp_path: Path
    ) -> None:
        """Environment keys rotate as the vault's: the new key in TGFLEET_AUDIT_KEY, the old
        one in TGFLEET_AUDIT_PREVIOUS_KEYS, which verifies but keys nothing new."""
        old_secret = base64.b64encode(os.urandom(32)).decode()
        new_secret = base64.b64encode(os.urandom(32)).decode()
        before = make_settings("sqlite://", tmp_path, audit_key=SecretStr(old_secret))
        audit_keys.configure(before)
        await append(maker, 2)
        after = make_settings(
            "sqlite://",
            tmp_path,
            audit_key=SecretStr(new_secret),
            audit_previous_keys=SecretStr(f"{old_secret},"),
        )
        audit_keys.configure(after)
        await append(maker, 2)
        keyring = audit_keys.load(after)
        result = await verify(maker, keyring)
        assert (result.ok, result.keyed) == (True, 4), result.reason
        dropped = audit_keys.load(
            make_settings("sqlite://", tmp_path, audit_key=SecretStr(new_secret))
        )
        assert (await verify(maker, dropped)).first_bad_seq == 1


APPENDER = """
import asyncio, sys
from tgfleet.audit import keys, service
from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work

async def main() -> None:
    settings = Settings()
    keys.configure(settings)
    engine = create_engine(settings.effective_database_url)
    maker = create_sessionmaker(engine)
    for index in range(int(sys.argv[1])):
        async with unit_of_work(maker) as session:
            context = AuditContext(actor=sys.argv[2])
            await service.record(session, context, action="t", target=str(index))
    await engine.dispose()

asyncio.run(main())
"""


class TestConcurrentProcesses:
    async def test_three_processes_append_one_keyed_chain(
        self, maker: async_sessionmaker[AsyncSession], db_url: str, tmp_path: Path
    ) -> None:
        """Three processes started together share one key file (created by whichever is
        first) and append one linear keyed chain; a second round of fresh processes (a
        restart) continues it with the same key."""
        data_dir = tmp_path / "data"
        data_dir.mkdir(mode=0o700)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TGFLEET_")}
        env |= {
            "TGFLEET_DATABASE_URL": db_url,
            "TGFLEET_DATA_DIR": str(data_dir),
            "TGFLEET_ENV": "test",
        }

        async def run_round(tag: str) -> None:
            processes = [
                await asyncio.create_subprocess_exec(
                    sys.executable, "-c", APPENDER, "20", f"proc:{tag}{number}", env=env
                )
                for number in range(3)
            ]
            codes = await asyncio.wait_for(
                asyncio.gather(*(process.wait() for process in processes)), timeout=120
            )
            assert codes == [0, 0, 0]

        await run_round("a")
        await run_round("b")
        settings = make_settings(db_url, data_dir, audit_key=None)
        keyring = audit_keys.load(settings, create=False)
        assert len(keyring.ids()) == 1
        result = await verify(maker, keyring)
        assert (result.ok, result.count, result.keyed) == (True, 120, 120), result.reason


class TestMigration:
    async def test_unkeyed_records_survive_upgrade_and_downgrade(self, db_url: str) -> None:
        """Records written before 0009 (no key id, no MAC) still verify after the upgrade
        and keyed ones follow them; downgrading keeps the public chain valid; upgrading
        again verifies (the dropped MACs leave every record unkeyed)."""
        await asyncio.to_thread(migrations.downgrade, db_url, "0008_user_revocation")
        engine = create_engine(db_url)
        maker = create_sessionmaker(engine)
        try:
            last = await _write_legacy(maker, 4)
            await asyncio.to_thread(migrations.upgrade, db_url, "head")
            keyring = audit_keys.installed()
            result = await verify(maker, keyring)
            assert (result.ok, result.count, result.unkeyed) == (True, 4, 4), result.reason
            await append(maker, 3)
            async with maker() as session:
                row = await session.get(AuditRecord, 5)
                assert row is not None
                assert row.prev_hash == last
            result = await verify(maker, keyring)
            assert (result.ok, result.unkeyed, result.keyed) == (True, 4, 3), result.reason
            await asyncio.to_thread(migrations.downgrade, db_url, "0008_user_revocation")
            assert await _public_chain_valid(maker) == 7
            await asyncio.to_thread(migrations.upgrade, db_url, "head")
            result = await verify(maker, keyring)
            assert (result.ok, result.unkeyed) == (True, 7), result.reason
        finally:
            await engine.dispose()


#: audit_record as release 0008 had it (the model has the new columns).
LEGACY_RECORD = sa.table(
    "audit_record",
    sa.column("seq", sa.BigInteger()),
    sa.column("at", TZDateTime()),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target", sa.String()),
    sa.column("result", sa.String()),
    sa.column("ip", sa.String()),
    sa.column("request_id", sa.String()),
    sa.column("details", sa.JSON()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


async def _write_legacy(maker: async_sessionmaker[AsyncSession], count: int) -> str:
    """Records as release 0008 wrote them: public hashes, no key id, no MAC."""
    prev = GENESIS_HASH
    async with unit_of_work(maker) as session:
        for seq in range(1, count + 1):
            fields = ChainedFields(
                seq=seq,
                at=datetime(2026, 1, 1, 0, 0, seq, tzinfo=UTC),
                actor="cli:old",
                action="test.old",
                target=f"t:{seq}",
                result="success",
                ip=None,
                request_id=None,
                details={"n": seq},
            )
            hash_ = chain_hash(prev, fields)
            values = {name: getattr(fields, name) for name in ChainedFields.__slots__}
            await session.execute(
                sa.insert(LEGACY_RECORD).values(**values, prev_hash=prev, hash=hash_)
            )
            prev = hash_
        await session.execute(
            text("UPDATE audit_chain_head SET seq = :seq, hash = :hash WHERE id = 1"),
            {"seq": count, "hash": prev},
        )
    return prev


async def _public_chain_valid(maker: async_sessionmaker[AsyncSession]) -> int:
    """Recompute the public chain over the rows, as release 0008 verifies it."""
    async with maker() as session:
        rows = (await session.execute(sa.select(LEGACY_RECORD).order_by(sa.text("seq")))).all()
    prev = GENESIS_HASH
    for row in rows:
        fields = ChainedFields(**{name: getattr(row, name) for name in ChainedFields.__slots__})
        assert row.prev_hash == prev
        assert chain_hash(prev, fields) == row.hash
        prev = row.hash
    return len(rows)
