"""Checkpoints: the signed chain head published outside the database, on schedule, by one
process at a time; ``verify`` finds a rewrite against them without any secret. Both
databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.audit.attack import append_exports, relabel_exports
from tests.conftest import make_settings
from tests.factories import user_with_role
from tgfleet.app import create_app
from tgfleet.audit import checkpoint as audit_checkpoint
from tgfleet.audit import service as audit_service
from tgfleet.audit.checkpoint import Checkpoint, CheckpointPublisher
from tgfleet.audit.exceptions import CheckpointError
from tgfleet.audit.keys import AuditKey, AuditKeyring
from tgfleet.audit.schemas import AuditVerifyRead
from tgfleet.config import Settings
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work


def checkpoint_settings(db_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "audit_checkpoints_enabled": True,
        "audit_checkpoint_every_records": 5,
        "audit_checkpoint_every_seconds": 3600.0,
        "audit_checkpoint_file": tmp_path / "checkpoints.jsonl",
    }
    return make_settings(db_url, tmp_path / "data", **(values | overrides))


async def verify(
    maker: async_sessionmaker[AsyncSession],
    keyring: AuditKeyring | None,
    checkpoints: list[Checkpoint],
) -> AuditVerifyRead:
    async with unit_of_work(maker, read_only=True) as session:
        return await audit_service.verify(session, keyring=keyring, checkpoints=checkpoints)


class TestPublishing:
    async def test_published_on_schedule_signed_and_readable_without_a_key(
        self, maker: async_sessionmaker[AsyncSession], db_url: str, tmp_path: Path
    ) -> None:
        """The first checkpoint is published at once, the next after 5 more records; each
        line is signed and parses with the public key it carries."""
        settings = checkpoint_settings(db_url, tmp_path)
        publisher = CheckpointPublisher(settings, maker)
        assert await publisher.publish_due() is None  # an empty log has no head to publish
        await append_exports(maker, 3)
        first = await publisher.publish_due()
        assert first is not None
        assert first.seq == 3
        await append_exports(maker, 4)
        assert await publisher.publish_due() is None  # 4 < 5 records, well within the hour
        await append_exports(maker, 1)
        second = await publisher.publish_due()
        assert second is not None
        assert second.seq == 8
        path = settings.effective_audit_checkpoint_file
        assert path.stat().st_mode & 0o777 == 0o600
        assert [c.seq for c in audit_checkpoint.read_file(path)] == [3, 8]
        async with maker() as session:
            rows = (await session.execute(text("SELECT seq, hash FROM audit_record"))).all()
        hashes: dict[int, str] = {row.seq: row.hash for row in rows}
        assert (first.hash, second.hash) == (hashes[3], hashes[8])

    async def test_after_the_interval_even_one_record_is_checkpointed(
        self, maker: async_sessionmaker[AsyncSession], db_url: str, tmp_path: Path
    ) -> None:
        """With fewer records than the count, a checkpoint still follows once the interval
        passed since the last one."""
        settings = checkpoint_settings(db_url, tmp_path, audit_checkpoint_every_seconds=0.2)
        publisher = CheckpointPublisher(settings, maker)
        await append_exports(maker, 1)
        assert await publisher.publish_due() is not None
        await append_exports(maker, 1)
        published = None
        async with asyncio.timeout(10):
            while published is None:
                published = await publisher.publish_due()
                await asyncio.sleep(0.05)
        assert published.seq == 2

    async def test_concurrent_publishers_publish_each_checkpoint_once(
        self, maker: async_sessionmaker[AsyncSession], db_url: str, tmp_path: Path
    ) -> None:
        """Several processes' publishers checking at once claim the checkpoint in the
        database: exactly one of them publishes it."""
        settings = checkpoint_settings(db_url, tmp_path)
        await append_exports(maker, 6)
        results = await asyncio.gather(
            *(CheckpointPublisher(settings, maker).publish_due() for _ in range(4))
        )
        assert [r.seq for r in results if r is not None] == [6]
        assert len(audit_checkpoint.read_file(settings.effective_audit_checkpoint_file)) == 1

    async def test_a_failed_sink_publishes_again(
        self, maker: async_sessionmaker[AsyncSession], db_url: str, tmp_path: Path
    ) -> None:
        """A webhook that refuses the checkpoint gives the claim back, so the next check
        publishes it again; the error never shows the URL's secret path."""
        statuses = [500, 204]
        received: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            received.append(await reader.readexactly(length))
            status = statuses.pop(0)
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/hook/s3cret-path"
        settings = checkpoint_settings(
            db_url, tmp_path, audit_checkpoint_webhook_url=SecretStr(url)
        )
        publisher = CheckpointPublisher(settings, maker)
        await append_exports(maker, 2)
        try:
            with pytest.raises(CheckpointError) as caught:
                await publisher.publish_due()
            assert "s3cret" not in caught.value.message
            again = await publisher.publish_due()
        finally:
            server.close()
            await server.wait_closed()
        assert again is not None
        assert again.seq == 2
        assert [json.loads(body)["seq"] for body in received] == [2, 2]


class TestCheckpointFile:
    async def test_an_altered_checkpoint_is_refused(
        self, maker: async_sessionmaker[AsyncSession], db_url: str, tmp_path: Path
    ) -> None:
        """Changing a checkpoint's hash or seq breaks its signature; swapping in another
        public key breaks its key id."""
        settings = checkpoint_settings(db_url, tmp_path)
        await append_exports(maker, 2)
        published = await CheckpointPublisher(settings, maker).publish_due()
        assert published is not None
        document = json.loads(published.to_line())
        for field, value in (("hash", "0" * 64), ("seq", 1)):
            forged = json.dumps(document | {field: value})
            with pytest.raises(CheckpointError, match="signature does not verify"):
                audit_checkpoint.parse(forged, where="line 1")
        other = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
        with pytest.raises(CheckpointError, match="is not the id of its public key"):
            audit_checkpoint.parse(json.dumps(document | {"public_key": other}), where="x")


class TestVerifyAgainstCheckpoints:
    async def test_a_rewrite_is_found_without_the_key(
        self, maker: async_sessionmaker[AsyncSession], db_url: str, tmp_path: Path
    ) -> None:
        """A verifier with the checkpoint file but no audit key finds the relabel attack,
        even when the attacker also blanks every MAC (the log then looks written before the
        chain was keyed, which no MAC check can tell)."""
        settings = checkpoint_settings(db_url, tmp_path)
        await append_exports(maker, 10)
        await CheckpointPublisher(settings, maker).publish_due()
        await append_exports(maker, 2)
        checkpoints = audit_checkpoint.read_file(settings.effective_audit_checkpoint_file)
        assert (await verify(maker, None, checkpoints)).ok
        await relabel_exports(maker, strip_macs=True)
        without = await verify(maker, None, [])
        assert without.ok  # the public chain alone cannot tell
        result = await verify(maker, None, checkpoints)
        assert (result.ok, result.first_bad_seq) == (False, 10)
        assert result.reason is not None
        assert result.reason.startswith("the record differs from the checkpoint published at ")
        assert result.reason.endswith(": the log was rewritten")

    async def test_records_removed_past_a_checkpoint_are_found(
        self, maker: async_sessionmaker[AsyncSession], db_url: str, tmp_path: Path
    ) -> None:
        """Deleting the newest records and moving the head back consistently is found: a
        checkpoint names a seq the log no longer has."""
        settings = checkpoint_settings(db_url, tmp_path)
        await append_exports(maker, 6)
        await CheckpointPublisher(settings, maker).publish_due()
        async with unit_of_work(maker) as session:
            hash_4 = (
                await session.execute(text("SELECT hash FROM audit_record WHERE seq = 4"))
            ).scalar_one()
            await session.execute(text("DELETE FROM audit_record WHERE seq > 4"))
            await session.execute(
                text("UPDATE audit_chain_head SET seq = 4, hash = :h"), {"h": hash_4}
            )
        checkpoints = audit_checkpoint.read_file(settings.effective_audit_checkpoint_file)
        assert (await verify(maker, None, [])).ok
        result = await verify(maker, None, checkpoints)
        assert (result.ok, result.first_bad_seq) == (False, 5)
        assert "names seq 6: records were removed" in (result.reason or "")


class TestForeignSigner:
    async def test_a_checkpoint_signed_by_another_key_is_refused_with_the_keys(
        self,
        maker: async_sessionmaker[AsyncSession],
        db_url: str,
        tmp_path: Path,
        audit_keyring: AuditKeyring,
    ) -> None:
        """A checkpoint file replaced with checkpoints under someone else's key is valid on
        its own, but a verifier holding the audit keys refuses it."""
        await append_exports(maker, 3)
        async with maker() as session:
            hash_3 = (
                await session.execute(text("SELECT hash FROM audit_record WHERE seq = 3"))
            ).scalar_one()
        forged = audit_checkpoint.sign(AuditKey.generate(), seq=3, hash_=hash_3, at=utcnow())
        assert (await verify(maker, None, [forged])).ok
        result = await verify(maker, audit_keyring, [forged])
        assert result.ok is False
        assert f"is signed by audit key {forged.key_id}, which is not one of" in (
            result.reason or ""
        )


class TestVerifyEndpoint:
    async def test_the_api_checks_the_macs_and_the_configured_checkpoints(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """``GET /api/v1/audit/verify`` uses the server's audit keys and its checkpoint
        file: OK with the counts, then the relabel attack is named by its seq."""
        settings = checkpoint_settings(db_url, tmp_path, audit_checkpoint_every_records=1)
        application = create_app(settings)
        transport = httpx.ASGITransport(app=application)
        async with (
            application.router.lifespan_context(application),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        ):
            maker = application.state.sessionmaker
            admin = await user_with_role(client, maker, application.state.security, "admin")
            await append_exports(maker, 3)
            await CheckpointPublisher(settings, maker).publish_due()
            good = (await client.get("/api/v1/audit/verify", headers=admin.headers)).json()
            assert good["ok"] is True
            assert (good["keyed"], good["macs_checked"]) == (good["count"], True)
            # Ours, and any the app's own publisher wrote meanwhile.
            assert good["checkpoints"] >= 1
            first = await relabel_exports(maker, strip_macs=False)
            bad = (await client.get("/api/v1/audit/verify", headers=admin.headers)).json()
        assert (bad["ok"], bad["first_bad_seq"]) == (False, first)


class TestRuntime:
    async def test_an_api_process_publishes_on_its_own(
        self, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A running app publishes checkpoints by itself, to the file and to standard
        output, until it stops."""
        settings = checkpoint_settings(
            db_url,
            tmp_path,
            audit_checkpoint_every_records=1,
            audit_checkpoint_every_seconds=0.2,
            audit_checkpoint_stdout=True,
        )
        application = create_app(settings)
        path = settings.effective_audit_checkpoint_file
        async with application.router.lifespan_context(application):
            await append_exports(application.state.sessionmaker, 3)
            async with asyncio.timeout(15):
                while True:
                    if path.exists() and audit_checkpoint.read_file(path)[-1].seq == 3:
                        break
                    await asyncio.sleep(0.05)
        printed = [
            json.loads(line)
            for line in capsys.readouterr().out.splitlines()
            if "tgfleet-audit-checkpoint" in line
        ]
        assert printed[-1]["seq"] == 3
        assert printed[-1]["signature"] == audit_checkpoint.read_file(path)[-1].signature
