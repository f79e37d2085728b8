"""Session files: Telethon's and Pyrogram's ``.session`` SQLite databases, read and written
in memory.

An uploaded database is opened with ``Connection.deserialize`` on a ``:memory:`` connection
and read with SELECTs only, under a step budget and a length limit; a database to emit is
built in ``:memory:`` and ``serialize``d, so an auth key never reaches disk in plaintext here.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from tgfleet.vault.canonical import (
    CanonicalSession,
    FormatPolicy,
    SessionFormat,
    check_address,
    check_allowed_dc,
    check_auth_key,
    check_port,
    default_address,
    shown,
)
from tgfleet.vault.exceptions import (
    CorruptSessionError,
    ForeignSqliteError,
    SessionRowCountError,
    UnknownSchemaVersionError,
)

SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_SQLITE_HEADER_BYTES: Final = 100

TELETHON_READ_VERSIONS: Final = frozenset({7, 8})
TELETHON_EMIT_VERSION: Final = 7
PYROGRAM_READ_VERSIONS: Final = frozenset({2, 3})
PYROGRAM_EMIT_VERSION: Final = 3

# A valid session database is read in a few thousand SQLite VM steps. The budget stops a
# crafted file (a corrupt b-tree, an expensive generated column) from spinning forever.
_PROGRESS_EVERY: Final = 1_000
_PROGRESS_BUDGET: Final = 10_000


def parse(data: bytes, policy: FormatPolicy) -> CanonicalSession:
    """A Telethon or Pyrogram session database (``data`` starts with ``SQLITE_MAGIC``)."""
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
            f"the SQLite database is corrupt or truncated ({shown(str(exc))})"
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
            f"Telethon session schema version {shown(version)} is not supported (tgfleet "
            "reads 7 and 8); open the file once with Telethon 1.x to upgrade it"
        )
    row = _single_session_row(connection, _TELETHON_ROW)
    dc_id, address, port, auth_key = row
    # Checked here, in the order an operator should fix them; the record re-checks.
    key = check_auth_key(auth_key)
    dc = check_allowed_dc(dc_id, policy)
    return CanonicalSession(
        dc_id=dc,
        address=check_address(address),
        port=check_port(port),
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
            f"Pyrogram session storage version {shown(version)} is not supported "
            "(tgfleet reads 2 and 3); open the file once with Pyrogram 2.x to upgrade it"
        )
    if version == 3 and not has_api_id:
        raise CorruptSessionError(
            "the file claims Pyrogram storage version 3 but its sessions table has no api_id"
        )
    row = _single_session_row(connection, _PYROGRAM_ROW if has_api_id else _PYROGRAM_V2_ROW)
    dc_id, api_id, test_mode, auth_key, user_id, is_bot = row
    key = check_auth_key(auth_key)
    dc = check_allowed_dc(dc_id, policy)
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
    raise CorruptSessionError(f"{column} holds {shown(value)}, not a boolean")


def _sqlite_optional_id(value: object, column: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value or None  # Telegram never issues id 0: Pyrogram's 0 means unknown
    raise CorruptSessionError(f"{column} holds {shown(value)}, not an integer")


def _describe_tables(tables: set[str]) -> str:
    if not tables:
        return "it has no tables"
    listed = ", ".join(shown(name, limit=32) for name in sorted(tables)[:6])
    more = f" and {len(tables) - 6} more" if len(tables) > 6 else ""
    return f"tables: {listed}{more}"


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


def emit_telethon(session: CanonicalSession) -> bytes:
    """A Telethon ``.session`` file, schema version 7."""
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


def emit_pyrogram(session: CanonicalSession) -> bytes:
    """A Pyrogram ``.session`` file, storage version 3 (``None`` ids and ``is_bot`` are NULL)."""
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
