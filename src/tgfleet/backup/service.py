"""Take, verify and restore backups (``tgfleet backup``).

**SQLite**: an online copy with SQLite's backup API, one step, so it is one consistent
snapshot even while the app writes (WAL: the copy reads, writers go on). The copy is
checked (``PRAGMA integrity_check``) before it is packed.

**PostgreSQL**: ``pg_dump -Fc``, run by this command (one artefact with its manifest and
checksum), with the connection in ``PG*`` environment variables, never in its arguments.
``pg_dump`` must be at least the server's major version. Restoring one is ``pg_restore``
by the operator (the command prints the steps), then ``tgfleet backup check-keys``.

A backup names the vault and audit key ids its records need and where those keys lived;
it holds no key material unless ``include_keys`` is asked for. A restore decrypts one
session per vault key id and verifies one audit record per audit key id with the configured
keys before anything is put in place: a missing key fails naming its id, and nothing is
written. Taking and restoring a backup are audited (``backup.create``, ``backup.restore``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet import __version__, migrations
from tgfleet.audit import keys as audit_keys
from tgfleet.audit import service as audit_service
from tgfleet.audit.exceptions import AuditKeyError
from tgfleet.audit.schemas import AuditContext
from tgfleet.backup import archive
from tgfleet.backup.archive import KeyUse, Manifest
from tgfleet.backup.exceptions import BackupError, BackupFileError, BackupKeyMissing
from tgfleet.config import Settings
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.kit.files import create_private_file
from tgfleet.kit.keyfile import KeyCheck
from tgfleet.logging import get_logger
from tgfleet.vault import service as vault_service
from tgfleet.vault.exceptions import VaultKeyError
from tgfleet.vault.vault import load_keyring_for

log = get_logger(__name__)

T = TypeVar("T")

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
#: Names of the key files a backup taken with ``include_keys`` carries.
VAULT_KEY_NAME = "vault.key"
VAULT_SALT_NAME = "vault.salt"
AUDIT_KEY_NAME = "audit.key"


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    manifest: Manifest


@dataclass(frozen=True, slots=True)
class Verification:
    """What ``verify`` found: the manifest and the key checks (empty ``problems``: usable)."""

    manifest: Manifest
    integrity: str
    vault: list[KeyCheck] = field(default_factory=list)
    audit: list[KeyCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RestoreResult:
    database: Path
    manifest: Manifest
    migrated_from: str | None
    migrated_to: str | None
    replaced: Path | None
    installed_keys: list[Path]


def backend_of(settings: Settings) -> str:
    name = make_url(settings.effective_database_url).get_backend_name()
    return SQLITE if name == "sqlite" else POSTGRESQL


def sqlite_path(settings: Settings) -> Path:
    database = make_url(settings.effective_database_url).database
    if not database or database == ":memory:":
        raise BackupError("the configured SQLite database is in memory: nothing to back up")
    return Path(database)


def key_sources(settings: Settings) -> list[str]:
    """Where this host's vault and audit keys come from: what must be backed up with the
    database (and kept apart from it)."""
    where = (
        "environment" if settings.secrets_dir is None else f"environment or {settings.secrets_dir}"
    )

    def variable(name: str) -> str:
        return f"{name} ({where})"

    sources: list[str] = []
    if settings.vault_key is not None:
        sources.append("vault: " + variable("TGFLEET_VAULT_KEY"))
    elif settings.vault_passphrase is not None:
        sources.append("vault: " + variable("TGFLEET_VAULT_PASSPHRASE"))
        sources.append(f"vault: salt file {settings.vault_salt_file}")
    else:
        sources.append(f"vault: key file {settings.effective_vault_key_file}")
    if settings.vault_previous_keys is not None:
        sources.append("vault: " + variable("TGFLEET_VAULT_PREVIOUS_KEYS"))
    if settings.audit_key is not None:
        sources.append("audit: " + variable("TGFLEET_AUDIT_KEY"))
    else:
        sources.append(f"audit: key file {settings.effective_audit_key_file}")
    if settings.audit_previous_keys is not None:
        sources.append("audit: " + variable("TGFLEET_AUDIT_PREVIOUS_KEYS"))
    return sources


def key_files(settings: Settings) -> dict[str, Path]:
    """The key files this host uses (keys from the environment have no file to copy)."""
    files: dict[str, Path] = {}
    if settings.vault_key is None and settings.vault_passphrase is None:
        files[VAULT_KEY_NAME] = settings.effective_vault_key_file
    if settings.vault_passphrase is not None:
        files[VAULT_SALT_NAME] = settings.vault_salt_file
    if settings.audit_key is None:
        files[AUDIT_KEY_NAME] = settings.effective_audit_key_file
    return {name: path for name, path in files.items() if path.exists()}


# --- taking a backup ---------------------------------------------------------------------


async def create(
    settings: Settings,
    output: Path,
    context: AuditContext,
    *,
    include_keys: bool = False,
    force: bool = False,
    pg_dump: str = "pg_dump",
) -> BackupResult:
    """Back up the configured database to ``output`` (atomically, 0600) and audit it."""
    backend = backend_of(settings)
    with _scratch(output.parent, f".{output.name}.db") as copy:
        if backend == SQLITE:
            await asyncio.to_thread(_sqlite_copy, sqlite_path(settings), copy)
            revision, vault_keys, audit_keys_used = await _inspect(_sqlite_url(copy))
            member = archive.SQLITE_MEMBER
        else:
            url = settings.effective_database_url
            await _check_pg_dump(url, pg_dump)
            # The key ids before and after the dump: a rotation while it ran is covered.
            _, vault_before, audit_before = await _inspect(url)
            await asyncio.to_thread(_run_pg_dump, url, pg_dump, copy)
            revision, vault_keys, audit_keys_used = await _inspect(url)
            vault_keys = _union(vault_before, vault_keys)
            audit_keys_used = _union(audit_before, audit_keys_used)
            member = archive.PGDUMP_MEMBER
        keys = {n: p.read_bytes() for n, p in key_files(settings).items()} if include_keys else {}
        manifest = Manifest(
            created_at=utcnow().isoformat(),
            tgfleet_version=__version__,
            backend=backend,
            schema_revision=revision,
            database_member=member,
            database_sha256=await asyncio.to_thread(archive.sha256_of, copy),
            database_bytes=copy.stat().st_size,
            vault_keys=vault_keys,
            audit_keys=audit_keys_used,
            key_sources=key_sources(settings),
            includes_keys=bool(keys),
        )
        temporary = await asyncio.to_thread(
            archive.write, output, manifest, copy, keys, force=force
        )
    try:
        await _audit(
            settings.effective_database_url,
            context,
            "backup.create",
            output,
            manifest,
            included_keys=sorted(keys),
        )
    except BaseException:
        temporary.unlink(missing_ok=True)  # no audit, no backup
        raise
    archive.publish(temporary, output)
    log.info("backup.created", path=str(output), backend=backend, revision=revision)
    return BackupResult(output, manifest)


def _union(first: list[KeyUse], second: list[KeyUse]) -> list[KeyUse]:
    counts = {use.id: use.records for use in first}
    for use in second:
        counts[use.id] = max(counts.get(use.id, 0), use.records)
    return [KeyUse(key_id, counts[key_id]) for key_id in sorted(counts)]


def _sqlite_copy(source: Path, target: Path) -> None:
    """An online copy of ``source`` in one backup step (one read transaction: a consistent
    snapshot while others write), in rollback-journal mode, integrity-checked."""
    if not source.exists():
        raise BackupError(f"there is no database at {source} (TGFLEET_DATA_DIR / DATABASE_URL?)")
    live = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        copy = sqlite3.connect(target)
        try:
            live.backup(copy)
            copy.execute("PRAGMA journal_mode = DELETE")
            result = _integrity(copy)
        finally:
            copy.close()
    finally:
        live.close()
    if result != "ok":
        raise BackupError(f"the copy of {source} failed its integrity check: {result}")


def _integrity(connection: sqlite3.Connection) -> str:
    rows = connection.execute("PRAGMA integrity_check").fetchall()
    return "; ".join(str(row[0]) for row in rows[:5])


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def _with_session(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    # An admin job may wait for a busy SQLite writer longer than a request would.
    engine = create_engine(url, pool_size=1, max_overflow=0, sqlite_busy_timeout_ms=30_000)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()


async def _inspect(url: str) -> tuple[str | None, list[KeyUse], list[KeyUse]]:
    """The schema revision and the vault and audit key ids the database's records need."""

    async def read(session: AsyncSession) -> tuple[dict[str, int], dict[str, int]]:
        return await vault_service.keys_in_use(session), await audit_service.keys_in_use(session)

    revision = await migrations.current_revision(url)
    vault_used, audit_used = await _with_session(url, read)
    return (
        revision,
        [KeyUse(k, n) for k, n in sorted(vault_used.items())],
        [KeyUse(k, n) for k, n in sorted(audit_used.items())],
    )


async def _audit(
    url: str,
    context: AuditContext,
    action: str,
    path: Path,
    manifest: Manifest,
    **extra: object,
) -> None:
    details = {
        "file": str(path),
        "sha256": manifest.database_sha256,
        "bytes": manifest.database_bytes,
        "backend": manifest.backend,
        "schema_revision": manifest.schema_revision,
        "vault_key_ids": [use.id for use in manifest.vault_keys],
        "audit_key_ids": [use.id for use in manifest.audit_keys],
        **extra,
    }

    async def write(session: AsyncSession) -> None:
        await audit_service.record(
            session, context, action=action, target=f"backup:{path.name}", details=details
        )

    await _with_session(url, write)


# --- PostgreSQL's pg_dump ----------------------------------------------------------------


def pg_environment(url: str) -> dict[str, str]:
    """libpq's ``PG*`` variables for ``url``: the password travels in the environment of
    ``pg_dump`` only, never in its arguments (which any local user can read in ``ps``)."""
    parsed = make_url(url)
    variables = {
        "PGHOST": parsed.host or "",
        "PGPORT": str(parsed.port or ""),
        "PGUSER": parsed.username or "",
        "PGPASSWORD": parsed.password or "",
        "PGDATABASE": parsed.database or "",
    }
    ssl = parsed.query.get("ssl") or parsed.query.get("sslmode")
    if isinstance(ssl, str):
        variables["PGSSLMODE"] = ssl
    return {name: value for name, value in variables.items() if value}


def pg_dump_command(pg_dump: str, output: Path) -> list[str]:
    return [pg_dump, "--format=custom", "--no-password", f"--file={output}"]


_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")


async def _check_pg_dump(url: str, pg_dump: str) -> None:
    found = shutil.which(pg_dump)
    if found is None:
        msg = (
            f"{pg_dump} was not found: install PostgreSQL's client tools (Debian: apt install "
            f"postgresql-client), at least the server's major version, or pass --pg-dump PATH"
        )
        raise BackupError(msg)
    version = await asyncio.to_thread(
        subprocess.run,
        [found, "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    match = _VERSION.search(version.stdout)
    if match is None:
        raise BackupError(f"{found} --version said {version.stdout.strip()!r}: not pg_dump?")
    client = int(match.group(1))

    async def server_version(session: AsyncSession) -> int:
        number = (await session.execute(text("SHOW server_version_num"))).scalar_one()
        return int(number) // 10000

    server = await _with_session(url, server_version)
    if client < server:
        msg = (
            f"{found} is PostgreSQL {client}, the server is {server}: pg_dump must be at least "
            f"the server's major version (install postgresql-client-{server})"
        )
        raise BackupError(msg)


def _run_pg_dump(url: str, pg_dump: str, output: Path) -> None:
    output.unlink(missing_ok=True)
    result = subprocess.run(  # noqa: S603 - our arguments, no shell
        pg_dump_command(pg_dump, output),
        env={**os.environ, **pg_environment(url)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()
        raise BackupError(f"pg_dump failed: {detail[-1] if detail else result.returncode}")
    output.chmod(0o600)


# --- verifying and restoring -------------------------------------------------------------


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(migrations.alembic_config("sqlite://"))
    return {revision.revision for revision in script.walk_revisions()}


def check_revision(revision: str | None) -> None:
    """A revision this code knows (older ones are migrated after a restore)."""
    if revision is not None and revision not in _known_revisions():
        msg = (
            f"the backup's schema is at revision {revision}, newer than this tgfleet "
            f"{__version__} knows (head {migrations.head_revision()}): restore it with the "
            f"tgfleet version that took it, or a later one"
        )
        raise BackupError(msg)


async def check_keys(settings: Settings, url: str) -> tuple[list[KeyCheck], list[KeyCheck]]:
    """Open one record per key id in the database at ``url`` with the configured keys."""
    vault_checks: list[KeyCheck] = []
    audit_checks: list[KeyCheck] = []
    try:
        _check_salt(settings)
        keyring = await asyncio.to_thread(load_keyring_for, settings)
    except VaultKeyError as exc:
        vault_error: str | None = exc.message
    else:
        vault_error = None
    try:
        audit_keyring = await asyncio.to_thread(audit_keys.load, settings, create=False)
    except AuditKeyError as exc:
        audit_error: str | None = exc.message
    else:
        audit_error = None

    async def work(session: AsyncSession) -> None:
        if vault_error is None:
            vault_checks.extend(await vault_service.check_keys(session, keyring))
        else:
            for key_id, count in (await vault_service.keys_in_use(session)).items():
                vault_checks.append(KeyCheck(key_id, count, f"vault key {key_id}: {vault_error}"))
        if audit_error is None:
            audit_checks.extend(await audit_service.check_keys(session, audit_keyring))
        else:
            for key_id, count in (await audit_service.keys_in_use(session)).items():
                audit_checks.append(KeyCheck(key_id, count, f"audit key {key_id}: {audit_error}"))

    await _with_session(url, work)
    return vault_checks, audit_checks


def _check_salt(settings: Settings) -> None:
    """In passphrase mode, loading the keyring creates a missing salt file, which would
    derive another key; a check must not: it reports the missing salt instead."""
    if settings.vault_key is None and settings.vault_passphrase is not None:
        salt = settings.vault_salt_file
        if not salt.exists():
            msg = (
                f"the vault salt file {salt} is missing: copy it from the host the backup "
                f"was taken on (the passphrase derives another key without it)"
            )
            raise VaultKeyError(msg)


def _problems(*checks: list[KeyCheck]) -> list[str]:
    return [check.problem for group in checks for check in group if check.problem is not None]


def _manifest_key_checks(settings: Settings, manifest: Manifest) -> Verification:
    """Without the database at hand (a pg_dump): are the key ids the manifest names held?"""
    problems: list[str] = []
    try:
        _check_salt(settings)
        usable: frozenset[str] = load_keyring_for(settings).usable_ids()
    except VaultKeyError as exc:
        usable, problems = frozenset(), [exc.message]
    try:
        audit_ids = set(audit_keys.load(settings, create=False).ids())
    except AuditKeyError as exc:
        audit_ids = set()
        problems.append(exc.message)
    vault = [
        KeyCheck(u.id, u.records, None if u.id in usable else f"vault key {u.id} is not configured")
        for u in manifest.vault_keys
    ]
    audit = [
        KeyCheck(
            u.id, u.records, None if u.id in audit_ids else f"audit key {u.id} is not configured"
        )
        for u in manifest.audit_keys
    ]
    return Verification(
        manifest, "not checked (pg_dump)", vault, audit, problems + _problems(vault, audit)
    )


async def verify(settings: Settings, path: Path) -> Verification:
    """Check a backup file without restoring it: its manifest, its database's checksum and
    integrity, its schema revision, and (SQLite) one record per key id with the configured
    keys; (PostgreSQL) that the configured keyrings hold the key ids the manifest names."""
    with archive.opened(path) as (tar, manifest):
        if manifest.backend != SQLITE:  # checksum only: pg_dump's output is not unpacked
            await asyncio.to_thread(archive.extract_database, tar, manifest, path, None)
            check_revision(manifest.schema_revision)
            return await asyncio.to_thread(_manifest_key_checks, settings, manifest)
    with archive.opened(path) as (tar, manifest), _scratch(settings.data_dir, ".verify") as copy:
        await asyncio.to_thread(archive.extract_database, tar, manifest, path, copy)
        integrity = await asyncio.to_thread(_integrity_of, copy)
        if integrity != "ok":
            raise BackupFileError(f"{path}: the database failed its integrity check: {integrity}")
        revision = await migrations.current_revision(_sqlite_url(copy))
        check_revision(revision)
        vault, audit = await check_keys(settings, _sqlite_url(copy))
    return Verification(manifest, integrity, vault, audit, _problems(vault, audit))


def _integrity_of(path: Path) -> str:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return _integrity(connection)
    except sqlite3.DatabaseError as exc:
        return str(exc)
    finally:
        connection.close()


async def restore(
    settings: Settings,
    path: Path,
    context: AuditContext,
    *,
    force: bool = False,
    install_keys: bool = False,
) -> RestoreResult:
    """Restore a SQLite backup as the configured database, after every check passed.

    Refuses an existing database unless ``force`` (the old one is then kept beside it as
    ``<name>.replaced-<time>``); refuses a schema newer than this code; migrates an older
    one; checks the configured keys open one record per key id. Until the final rename the
    restored database is a temporary file beside the target: a failure leaves nothing.
    """
    if backend_of(settings) != SQLITE:
        raise BackupError(
            "the configured database is PostgreSQL: see `tgfleet backup restore --help`"
        )
    target = sqlite_path(settings)
    if _exists(target) and not force:
        msg = (
            f"{target} exists: stop every tgfleet process that uses it (tgfleet run, api, "
            f"worker with TGFLEET_DATA_DIR={settings.data_dir}), then rerun with --force to "
            f"replace it (the old database is kept beside it)"
        )
        raise BackupError(msg)
    installed: list[Path] = []
    with (
        archive.opened(path) as (tar, manifest),
        _scratch(target.parent, f".{target.name}.restore") as copy,
    ):
        if manifest.backend != SQLITE:
            raise BackupError(f"{path} is a {manifest.backend} backup: restore it with pg_restore")
        await asyncio.to_thread(archive.extract_database, tar, manifest, path, copy)
        integrity = await asyncio.to_thread(_integrity_of, copy)
        if integrity != "ok":
            raise BackupFileError(f"{path}: the database failed its integrity check: {integrity}")
        url = _sqlite_url(copy)
        before = await migrations.current_revision(url)
        check_revision(before)
        if install_keys:
            installed = await asyncio.to_thread(
                _install_keys, settings, archive.included_keys(tar, path)
            )
        try:
            vault, audit = await check_keys(settings, url)
            problems = _problems(vault, audit)
            if problems:
                msg = "the configured keys cannot open this backup; nothing was restored:\n  "
                raise BackupKeyMissing(msg + "\n  ".join(problems))  # noqa: TRY301 - undo below
            await asyncio.to_thread(migrations.upgrade, url)
            after = await migrations.current_revision(url)
            await _audit(
                url,
                context,
                "backup.restore",
                path,
                manifest,
                migrated_from=before,
                migrated_to=after,
            )
        except BaseException:
            for key_file in installed:
                key_file.unlink(missing_ok=True)
            raise
        await asyncio.to_thread(_journal_delete, copy)
        replaced = await asyncio.to_thread(_set_aside, target) if _exists(target) else None
        copy.replace(target)
    log.info("backup.restored", path=str(path), database=str(target), revision=after)
    return RestoreResult(target, manifest, before, after, replaced, installed)


def _exists(database: Path) -> bool:
    return database.exists() or Path(f"{database}-wal").exists()


def _journal_delete(path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode = DELETE")
    finally:
        connection.close()


def _set_aside(target: Path) -> Path:
    """Fold the old database's WAL into it and move it aside (never deleted)."""
    connection = sqlite3.connect(target, timeout=10)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    aside = target.with_name(f"{target.name}.replaced-{utcnow().strftime('%Y%m%dT%H%M%SZ')}")
    target.replace(aside)
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    return aside


def _install_keys(settings: Settings, keys: dict[str, bytes]) -> list[Path]:
    """Write the backup's key files where this host's settings look for them, never over an
    existing file (the check that follows decides whether the keys there are the right ones)."""
    destinations = {
        VAULT_KEY_NAME: settings.effective_vault_key_file,
        VAULT_SALT_NAME: settings.vault_salt_file,
        AUDIT_KEY_NAME: settings.effective_audit_key_file,
    }
    installed: list[Path] = []
    for name, content in keys.items():
        destination = destinations.get(name)
        if destination is None or destination.exists():
            continue
        create_private_file(destination, content)
        installed.append(destination)
    return installed


@contextmanager
def _scratch(directory: Path, prefix: str) -> Iterator[Path]:
    """A path for a temporary file in ``directory`` (same file system as the target, so the
    final rename is atomic), removed with its SQLite side files on exit."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=directory, prefix=prefix) as folder:
        Path(folder).chmod(0o700)
        yield Path(folder) / "database"
