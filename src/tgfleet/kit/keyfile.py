"""What the vault's key file and the audit key file have in common.

Both hold 32-byte keys as base64 in a JSON document ``{"format", "version", "active",
"keys": [...]}`` written 0600, changed under a lock file beside them, with ISO 8601 times;
both take extra keys from a comma-separated setting. Each domain keeps its own format,
checks and messages; the functions here raise the error class the caller names
(``VaultKeyError``, ``AuditKeyError``) so a message reads the same whichever file it is about.

Blocking file I/O: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tgfleet.exceptions import AppError
from tgfleet.kit.files import (
    create_private_file,
    exclusive_lock,
    lock_path_beside,
    write_private_file,
)

KEY_BYTES = 32

_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


def now_in_seconds() -> datetime:
    """The current time in whole seconds: a key file stores seconds, so a key compares equal
    after a reload."""
    return datetime.now(UTC).replace(microsecond=0)


def decode_key(text: str, *, what: str, kind: str, error: type[AppError]) -> bytes:
    """32 key bytes from base64 in either alphabet, padding optional; never echoes ``text``.

    ``what`` names where the text came from and ``kind`` the key, in the message."""
    cleaned = "".join(text.split()).translate(_URLSAFE_TO_STANDARD)
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        key = base64.b64decode(cleaned, validate=True)
    except binascii.Error:
        msg = f"{what} is not base64 (standard or URL-safe) of a {KEY_BYTES}-byte key"
        raise error(msg) from None
    if len(key) != KEY_BYTES:
        msg = (
            f"{what} decodes to {len(key)} bytes; {kind} is exactly {KEY_BYTES} bytes "
            f"(create one with: openssl rand -base64 {KEY_BYTES})"
        )
        raise error(msg)
    return key


def decode_key_list(
    text: str | None, *, setting: str, kind: str, error: type[AppError]
) -> list[bytes]:
    """The keys of a comma-separated setting (previous keys); a trailing comma is harmless."""
    if text is None:
        return []
    entries = [entry.strip() for entry in text.split(",")]
    return [
        decode_key(entry, what=f"{setting} entry {number}", kind=kind, error=error)
        for number, entry in enumerate(entries, start=1)
        if entry
    ]


def parse_time(value: object, *, what: str, error: type[AppError]) -> datetime:
    """A timezone-aware time from its ISO 8601 text in a key file."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    msg = f"{what} must be an ISO 8601 time with a timezone"
    raise error(msg)


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def render_document(
    *, format_name: str, version: int, active_id: str, keys: list[dict[str, Any]]
) -> bytes:
    """A key file's content: the JSON document, indented, with a final newline."""
    document = {"format": format_name, "version": version, "active": active_id, "keys": keys}
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def create_key_file(path: Path, content: bytes, *, what: str, error: type[AppError]) -> bool:
    """Create ``path`` (0600) holding ``content``; False if it exists already (never replaced).

    Another failure raises ``error`` ("cannot create <what> <path>: <reason>")."""
    try:
        create_private_file(path, content)
    except FileExistsError:
        return False
    except OSError as exc:
        msg = f"cannot create {what} {path}: {exc.strerror}"
        raise error(msg) from None
    return True


def replace_key_file(path: Path, content: bytes, *, what: str, error: type[AppError]) -> None:
    """Replace ``path`` atomically (0600) with ``content``; ``error`` if it cannot be written."""
    try:
        write_private_file(path, content)
    except OSError as exc:
        msg = f"cannot write {what} {path}: {exc.strerror}"
        raise error(msg) from None


@contextmanager
def key_file_lock(key_file: Path, *, error: type[AppError]) -> Iterator[None]:
    """Serialise read-modify-write of a key file across processes.

    The key file is replaced by rename on every change, so the lock lives on a separate file
    beside it that is never replaced (nor deleted: deleting a lock file reopens the race).
    """
    lock_path = lock_path_beside(key_file)
    with ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(lock_path))
        except OSError as exc:
            msg = f"cannot lock key file {key_file} ({lock_path}): {exc.strerror}"
            raise error(msg) from None
        yield


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """Whether the configured keys open what one key id protects: ``problem`` is None when
    a record under ``key_id`` was opened (decrypted, or its MAC verified) with them."""

    key_id: str
    #: How many records (secrets, audit records) name this key id.
    records: int
    problem: str | None = None
