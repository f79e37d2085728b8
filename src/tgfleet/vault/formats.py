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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
import socket
import sqlite3
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from tgfleet.vault.exceptions import (
    AddressError,
    AuthKeyError,
    CorruptSessionError,
    DcIdError,
    ForeignSqliteError,
    ImportTooLargeError,
    NotSqliteError,
    SessionFormatError,
    SessionRowCountError,
    SessionStringError,
    UnknownFormatError,
    UnknownSchemaVersionError,
)

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

AUTH_KEY_BYTES: Final = 256
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_SQLITE_HEADER_BYTES: Final = 100
_UTF8_BOM: Final = b"\xef\xbb\xbf"

MAX_DC_ID: Final = 255  # both string formats store the dc id in one byte
MAX_USER_ID: Final = 2**63 - 1  # SQLite INTEGER is signed 64-bit
MAX_API_ID: Final = 2**31 - 1  # Telegram's api_id is a positive int32

TELETHON_READ_VERSIONS: Final = frozenset({7, 8})
TELETHON_EMIT_VERSION: Final = 7
PYROGRAM_READ_VERSIONS: Final = frozenset({2, 3})
PYROGRAM_EMIT_VERSION: Final = 3

_TELETHON_STRING_VERSION: Final = "1"
_TELETHON_STRING_FORMAT: Final = ">B{}sH256s"
_PYROGRAM_STRING: Final = struct.Struct(">BI?256sQ?")
_PYROGRAM_LEGACY_32: Final = struct.Struct(">B?256sI?")
_PYROGRAM_LEGACY_64: Final = struct.Struct(">B?256sQ?")
# Session strings are told apart by their length without base64 padding; no two collide.
_TELETHON_IPV4_CHARS: Final = 352  # '1' + 351
_TELETHON_IPV6_CHARS: Final = 368  # '1' + 367
_PYROGRAM_CHARS: Final = 362
_PYROGRAM_LEGACY_32_CHARS: Final = 351
_PYROGRAM_LEGACY_64_CHARS: Final = 356
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

# A valid session database is read in a few thousand SQLite VM steps. The budget stops a
# crafted file (a corrupt b-tree, an expensive generated column) from spinning forever.
_PROGRESS_EVERY: Final = 1_000
_PROGRESS_BUDGET: Final = 10_000

# Pyrogram's DataCenter tables (pyrogram/session/internals/data_center.py, 2.0.106).
_PYROGRAM_PROD: Final = {
    1: "149.154.175.53",
    2: "149.154.167.51",
    3: "149.154.175.100",
    4: "149.154.167.91",
    5: "91.108.56.130",
    203: "91.105.192.100",
}
_PYROGRAM_TEST: Final = {1: "149.154.175.10", 2: "149.154.167.40", 3: "149.154.175.117"}
_PROD_PORT: Final = 443
_TEST_PORT: Final = 80
_UNKNOWN_DC_ADDRESS: Final = ("127.0.0.1", 443)

_AUTH_KEY_ID_PREFIX: Final = b"tgfleet/auth-key-id\x00"


class SessionFormat(StrEnum):
    """The session formats tgfleet reads and writes."""

    TELETHON = "telethon"
    PYROGRAM = "pyrogram"
    TELETHON_STRING = "telethon-string"
    PYROGRAM_STRING = "pyrogram-string"


@dataclass(frozen=True, slots=True)
class CanonicalSession:
    """One logged-in Telegram session, whatever format it came in.

    Construction validates every field (raising the specific ``SessionFormatError``) and
    normalises ``address`` to its compressed text form, so an instance can always be
    emitted. The auth key stays out of ``repr``.
    """

    dc_id: int
    address: str
    port: int
    auth_key: bytes = field(repr=False)
    user_id: int | None
    api_id: int | None
    test_mode: bool
    is_bot: bool | None
    source_format: SessionFormat

    def __post_init__(self) -> None:
        _check_auth_key(self.auth_key)
        _check_dc_id(self.dc_id)
        object.__setattr__(self, "address", _check_address(self.address))
        _check_port(self.port)
        _check_optional_id(self.user_id, "user id", MAX_USER_ID)
        _check_optional_id(self.api_id, "api id", MAX_API_ID)
        if not isinstance(self.test_mode, bool) or not isinstance(self.is_bot, bool | None):
            raise CorruptSessionError("test_mode and is_bot must be booleans")
        if not isinstance(self.source_format, SessionFormat):
            raise CorruptSessionError("unknown source format")


@dataclass(frozen=True, slots=True)
class FormatPolicy:
    """What an import accepts. Configuration may add sandbox data-centre ids."""

    allowed_dc_ids: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    max_file_bytes: int = 1024 * 1024


DEFAULT_POLICY: Final = FormatPolicy()


# --- parsing -------------------------------------------------------------------------------


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
    return _parse_string(stripped, policy)


def _parse(data: bytes, policy: FormatPolicy) -> CanonicalSession:
    if len(data) > policy.max_file_bytes:
        raise ImportTooLargeError(
            f"the file is {len(data)} bytes; the limit is {policy.max_file_bytes} bytes "
            "(a session file is normally under 100 KiB)"
        )
    if data.startswith(SQLITE_MAGIC):
        return _parse_sqlite(data, policy)
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
    return _parse_string(text.strip(), policy)


def _parse_string(text: str, policy: FormatPolicy) -> CanonicalSession:
    if not text:
        raise UnknownFormatError("empty: expected a .session file or a string session")
    if any(char.isspace() for char in text):
        raise SessionStringError(
            "the text holds more than one word or line; put exactly one string session in each file"
        )
    core = text.rstrip("=")
    length = len(core)
    if length in (_TELETHON_IPV4_CHARS, _TELETHON_IPV6_CHARS):
        if core[0] != _TELETHON_STRING_VERSION:
            raise SessionStringError(
                f"a {len(text)}-character string looks like a Telethon string session, but "
                "those start with '1' (their format version)"
            )
        raw = _decode_base64(core[1:], padding=len(text) - length)
        return _parse_telethon_string(raw, policy)
    if length in (_PYROGRAM_CHARS, _PYROGRAM_LEGACY_32_CHARS, _PYROGRAM_LEGACY_64_CHARS):
        raw = _decode_base64(core, padding=len(text) - length)
        return _parse_pyrogram_string(raw, policy)
    raise SessionStringError(
        f"a string session of {len(text)} characters matches no known format: Telethon "
        "strings have 353 (IPv4) or 369 (IPv6) characters, Pyrogram strings 362 (legacy "
        "351 or 356); check that it was copied whole"
    )


def _decode_base64(body: str, *, padding: int) -> bytes:
    if not _BASE64URL.fullmatch(body):
        position = next(i for i, char in enumerate(body) if not _BASE64URL.fullmatch(char))
        raise SessionStringError(
            f"character {position + 1} is not URL-safe base64 (A-Z a-z 0-9 - _); "
            "the string was altered or is not a session"
        )
    needed = -len(body) % 4
    if padding not in (0, needed):
        raise SessionStringError(f"wrong base64 padding: {padding} '=' where {needed} fit")
    try:
        return base64.urlsafe_b64decode(body + "=" * needed)
    except binascii.Error:
        raise SessionStringError("the string is not valid base64") from None


def _parse_telethon_string(raw: bytes, policy: FormatPolicy) -> CanonicalSession:
    ip_length = len(raw) - struct.calcsize(_TELETHON_STRING_FORMAT.format(0))
    if ip_length not in (4, 16):
        raise SessionStringError(f"a Telethon string session of {len(raw)} bytes is malformed")
    dc_id, ip, port, auth_key = struct.unpack(_TELETHON_STRING_FORMAT.format(ip_length), raw)
    _check_auth_key(auth_key)
    _check_allowed_dc(dc_id, policy)
    return CanonicalSession(
        dc_id=dc_id,
        address=ipaddress.ip_address(ip).compressed,
        port=port,
        auth_key=auth_key,
        user_id=None,
        api_id=None,
        test_mode=False,
        is_bot=None,
        source_format=SessionFormat.TELETHON_STRING,
    )


def _parse_pyrogram_string(raw: bytes, policy: FormatPolicy) -> CanonicalSession:
    api_id: int
    if len(raw) == _PYROGRAM_STRING.size:
        dc_id, api_id, test_mode, auth_key, user_id, is_bot = _PYROGRAM_STRING.unpack(raw)
    elif len(raw) in (_PYROGRAM_LEGACY_32.size, _PYROGRAM_LEGACY_64.size):
        legacy = (
            _PYROGRAM_LEGACY_32 if len(raw) == _PYROGRAM_LEGACY_32.size else _PYROGRAM_LEGACY_64
        )
        dc_id, test_mode, auth_key, user_id, is_bot = legacy.unpack(raw)
        api_id = 0
    else:
        raise SessionStringError(f"a Pyrogram string session of {len(raw)} bytes is malformed")
    _check_auth_key(auth_key)
    _check_allowed_dc(dc_id, policy)
    address, port = default_address(dc_id, test_mode=test_mode)
    return CanonicalSession(
        dc_id=dc_id,
        address=address,
        port=port,
        auth_key=auth_key,
        user_id=user_id or None,
        api_id=api_id or None,
        test_mode=test_mode,
        is_bot=is_bot if user_id else None,
        source_format=SessionFormat.PYROGRAM_STRING,
    )


def _parse_sqlite(data: bytes, policy: FormatPolicy) -> CanonicalSession:
    if len(data) < _SQLITE_HEADER_BYTES:
        raise CorruptSessionError(
            f"the SQLite file is truncated to {len(data)} bytes (its header alone is 100)"
        )
    image = bytearray(data)
    # Bytes 18 and 19 are 2 in WAL mode, which an in-memory database cannot open; as 1 the
    # same pages read as a rollback-journal database. (Commits still in an absent -wal file
    # are lost either way.)
    if image[18] == 2 or image[19] == 2:
        image[18] = image[19] = 1
    steps = 0

    def budget() -> int:
        nonlocal steps
        steps += 1
        return int(steps > _PROGRESS_BUDGET)

    connection = sqlite3.connect(":memory:")
    # A damaged file can hold invalid UTF-8 anywhere, and sqlite3's default decoding raises
    # UnicodeDecodeError mid-query; replaced characters fail validation like any bad value.
    connection.text_factory = _decode_text
    try:
        # No value in a well-formed file is bigger than the file; this stops a generated
        # column from building a gigabyte blob.
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, max(len(data), 65_536))
        connection.set_progress_handler(budget, _PROGRESS_EVERY)
        connection.deserialize(bytes(image))
        connection.execute("PRAGMA query_only = ON")
        connection.execute("PRAGMA trusted_schema = OFF")
        return _read_session_database(connection, policy)
    except sqlite3.Error as exc:
        raise CorruptSessionError(
            f"the SQLite database is corrupt or truncated ({_shown(str(exc))})"
        ) from None
    except UnicodeDecodeError:
        # sqlite3 decodes SQLite's error messages strictly, and the message for a corrupt
        # schema quotes the corrupt (so perhaps not UTF-8) SQL.
        raise CorruptSessionError("the SQLite database's schema is corrupt") from None
    finally:
        connection.close()


# LIMIT 2: enough to tell "one row" from "several" without reading a stuffed table.
_TELETHON_COLUMNS: Final = frozenset({"dc_id", "server_address", "port", "auth_key"})
_TELETHON_ROW: Final = "SELECT dc_id, server_address, port, auth_key FROM sessions LIMIT 2"
_PYROGRAM_COLUMNS: Final = frozenset({"dc_id", "test_mode", "auth_key", "user_id", "is_bot"})
_PYROGRAM_ROW: Final = (
    "SELECT dc_id, api_id, test_mode, auth_key, user_id, is_bot FROM sessions LIMIT 2"
)
_PYROGRAM_V2_ROW: Final = (  # storage version 2 predates the api_id column
    "SELECT dc_id, NULL, test_mode, auth_key, user_id, is_bot FROM sessions LIMIT 2"
)


def _decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _read_session_database(
    connection: sqlite3.Connection, policy: FormatPolicy
) -> CanonicalSession:
    tables = {
        str(name)
        for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if "sessions" not in tables:
        raise ForeignSqliteError(
            "a SQLite database without a 'sessions' table: not a Telethon or Pyrogram "
            f"session ({_describe_tables(tables)})"
        )
    session_columns = _columns(connection, "sessions")
    version_columns = _columns(connection, "version") if "version" in tables else set()
    if "version" in version_columns and session_columns >= _TELETHON_COLUMNS:
        return _read_telethon(connection, policy)
    if "number" in version_columns and session_columns >= _PYROGRAM_COLUMNS:
        return _read_pyrogram(connection, policy, has_api_id="api_id" in session_columns)
    raise ForeignSqliteError(
        "a SQLite database whose tables match neither the Telethon nor the Pyrogram "
        f"session schema ({_describe_tables(tables)})"
    )


def _read_telethon(connection: sqlite3.Connection, policy: FormatPolicy) -> CanonicalSession:
    version = _schema_version(connection, "SELECT version FROM version LIMIT 2", "Telethon")
    if version not in TELETHON_READ_VERSIONS:
        raise UnknownSchemaVersionError(
            f"Telethon session schema version {_shown(version)} is not supported (tgfleet "
            "reads 7 and 8); open the file once with Telethon 1.x to upgrade it"
        )
    row = _single_session_row(connection, _TELETHON_ROW)
    dc_id, address, port, auth_key = row
    # Checked here, in the order an operator should fix them; the record re-checks.
    key = _check_auth_key(auth_key)
    dc = _check_allowed_dc(dc_id, policy)
    return CanonicalSession(
        dc_id=dc,
        address=_check_address(address),
        port=_check_port(port),
        auth_key=key,
        user_id=None,
        api_id=None,
        test_mode=False,
        is_bot=None,
        source_format=SessionFormat.TELETHON,
    )


def _read_pyrogram(
    connection: sqlite3.Connection, policy: FormatPolicy, *, has_api_id: bool
) -> CanonicalSession:
    version = _schema_version(connection, "SELECT number FROM version LIMIT 2", "Pyrogram")
    if version not in PYROGRAM_READ_VERSIONS:
        raise UnknownSchemaVersionError(
            f"Pyrogram session storage version {_shown(version)} is not supported "
            "(tgfleet reads 2 and 3); open the file once with Pyrogram 2.x to upgrade it"
        )
    if version == 3 and not has_api_id:
        raise CorruptSessionError(
            "the file claims Pyrogram storage version 3 but its sessions table has no api_id"
        )
    row = _single_session_row(connection, _PYROGRAM_ROW if has_api_id else _PYROGRAM_V2_ROW)
    dc_id, api_id, test_mode, auth_key, user_id, is_bot = row
    key = _check_auth_key(auth_key)
    dc = _check_allowed_dc(dc_id, policy)
    in_test_mode = bool(_sqlite_bool(test_mode, "test_mode"))  # NULL: never set, production
    address, port = default_address(dc, test_mode=in_test_mode)
    return CanonicalSession(
        dc_id=dc,
        address=address,
        port=port,
        auth_key=key,
        user_id=_sqlite_optional_id(user_id, "user_id"),
        api_id=_sqlite_optional_id(api_id, "api_id"),
        test_mode=in_test_mode,
        is_bot=_sqlite_bool(is_bot, "is_bot"),
        source_format=SessionFormat.PYROGRAM,
    )


def _columns(connection: sqlite3.Connection, table: str) -> set[str]:
    return {
        str(name)
        for (name,) in connection.execute("SELECT name FROM pragma_table_info(?)", (table,))
    }


def _schema_version(connection: sqlite3.Connection, query: str, library: str) -> object:
    rows = connection.execute(query).fetchall()
    if len(rows) != 1:
        raise UnknownSchemaVersionError(
            f"the {library} version table holds {len(rows)} rows instead of one, so the "
            "schema version is unknown"
        )
    version: object = rows[0][0]
    return version


def _single_session_row(connection: sqlite3.Connection, query: str) -> tuple[object, ...]:
    rows = connection.execute(query).fetchall()
    if not rows:
        raise SessionRowCountError("the sessions table is empty: the session was never logged in")
    if len(rows) > 1:
        raise SessionRowCountError(
            "the sessions table holds several rows; a usable session file has exactly one "
            "(export each login separately)"
        )
    row: tuple[object, ...] = rows[0]
    return row


def _sqlite_bool(value: object, column: str) -> bool | None:
    if value is None:
        return None
    if value in (0, 1) and isinstance(value, int):
        return bool(value)
    raise CorruptSessionError(f"{column} holds {_shown(value)}, not a boolean")


def _sqlite_optional_id(value: object, column: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value or None  # Telegram never issues id 0: Pyrogram's 0 means unknown
    raise CorruptSessionError(f"{column} holds {_shown(value)}, not an integer")


def _describe_tables(tables: set[str]) -> str:
    if not tables:
        return "it has no tables"
    shown = ", ".join(_shown(name, limit=32) for name in sorted(tables)[:6])
    more = f" and {len(tables) - 6} more" if len(tables) > 6 else ""
    return f"tables: {shown}{more}"


def _shown(value: object, *, limit: int = 40) -> str:
    """A short repr for a message: the value comes from an untrusted file."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- validation shared by parsing and CanonicalSession -------------------------------------


def _check_auth_key(value: object) -> bytes:
    if value is None or value in (b"", ""):
        raise AuthKeyError("there is no auth key: the session was never logged in")
    if not isinstance(value, bytes):
        raise AuthKeyError(f"the auth key is stored as {type(value).__name__}, not as bytes")
    if len(value) != AUTH_KEY_BYTES:
        raise AuthKeyError(
            f"the auth key is {len(value)} bytes; a Telegram auth key is exactly 256"
        )
    if not any(value):
        raise AuthKeyError("the auth key is all zeros: the session was never logged in")
    return value


def _check_dc_id(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DcIdError(f"the dc id {_shown(value)} is not an integer")
    if not 1 <= value <= MAX_DC_ID:
        raise DcIdError(f"the dc id {value} is outside 1..{MAX_DC_ID}")
    return value


def _check_allowed_dc(value: object, policy: FormatPolicy) -> int:
    dc_id = _check_dc_id(value)
    if dc_id not in policy.allowed_dc_ids:
        allowed = ", ".join(str(dc) for dc in sorted(policy.allowed_dc_ids))
        raise DcIdError(
            f"dc id {dc_id} is not an allowed data centre (allowed: {allowed}); add it to the "
            "configured sandbox dc ids if it is intended"
        )
    return dc_id


def _check_address(value: object) -> str:
    if not isinstance(value, str):
        raise AddressError(f"the server address {_shown(value)} is not text")
    # Fast path for the common case, a canonical dotted quad (decrypting runs this for
    # every account start): inet_pton is ~20x cheaper than ipaddress. Anything else,
    # including non-canonical IPv4 spellings, takes the full check below.
    try:
        if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value)) == value:
            return value
    except OSError:
        pass
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise AddressError(
            f"the server address {_shown(value)} is not an IPv4 or IPv6 address"
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise AddressError("a scoped IPv6 server address (with '%zone') cannot be stored")
    return address.compressed


def _check_port(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65_535:
        raise AddressError(f"the port {_shown(value)} is not in 1..65535")
    return value


def _check_optional_id(value: object, what: str, maximum: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise CorruptSessionError(f"the {what} {_shown(value)} is outside 1..{maximum}")


# --- emitting ------------------------------------------------------------------------------


def emit(session: CanonicalSession, fmt: SessionFormat) -> bytes:
    """Render ``session`` in ``fmt``: a complete SQLite file, or an ASCII string session.

    Fields ``fmt`` cannot carry are dropped (see the module docstring); for Pyrogram
    formats ``None`` ids become 0 (string) or NULL (file), ``is_bot=None`` becomes
    ``False`` in a string.
    """
    match fmt:
        case SessionFormat.TELETHON_STRING:
            ip = ipaddress.ip_address(session.address).packed
            packed = struct.pack(
                _TELETHON_STRING_FORMAT.format(len(ip)),
                session.dc_id,
                ip,
                session.port,
                session.auth_key,
            )
            return _TELETHON_STRING_VERSION.encode() + base64.urlsafe_b64encode(packed)
        case SessionFormat.PYROGRAM_STRING:
            packed = _PYROGRAM_STRING.pack(
                session.dc_id,
                session.api_id or 0,
                session.test_mode,
                session.auth_key,
                session.user_id or 0,
                bool(session.is_bot),
            )
            return base64.urlsafe_b64encode(packed).rstrip(b"=")
        case SessionFormat.TELETHON:
            return _telethon_database(session)
        case SessionFormat.PYROGRAM:
            return _pyrogram_database(session)


# Telethon 1.45 SQLiteSession._create_table, minus sessions.tmp_auth_key (schema 7).
_TELETHON_TABLES: Final = (
    "create table version (version integer primary key)",
    """create table sessions (
                    dc_id integer primary key,
                    server_address text,
                    port integer,
                    auth_key blob,
                    takeout_id integer
                )""",
    """create table entities (
                    id integer primary key,
                    hash integer not null,
                    username text,
                    phone integer,
                    name text,
                    date integer
                )""",
    """create table sent_files (
                    md5_digest blob,
                    file_size integer,
                    type integer,
                    id integer,
                    hash integer,
                    primary key(md5_digest, file_size, type)
                )""",
    """create table update_state (
                    id integer primary key,
                    pts integer,
                    qts integer,
                    date integer,
                    seq integer
                )""",
)

# Pyrogram 2.0.106 pyrogram/storage/sqlite_storage.py SCHEMA, verbatim.
_PYROGRAM_SCHEMA: Final = """
CREATE TABLE sessions
(
    dc_id     INTEGER PRIMARY KEY,
    api_id    INTEGER,
    test_mode INTEGER,
    auth_key  BLOB,
    date      INTEGER NOT NULL,
    user_id   INTEGER,
    is_bot    INTEGER
);

CREATE TABLE peers
(
    id             INTEGER PRIMARY KEY,
    access_hash    INTEGER,
    type           INTEGER NOT NULL,
    username       TEXT,
    phone_number   TEXT,
    last_update_on INTEGER NOT NULL DEFAULT (CAST(STRFTIME('%s', 'now') AS INTEGER))
);

CREATE TABLE version
(
    number INTEGER PRIMARY KEY
);

CREATE INDEX idx_peers_id ON peers (id);
CREATE INDEX idx_peers_username ON peers (username);
CREATE INDEX idx_peers_phone_number ON peers (phone_number);

CREATE TRIGGER trg_peers_last_update_on
    AFTER UPDATE
    ON peers
BEGIN
    UPDATE peers
    SET last_update_on = CAST(STRFTIME('%s', 'now') AS INTEGER)
    WHERE id = NEW.id;
END;
"""


def _telethon_database(session: CanonicalSession) -> bytes:
    return _build_database(
        ";\n".join(_TELETHON_TABLES),
        [
            ("insert into version values (?)", (TELETHON_EMIT_VERSION,)),
            (
                "insert into sessions values (?, ?, ?, ?, ?)",
                (session.dc_id, session.address, session.port, session.auth_key, None),
            ),
        ],
    )


def _pyrogram_database(session: CanonicalSession) -> bytes:
    is_bot = None if session.is_bot is None else int(session.is_bot)
    return _build_database(
        _PYROGRAM_SCHEMA,
        [
            ("INSERT INTO version VALUES (?)", (PYROGRAM_EMIT_VERSION,)),
            (
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    session.dc_id,
                    session.api_id,
                    int(session.test_mode),
                    session.auth_key,
                    0,  # Pyrogram's "date" (last save); nothing reads it back
                    session.user_id,
                    is_bot,
                ),
            ),
        ],
    )


def _build_database(schema: str, inserts: list[tuple[str, tuple[object, ...]]]) -> bytes:
    connection = sqlite3.connect(":memory:")
    try:
        connection.executescript(schema)
        with connection:
            for sql, parameters in inserts:
                connection.execute(sql, parameters)
        return connection.serialize()
    finally:
        connection.close()


# --- the at-rest record --------------------------------------------------------------------

_RECORD_VERSION: Final = 1
# version, source format, flags, dc id, port
_RECORD_HEAD: Final = struct.Struct(">BBBHH")
_RECORD_USER_ID: Final = struct.Struct(">Q")
_RECORD_API_ID: Final = struct.Struct(">I")
_FORMAT_CODES: Final = {
    SessionFormat.TELETHON: 1,
    SessionFormat.PYROGRAM: 2,
    SessionFormat.TELETHON_STRING: 3,
    SessionFormat.PYROGRAM_STRING: 4,
}
_FORMATS_BY_CODE: Final = {code: fmt for fmt, code in _FORMAT_CODES.items()}
_FLAG_TEST_MODE: Final = 0x01
_FLAG_IPV6: Final = 0x02
_FLAG_USER_ID: Final = 0x04
_FLAG_API_ID: Final = 0x08
_FLAG_IS_BOT_KNOWN: Final = 0x10
_FLAG_IS_BOT: Final = 0x20
_FLAGS_ALL: Final = 0x3F


def to_record(session: CanonicalSession) -> bytes:
    """Serialise the canonical record: what the vault encrypts at rest.

    Layout (big-endian): version 1, source-format code, flags, dc id (H), port (H), the
    packed IP (4 or 16 bytes, per the IPv6 flag), the 256-byte auth key, then the user id
    (Q) and api id (I) when their flags are set. Integrity comes from the AEAD around it.
    """
    ip = ipaddress.ip_address(session.address).packed
    flags = (
        (_FLAG_TEST_MODE if session.test_mode else 0)
        | (_FLAG_IPV6 if len(ip) == 16 else 0)
        | (_FLAG_USER_ID if session.user_id is not None else 0)
        | (_FLAG_API_ID if session.api_id is not None else 0)
        | (_FLAG_IS_BOT_KNOWN if session.is_bot is not None else 0)
        | (_FLAG_IS_BOT if session.is_bot else 0)
    )
    parts = [
        _RECORD_HEAD.pack(
            _RECORD_VERSION,
            _FORMAT_CODES[session.source_format],
            flags,
            session.dc_id,
            session.port,
        ),
        ip,
        session.auth_key,
    ]
    if session.user_id is not None:
        parts.append(_RECORD_USER_ID.pack(session.user_id))
    if session.api_id is not None:
        parts.append(_RECORD_API_ID.pack(session.api_id))
    return b"".join(parts)


def from_record(data: bytes) -> CanonicalSession:
    """Inverse of :func:`to_record`; anything malformed raises ``CorruptSessionError``."""
    if len(data) < _RECORD_HEAD.size:
        raise CorruptSessionError("the stored session record is truncated")
    version, format_code, flags, dc_id, port = _RECORD_HEAD.unpack_from(data)
    if version != _RECORD_VERSION:
        raise CorruptSessionError(f"the stored session record has unknown version {version}")
    source_format = _FORMATS_BY_CODE.get(format_code)
    if source_format is None:
        raise CorruptSessionError(f"the stored session record has unknown format {format_code}")
    if flags & ~_FLAGS_ALL or (flags & _FLAG_IS_BOT and not flags & _FLAG_IS_BOT_KNOWN):
        raise CorruptSessionError("the stored session record has invalid flags")
    ip_length = 16 if flags & _FLAG_IPV6 else 4
    expected = (
        _RECORD_HEAD.size
        + ip_length
        + AUTH_KEY_BYTES
        + (_RECORD_USER_ID.size if flags & _FLAG_USER_ID else 0)
        + (_RECORD_API_ID.size if flags & _FLAG_API_ID else 0)
    )
    if len(data) != expected:
        raise CorruptSessionError(
            f"the stored session record is {len(data)} bytes; its flags say {expected}"
        )
    offset = _RECORD_HEAD.size
    ip = data[offset : offset + ip_length]
    offset += ip_length
    auth_key = data[offset : offset + AUTH_KEY_BYTES]
    offset += AUTH_KEY_BYTES
    user_id: int | None = None
    api_id: int | None = None
    if flags & _FLAG_USER_ID:
        (user_id,) = _RECORD_USER_ID.unpack_from(data, offset)
        offset += _RECORD_USER_ID.size
    if flags & _FLAG_API_ID:
        (api_id,) = _RECORD_API_ID.unpack_from(data, offset)
    try:
        return CanonicalSession(
            dc_id=dc_id,
            address=(
                socket.inet_ntop(socket.AF_INET, ip)
                if ip_length == 4
                else ipaddress.ip_address(ip).compressed
            ),
            port=port,
            auth_key=auth_key,
            user_id=user_id,
            api_id=api_id,
            test_mode=bool(flags & _FLAG_TEST_MODE),
            is_bot=bool(flags & _FLAG_IS_BOT) if flags & _FLAG_IS_BOT_KNOWN else None,
            source_format=source_format,
        )
    except SessionFormatError as exc:
        raise CorruptSessionError(f"the stored session record is invalid: {exc.message}") from None


# --- helpers for the rest of the vault -----------------------------------------------------


def auth_key_fingerprint(auth_key: bytes) -> str:
    """Hex SHA-256 of the auth key under a domain-separation prefix.

    Stored in clear next to the encrypted record so a re-import of the same login is found
    without decrypting anything; the prefix keeps it distinct from any other hash of a key.
    """
    return hashlib.sha256(_AUTH_KEY_ID_PREFIX + auth_key).hexdigest()


def default_address(dc_id: int, *, test_mode: bool) -> tuple[str, int]:
    """The address Pyrogram would connect to for ``dc_id`` (its strings carry none).

    Production DCs use port 443, test DCs port 80, as in Pyrogram's DataCenter table. A dc
    id missing from the table (a sandbox id allowed by configuration) gets the placeholder
    ``127.0.0.1:443``: a loopback address never reaches Telegram by accident, and the
    runtime is expected to supply the sandbox's real address.
    """
    table = _PYROGRAM_TEST if test_mode else _PYROGRAM_PROD
    address = table.get(dc_id)
    if address is None:
        return _UNKNOWN_DC_ADDRESS
    return address, _TEST_PORT if test_mode else _PROD_PORT
