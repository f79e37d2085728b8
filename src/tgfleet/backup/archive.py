"""The backup file: a POSIX tar archive with a manifest and the database, nothing else
unless keys were asked for explicitly.

Members, in this order::

    manifest.json        what the backup holds and which keys it needs (never key material)
    database.sqlite      an online copy (SQLite's backup API), or
    database.pgdump      ``pg_dump -Fc`` output
    keys/<name>          only with ``--include-keys``: the key files as they were

A plain tar so an operator can read it with standard tools (``tar -xOf FILE
database.pgdump | pg_restore ...``). The manifest carries the database member's SHA-256 and
size, so a damaged or truncated file is refused before anything is restored. The file is
written beside its destination under a temporary name (0600) and renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from tgfleet.backup.exceptions import BackupFileError
from tgfleet.kit.files import fsync_dir

FORMAT = "tgfleet-backup"
VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database.sqlite"
PGDUMP_MEMBER = "database.pgdump"
KEYS_PREFIX = "keys/"
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class KeyUse:
    """A key id a backup's records need, and how many records need it."""

    id: str
    records: int


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a backup holds. Key ids are fingerprints (a hash of the material), never keys."""

    created_at: str
    tgfleet_version: str
    backend: str
    schema_revision: str | None
    database_member: str
    database_sha256: str
    database_bytes: int
    vault_keys: list[KeyUse]
    audit_keys: list[KeyUse]
    #: Where the keys lived on the host that took the backup (paths or variable names).
    key_sources: list[str]
    includes_keys: bool = False

    def to_json(self) -> bytes:
        document = {"format": FORMAT, "version": VERSION, **asdict(self)}
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BackupFileError("the backup's manifest is not valid JSON") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise BackupFileError(
                f'not a tgfleet backup (its manifest has no "format": "{FORMAT}")'
            )
        if document.get("version") != VERSION:
            msg = (
                f"backup format version {document.get('version')!r} is not supported "
                f"(this tgfleet reads {VERSION})"
            )
            raise BackupFileError(msg)
        try:
            return cls(
                created_at=str(document["created_at"]),
                tgfleet_version=str(document["tgfleet_version"]),
                backend=str(document["backend"]),
                schema_revision=document["schema_revision"],
                database_member=str(document["database_member"]),
                database_sha256=str(document["database_sha256"]),
                database_bytes=int(document["database_bytes"]),
                vault_keys=[
                    KeyUse(str(k["id"]), int(k["records"])) for k in document["vault_keys"]
                ],
                audit_keys=[
                    KeyUse(str(k["id"]), int(k["records"])) for k in document["audit_keys"]
                ],
                key_sources=[str(s) for s in document["key_sources"]],
                includes_keys=bool(document["includes_keys"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupFileError(f"the backup's manifest is incomplete ({exc!r})") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _add(archive: tarfile.TarFile, name: str, data: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    archive.addfile(info, data)


def write(
    destination: Path,
    manifest: Manifest,
    database: Path,
    keys: Mapping[str, bytes] | None = None,
    *,
    force: bool,
) -> Path:
    """Write the backup to a temporary file beside ``destination`` (0600, fsynced) and return
    its path; ``publish`` renames it into place once the backup was audited."""
    temporary = destination.with_name(f".{destination.name}.partial-{os.getpid()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
                raw = manifest.to_json()
                _add(archive, MANIFEST, io.BytesIO(raw), len(raw))
                with database.open("rb") as data:
                    _add(archive, manifest.database_member, data, database.stat().st_size)
                for name, content in (keys or {}).items():
                    _add(archive, KEYS_PREFIX + name, io.BytesIO(content), len(content))
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if destination.exists() and not force:
        temporary.unlink(missing_ok=True)
        raise BackupFileError(f"{destination} exists; pass --force to overwrite it")
    return temporary


def publish(temporary: Path, destination: Path) -> None:
    temporary.replace(destination)
    fsync_dir(destination.parent)


@contextmanager
def opened(path: Path) -> Iterator[tuple[tarfile.TarFile, Manifest]]:
    """The archive and its manifest; a file that is not a backup is a BackupFileError."""
    try:
        archive = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise BackupFileError(f"{path} does not exist") from None
    except (tarfile.TarError, OSError) as exc:
        raise BackupFileError(f"{path} is not a tgfleet backup, or is damaged ({exc})") from None
    try:
        raw = _member_bytes(archive, MANIFEST, path)
        yield archive, Manifest.from_json(raw)
    finally:
        archive.close()


def _member(archive: tarfile.TarFile, name: str, path: Path) -> tarfile.TarInfo:
    try:
        info = archive.getmember(name)
    except KeyError:
        raise BackupFileError(f"{path} has no {name}: not a tgfleet backup, or truncated") from None
    except (tarfile.TarError, OSError) as exc:
        raise BackupFileError(f"{path} is damaged or truncated ({exc})") from None
    if not info.isfile():
        raise BackupFileError(f"{path}: {name} is not a regular file")
    return info


def _content(archive: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    source = archive.extractfile(info)
    if source is None:  # only for members that are not regular files, refused by _member
        raise BackupFileError(f"{info.name} has no content")
    return source


def _member_bytes(archive: tarfile.TarFile, name: str, path: Path) -> bytes:
    info = _member(archive, name, path)
    try:
        return _content(archive, info).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BackupFileError(f"{path} is damaged or truncated ({exc})") from None


def extract_database(
    archive: tarfile.TarFile, manifest: Manifest, path: Path, target: Path | None
) -> None:
    """Copy the database member to ``target`` (0600, created, never followed), or only read
    it when ``target`` is None, checking its size and SHA-256 against the manifest; a
    mismatch removes ``target``."""
    info = _member(archive, manifest.database_member, path)
    digest = hashlib.sha256()
    size = 0
    with ExitStack() as stack:
        out: IO[bytes] | None = None
        if target is not None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            out = stack.enter_context(os.fdopen(os.open(target, flags, 0o600), "wb"))
        try:
            source = _content(archive, info)
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if out is not None:
                    out.write(chunk)
            if out is not None:
                out.flush()
                os.fsync(out.fileno())
            if size != manifest.database_bytes or digest.hexdigest() != manifest.database_sha256:
                msg = (
                    f"{path} is damaged or truncated: its database holds {size} bytes with "
                    f"SHA-256 {digest.hexdigest()[:16]}…, the manifest says "
                    f"{manifest.database_bytes} bytes with {manifest.database_sha256[:16]}…"
                )
                raise BackupFileError(msg)  # noqa: TRY301 - the handlers below remove target
        except (tarfile.TarError, OSError, EOFError) as exc:
            _remove(target)
            raise BackupFileError(f"{path} is damaged or truncated ({exc})") from None
        except BaseException:
            _remove(target)
            raise


def _remove(target: Path | None) -> None:
    if target is not None:
        target.unlink(missing_ok=True)


def included_keys(archive: tarfile.TarFile, path: Path) -> dict[str, bytes]:
    """The key files a backup taken with ``--include-keys`` holds, by name."""
    names = [m.name for m in archive.getmembers() if m.name.startswith(KEYS_PREFIX)]
    return {name.removeprefix(KEYS_PREFIX): _member_bytes(archive, name, path) for name in names}
