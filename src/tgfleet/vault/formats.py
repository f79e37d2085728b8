"""Telegram session formats: sniff, validate, reduce to one canonical record, emit back.

Four formats are read and written:

* Telethon ``.session``: a SQLite database. Schema versions 7 and 8 are read (8 adds
  ``sessions.tmp_auth_key``; Telethon 1.45 writes 8). We *emit* version 7: every Telethon
  1.x reads it, and Telethon 1.45 upgrades it to 8 in place on first open, whereas a
  version-8 file crashes older Telethon releases.
* Pyrogram ``.session``: a SQLite database, storage versions 2 and 3 (2 lacks ``api_id``).
  We emit version 3 with exactly Pyrogram 2.0.106's schema.
* Telethon string: ``'1'`` + URL-safe base64 of ``>B{4|16}sH256s`` (353 or 369 characters).
* Pyrogram string: URL-safe base64 without padding of ``>BI?256sQ?`` (362 characters), or
  one of the legacy layouts ``>B?256sI?`` (351) and ``>B?256sQ?`` (356).

Everything happens in memory. An uploaded database is opened with
``Connection.deserialize`` on a ``:memory:`` connection, read with SELECTs only, and a
database to emit is built in ``:memory:`` and ``serialize``d: an auth key never reaches
disk in plaintext here.

What the formats cannot carry, and how that is represented:

* Telethon formats carry no ``user_id``, ``api_id``, ``test_mode`` or ``is_bot``; they
  parse as ``None``, ``None``, ``False``, ``None``.
* Pyrogram formats carry no address or port; they parse as :func:`default_address`.
* Telegram never issues id 0, so Pyrogram's 0 (a string) or NULL (a file) for ``user_id``
  and ``api_id`` means "unknown" and parses as ``None``; ``None`` emits as 0 in a string
  and NULL in a file. In a Pyrogram *string* ``user_id`` 0 also makes ``is_bot`` unknown
  (``None``): the flag describes a user nobody has identified. ``is_bot=None`` emits as
  ``False`` in a string (there is no third value) and as NULL in a file.

With those rules ``parse(emit(r, f))`` returns ``r`` with ``source_format=f`` and the
fields ``f`` cannot carry replaced as above; the tests compute that expectation.

This module sniffs and dispatches, and is the formats' public entry. The parts live in
``tgfleet.vault.canonical`` (the record every format reduces to, and its checks),
``session_files`` (the SQLite databases), ``session_strings`` (the string sessions) and
``record`` (the binary form the vault encrypts at rest).
"""

from __future__ import annotations

from typing import Final

from tgfleet.vault import session_files, session_strings
from tgfleet.vault.canonical import (
    DEFAULT_POLICY,
    CanonicalSession,
    FormatPolicy,
    SessionFormat,
    auth_key_fingerprint,
    default_address,
)
from tgfleet.vault.exceptions import (
    CorruptSessionError,
    ImportTooLargeError,
    NotSqliteError,
    SessionFormatError,
    SessionStringError,
)
from tgfleet.vault.record import from_record, to_record
from tgfleet.vault.session_files import SQLITE_MAGIC

__all__ = [
    "DEFAULT_POLICY",
    "CanonicalSession",
    "FormatPolicy",
    "SessionFormat",
    "auth_key_fingerprint",
    "default_address",
    "emit",
    "from_record",
    "parse",
    "parse_string",
    "to_record",
]

_UTF8_BOM: Final = b"\xef\xbb\xbf"


def parse(
    data: bytes, policy: FormatPolicy = DEFAULT_POLICY, *, name: str | None = None
) -> CanonicalSession:
    """Sniff ``data`` (a session file's bytes or a string session) and validate it.

    A SQLite header means a Telethon or Pyrogram database, told apart by schema; anything
    else is read as an ASCII string session. ``name`` (a file name) prefixes every error
    message. Only ``SessionFormatError`` subclasses and ``ImportTooLargeError`` are raised,
    whatever the bytes.
    """
    try:
        return _parse(data, policy)
    except (SessionFormatError, ImportTooLargeError) as exc:
        if name is None:
            raise
        raise type(exc)(f"{name}: {exc.message}") from None


def parse_string(text: str, policy: FormatPolicy = DEFAULT_POLICY) -> CanonicalSession:
    """Parse a Telethon or Pyrogram string session (surrounding whitespace is ignored)."""
    stripped = text.strip()
    if len(stripped) > policy.max_file_bytes:
        raise ImportTooLargeError(
            f"a session string of {len(stripped)} characters is over the "
            f"{policy.max_file_bytes}-byte limit"
        )
    return session_strings.parse(stripped, policy)


def _parse(data: bytes, policy: FormatPolicy) -> CanonicalSession:
    if len(data) > policy.max_file_bytes:
        raise ImportTooLargeError(
            f"the file is {len(data)} bytes; the limit is {policy.max_file_bytes} bytes "
            "(a session file is normally under 100 KiB)"
        )
    if data.startswith(SQLITE_MAGIC):
        return session_files.parse(data, policy)
    if 6 <= len(data) < len(SQLITE_MAGIC) and SQLITE_MAGIC.startswith(data):
        raise CorruptSessionError(f"the SQLite file is truncated to {len(data)} bytes")
    if b"\x00" in data:
        # Binary, and not SQLite: no string session contains a NUL byte.
        raise NotSqliteError(
            "not a SQLite database (no 'SQLite format 3' header) and not a text session "
            "string; expected a Telethon or Pyrogram .session file or a string session"
        )
    data = data.removeprefix(_UTF8_BOM)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise SessionStringError(
            f"not a SQLite database, and as a session string it has a non-ASCII byte at "
            f"offset {exc.start}; a string session is URL-safe base64 only"
        ) from None
    return session_strings.parse(text.strip(), policy)


def emit(session: CanonicalSession, fmt: SessionFormat) -> bytes:
    """Render ``session`` in ``fmt``: a complete SQLite file, or an ASCII string session.

    Fields ``fmt`` cannot carry are dropped (see the module docstring); for Pyrogram
    formats ``None`` ids become 0 (string) or NULL (file), ``is_bot=None`` becomes
    ``False`` in a string.
    """
    match fmt:
        case SessionFormat.TELETHON_STRING:
            return session_strings.emit_telethon(session)
        case SessionFormat.PYROGRAM_STRING:
            return session_strings.emit_pyrogram(session)
        case SessionFormat.TELETHON:
            return session_files.emit_telethon(session)
        case SessionFormat.PYROGRAM:
            return session_files.emit_pyrogram(session)
