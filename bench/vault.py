"""Vault benchmark: import and decrypt throughput against a Fernet baseline; rotation time.

1,000 real Telethon .session files (written by Telethon's SQLiteSession) are imported into
a fresh, migrated SQLite database through the vault service, then decrypted back. The
baseline, in the same run, is what many tools do: encrypt and decrypt each whole file
with Fernet. Rotation re-wraps 10,000 secrets under a new KEK.

Targets (issue 3): decrypt >= 10x the Fernet baseline; rotation of 10,000 secrets < 10 s.
Run alone: `.venv/bin/python bench/run.py vault`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from telethon.crypto import AuthKey
from telethon.sessions import SQLiteSession

from tgfleet import migrations
from tgfleet.audit import keys as audit_keys
from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.models import Account, SessionSecret
from tgfleet.vault import crypto
from tgfleet.vault import service as vault_service
from tgfleet.vault.archive import Entry
from tgfleet.vault.formats import auth_key_fingerprint, from_record, parse, to_record
from tgfleet.vault.keyring import init_key_file

FILES = 1_000
ROTATE_SECRETS = 10_000
CONTEXT = AuditContext(actor="cli:bench")


def make_files(folder: Path, count: int) -> list[Path]:
    paths = []
    for index in range(count):
        path = folder / f"acct{index}.session"
        session = SQLiteSession(str(path))
        session.set_dc(2, "149.154.167.51", 443)
        session.auth_key = AuthKey(data=uuid.uuid4().bytes * 16)
        session.save()
        session.close()
        paths.append(path)
    return paths


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


async def fresh_vault(
    data_dir: Path,
) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession], vault_service.Vault]:
    """A new data dir with a vault key file and a migrated SQLite database; (its engine,
    its sessions, the Vault)."""
    await asyncio.to_thread(data_dir.mkdir, mode=0o700)
    settings = Settings(data_dir=data_dir, env="test")  # type: ignore[arg-type]
    init_key_file(settings.effective_vault_key_file)
    audit_keys.configure(settings)  # the imports are audited (a key file in the data dir)
    await asyncio.to_thread(migrations.upgrade, settings.effective_database_url)
    engine = create_engine(settings.effective_database_url)
    vault = await asyncio.to_thread(vault_service.Vault.load, settings)
    return engine, create_sessionmaker(engine), vault


async def run(workdir: Path) -> list[str]:
    engine, maker, vault = await fresh_vault(workdir / "data")
    lines: list[str] = []
    try:
        folder = workdir / "sessions"
        folder.mkdir()
        paths = await asyncio.to_thread(make_files, folder, FILES)
        blobs = [p.read_bytes() for p in paths]
        entries = [Entry(name=p.name, data=b) for p, b in zip(paths, blobs, strict=True)]

        started = time.perf_counter()
        results = await vault_service.import_entries(maker, vault, CONTEXT, entries)
        import_seconds = time.perf_counter() - started
        assert all(r.ok for r in results), [r for r in results if not r.ok][:3]

        # Decrypt: what a worker does at start, per account (no database round trip).
        async with unit_of_work(maker, read_only=True) as session:
            rows = list((await session.execute(SessionSecret.__table__.select())).mappings().all())
        envelopes = [
            (
                row["account_id"],
                row["version"],
                crypto.Envelope(
                    kek_id=row["kek_id"],
                    wrapped_key=row["wrapped_key"],
                    nonce=row["nonce"],
                    ciphertext=row["ciphertext"],
                ),
            )
            for row in rows
        ]
        ours = []
        for _ in range(3):
            started = time.perf_counter()
            for account_id, version, envelope in envelopes:
                record = from_record(
                    crypto.open_envelope(
                        vault.keyring, envelope, account_id=account_id, version=version
                    )
                )
                assert len(record.auth_key) == 256
            ours.append(time.perf_counter() - started)
        decrypt_seconds = statistics.median(ours)

        # Decrypt through the service (database read, audit record, transaction each).
        started = time.perf_counter()
        for result in results[:200]:
            assert result.account_id is not None
            async with unit_of_work(maker) as session:
                await vault_service.decrypt(
                    session, vault, CONTEXT, result.account_id, purpose="bench"
                )
        service_seconds = time.perf_counter() - started

        # Baseline: Fernet over whole files, then parse the decrypted file to get the key.
        fernet = Fernet(Fernet.generate_key())
        started = time.perf_counter()
        tokens = [fernet.encrypt(blob) for blob in blobs]
        fernet_encrypt_seconds = time.perf_counter() - started
        theirs = []
        for _ in range(3):
            started = time.perf_counter()
            for token in tokens:
                fernet.decrypt(token)
            theirs.append(time.perf_counter() - started)
        fernet_decrypt_seconds = statistics.median(theirs)
        started = time.perf_counter()
        for token in tokens:
            parse(fernet.decrypt(token))
        fernet_usable_seconds = time.perf_counter() - started

        average_file = sum(map(len, blobs)) / len(blobs)
        lines += [
            (
                f"### Vault: {FILES:,} real Telethon .session files "
                f"(average {average_file / 1024:.0f} KiB)"
            ),
            "",
            "| measure | tgfleet | Fernet baseline | ratio |",
            "|---|---|---|---|",
            (
                f"| import (parse, validate, encrypt, store, audit) | "
                f"{rate(FILES, import_seconds)} | encrypt only: "
                f"{rate(FILES, fernet_encrypt_seconds)} | - |"
            ),
            (
                f"| decrypt to a usable key (median of 3) | {rate(FILES, decrypt_seconds)} | "
                f"{rate(FILES, fernet_decrypt_seconds)} (decrypt only) | "
                f"**{fernet_decrypt_seconds / decrypt_seconds:.1f}x** |"
            ),
            (
                f"| decrypt and parse to a usable key | {rate(FILES, decrypt_seconds)} | "
                f"{rate(FILES, fernet_usable_seconds)} | "
                f"{fernet_usable_seconds / decrypt_seconds:.1f}x |"
            ),
            (
                f"| decrypt through the service (read, decrypt, audit, commit) | "
                f"{rate(200, service_seconds)} | - | - |"
            ),
            "",
        ]
    finally:
        await engine.dispose()
    lines += await rotation(workdir)
    return lines


async def rotation(workdir: Path) -> list[str]:
    """10,000 secrets sealed directly (import would dominate the set-up), then rotated."""
    engine, maker, vault = await fresh_vault(workdir / "rotation")
    template = parse(make_files(workdir, 1)[0].read_bytes())
    try:
        for start in range(0, ROTATE_SECRETS, 1000):
            async with unit_of_work(maker) as session:
                for index in range(start, start + 1000):
                    account = Account(id=uuid.uuid4(), label=f"r{index}")
                    session.add(account)
                    key = uuid.uuid4().bytes * 16
                    record = dataclasses.replace(template, auth_key=key)
                    envelope = crypto.seal(
                        vault.keyring, to_record(record), account_id=account.id, version=1
                    )
                    session.add(
                        SessionSecret(
                            account_id=account.id,
                            version=1,
                            state="active",
                            source_format="telethon",
                            kek_id=envelope.kek_id,
                            wrapped_key=envelope.wrapped_key,
                            nonce=envelope.nonce,
                            ciphertext=envelope.ciphertext,
                            auth_key_fingerprint=auth_key_fingerprint(key),
                        )
                    )
        started = time.perf_counter()
        report = await vault_service.rotate(maker, vault, CONTEXT)
        seconds = time.perf_counter() - started
        assert report.rewrapped == ROTATE_SECRETS, report
    finally:
        await engine.dispose()
    verdict = "meets" if seconds < 10 else "MISSES"
    return [
        f"### Vault: rotation of {ROTATE_SECRETS:,} secrets (SQLite, batches of 500)",
        "",
        f"{seconds:.2f} s ({rate(ROTATE_SECRETS, seconds)}); target < 10 s: {verdict}.",
    ]


def main() -> str:
    with tempfile.TemporaryDirectory(prefix="tgfleet-bench-") as folder:
        return "\n".join(asyncio.run(run(Path(folder))))


if __name__ == "__main__":
    print(main())
