"""Session formats against the real libraries: Telethon 1.45 and Pyrogram 2.0.106.

Inputs are produced by the libraries themselves (files in tmp_path, strings from their
exporters), and everything we emit is read back by them. The libraries' storage methods
are unannotated, hence the ``no-untyped-call`` ignores; Telethon ships no type
information at all.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import sqlite3
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrogram.session.internals.data_center import DataCenter
from pyrogram.storage.file_storage import FileStorage
from pyrogram.storage.memory_storage import MemoryStorage
from telethon.crypto import AuthKey  # type: ignore[import-untyped, unused-ignore]
from telethon.sessions import (  # type: ignore[import-untyped, unused-ignore]
    SQLiteSession,
    StringSession,
)

from tests.vault.test_archive import damage
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
from tgfleet.vault.formats import (
    CanonicalSession,
    FormatPolicy,
    SessionFormat,
    auth_key_fingerprint,
    default_address,
    emit,
    from_record,
    parse,
    parse_string,
    to_record,
)

KEY = hashlib.shake_256(b"tgfleet test auth key").digest(256)
OTHER_KEY = hashlib.shake_256(b"another auth key").digest(256)
API_ID = 94575
USER_ID = 5_123_456_789
# Every dc id a string can carry, so round trips are not limited by the default policy.
ANY_DC = FormatPolicy(allowed_dc_ids=frozenset(range(1, 256)))

TELETHON_FORMATS = (SessionFormat.TELETHON, SessionFormat.TELETHON_STRING)
PYROGRAM_FORMATS = (SessionFormat.PYROGRAM, SessionFormat.PYROGRAM_STRING)


def record(**changes: object) -> CanonicalSession:
    """A complete record (every field known); ``changes`` override fields."""
    base = CanonicalSession(
        dc_id=2,
        address="149.154.167.51",
        port=443,
        auth_key=KEY,
        user_id=USER_ID,
        api_id=API_ID,
        test_mode=False,
        is_bot=False,
        source_format=SessionFormat.PYROGRAM,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def expected_after(session: CanonicalSession, fmt: SessionFormat) -> CanonicalSession:
    """What ``parse(emit(session, fmt))`` must return: the round-trip contract.

    Telethon formats drop user_id, api_id, test_mode and is_bot; Pyrogram formats drop the
    address (replaced by Pyrogram's table); a Pyrogram string cannot say "is_bot unknown"
    for a known user (it becomes False) and knows no is_bot without a user id.
    """
    if fmt in TELETHON_FORMATS:
        return dataclasses.replace(
            session, source_format=fmt, user_id=None, api_id=None, test_mode=False, is_bot=None
        )
    address, port = default_address(session.dc_id, test_mode=session.test_mode)
    is_bot = session.is_bot
    if fmt is SessionFormat.PYROGRAM_STRING:
        is_bot = None if session.user_id is None else bool(session.is_bot)
    return dataclasses.replace(
        session, source_format=fmt, address=address, port=port, is_bot=is_bot
    )


def altered(database: bytes, *statements: str) -> bytes:
    """Run SQL on an in-memory copy of a database file and return the new file bytes."""
    connection = sqlite3.connect(":memory:")
    try:
        connection.deserialize(database)
        with connection:
            for statement in statements:
                connection.execute(statement)
        return connection.serialize()
    finally:
        connection.close()


def raw_database(*statements: str) -> bytes:
    """A fresh SQLite file built from ``statements``."""
    connection = sqlite3.connect(":memory:")
    try:
        for statement in statements:
            connection.execute(statement)
        return connection.serialize()
    finally:
        connection.close()


# --- sessions made by the libraries themselves -----------------------------------------


def telethon_file(
    tmp_path: Path, *, dc_id: int = 2, address: str = "149.154.167.51", port: int = 443
) -> bytes:
    """A Telethon .session file as Telethon 1.45 writes it (schema version 8)."""
    session = SQLiteSession(str(tmp_path / "telethon"))
    session.set_dc(dc_id, address, port)
    session.auth_key = AuthKey(data=KEY)
    session.save()
    session.close()
    return (tmp_path / "telethon.session").read_bytes()


def telethon_string(*, dc_id: int = 2, address: str = "149.154.167.51", port: int = 443) -> str:
    session = StringSession()
    session.set_dc(dc_id, address, port)
    session.auth_key = AuthKey(data=KEY)
    text: str = session.save()
    return text


async def fill_pyrogram(
    storage: FileStorage | MemoryStorage, *, test_mode: bool, is_bot: bool
) -> None:
    await storage.dc_id(2)
    await storage.api_id(API_ID)
    await storage.test_mode(test_mode)
    await storage.auth_key(KEY)
    await storage.user_id(USER_ID)
    await storage.is_bot(is_bot)


async def pyrogram_file(tmp_path: Path, *, test_mode: bool = False, is_bot: bool = False) -> bytes:
    """A Pyrogram .session file as Pyrogram 2.0.106's FileStorage writes it."""
    storage = FileStorage("pyrogram", tmp_path)
    await storage.open()  # type: ignore[no-untyped-call]
    await fill_pyrogram(storage, test_mode=test_mode, is_bot=is_bot)
    await storage.save()  # type: ignore[no-untyped-call]
    await storage.close()  # type: ignore[no-untyped-call]
    return (tmp_path / "pyrogram.session").read_bytes()


async def pyrogram_string(*, test_mode: bool = False, is_bot: bool = False) -> str:
    storage = MemoryStorage("pyrogram")
    await storage.open()  # type: ignore[no-untyped-call]
    await fill_pyrogram(storage, test_mode=test_mode, is_bot=is_bot)
    text: str = await storage.export_session_string()  # type: ignore[no-untyped-call]
    await storage.close()  # type: ignore[no-untyped-call]
    return text


def pyrogram_legacy_string(layout: str, user_id: int) -> str:
    """An old Pyrogram string, packed as Pyrogram < 2 did (``Storage.OLD_*`` layouts)."""
    packed = struct.pack(layout, 2, False, KEY, user_id, True)
    return base64.urlsafe_b64encode(packed).decode().rstrip("=")


async def pyrogram_reads(storage: FileStorage | MemoryStorage) -> dict[str, object]:
    """What Pyrogram itself reads back from an opened storage."""
    values: dict[str, object] = {
        "dc_id": await storage.dc_id(),
        "api_id": await storage.api_id(),
        "test_mode": bool(await storage.test_mode()),
        "auth_key": await storage.auth_key(),
        "user_id": await storage.user_id(),
        "is_bot": await storage.is_bot(),
    }
    await storage.close()  # type: ignore[no-untyped-call]
    return values


def pyrogram_fields(written: CanonicalSession) -> dict[str, object]:
    """What `pyrogram_reads` must find in a storage ``written`` was emitted to."""
    fields = ("dc_id", "api_id", "test_mode", "auth_key", "user_id", "is_bot")
    return {name: getattr(written, name) for name in fields}


# --- parsing what the libraries produce ------------------------------------------------


class TestParseLibraryOutput:
    def test_telethon_file(self, tmp_path: Path) -> None:
        """A Telethon 1.45 file (schema 8) gives dc, address, port and key; no user id."""
        parsed = parse(telethon_file(tmp_path))
        assert parsed == record(
            user_id=None, api_id=None, is_bot=None, source_format=SessionFormat.TELETHON
        )

    def test_telethon_file_with_ipv6_address(self, tmp_path: Path) -> None:
        """An IPv6 server address is read and normalised to its compressed form."""
        parsed = parse(telethon_file(tmp_path, dc_id=4, address="2001:067c:04e8:f004::a"))
        assert (parsed.dc_id, parsed.address) == (4, "2001:67c:4e8:f004::a")

    def test_telethon_string_ipv4_and_ipv6(self) -> None:
        """Telethon's StringSession output parses for both address families."""
        for address in ("149.154.167.51", "2001:67c:4e8:f002::a"):
            text = telethon_string(address=address, port=8443)
            parsed = parse_string(text)
            assert (parsed.address, parsed.port, parsed.auth_key) == (address, 8443, KEY)
            assert parsed.source_format is SessionFormat.TELETHON_STRING
            assert parsed.user_id is None

    async def test_pyrogram_file(self, tmp_path: Path) -> None:
        """A Pyrogram file gives api id, user id, is_bot and test mode, and its DC's address."""
        parsed = parse(await pyrogram_file(tmp_path, is_bot=True))
        assert parsed == record(is_bot=True, source_format=SessionFormat.PYROGRAM)

    async def test_pyrogram_file_in_test_mode(self, tmp_path: Path) -> None:
        """A test-mode Pyrogram session gets the test DC's address and port 80."""
        parsed = parse(await pyrogram_file(tmp_path, test_mode=True))
        assert (parsed.test_mode, parsed.address, parsed.port) == (True, "149.154.167.40", 80)

    async def test_fresh_pyrogram_file_has_no_key(self, tmp_path: Path) -> None:
        """A Pyrogram file that never logged in (auth_key NULL) is refused as such."""
        storage = FileStorage("fresh", tmp_path)
        await storage.open()  # type: ignore[no-untyped-call]
        await storage.close()  # type: ignore[no-untyped-call]
        with pytest.raises(AuthKeyError, match=r"^fresh\.session: there is no auth key"):
            parse((tmp_path / "fresh.session").read_bytes(), name="fresh.session")

    def test_fresh_telethon_file_has_no_key(self, tmp_path: Path) -> None:
        """A Telethon file saved before login (auth_key b'') is refused as never logged in."""
        session = SQLiteSession(str(tmp_path / "fresh"))
        session.save()
        session.close()
        with pytest.raises(AuthKeyError, match="never logged in"):
            parse((tmp_path / "fresh.session").read_bytes())

    async def test_pyrogram_string(self) -> None:
        """Pyrogram's export_session_string (362 characters) parses to the full record."""
        text = await pyrogram_string(test_mode=True, is_bot=True)
        assert len(text) == 362
        parsed = parse(text.encode())
        assert parsed == record(
            test_mode=True,
            is_bot=True,
            address="149.154.167.40",
            port=80,
            source_format=SessionFormat.PYROGRAM_STRING,
        )

    @pytest.mark.parametrize(
        ("layout", "length", "user_id"),
        [(">B?256sI?", 351, 123_456_789), (">B?256sQ?", 356, USER_ID)],
    )
    async def test_pyrogram_legacy_strings(self, layout: str, length: int, user_id: int) -> None:
        """Legacy 351/356-character strings read the same as Pyrogram itself reads them."""
        text = pyrogram_legacy_string(layout, user_id)
        assert len(text) == length
        parsed = parse_string(text)
        assert (parsed.dc_id, parsed.user_id, parsed.is_bot, parsed.api_id) == (
            2,
            user_id,
            True,
            None,
        )
        pyrogram = await pyrogram_reads(await _opened(MemoryStorage("legacy", text)))
        assert pyrogram["user_id"] == parsed.user_id
        assert pyrogram["auth_key"] == parsed.auth_key

    def test_string_with_surrounding_whitespace_and_bom(self) -> None:
        """A string pasted into a text file (BOM, trailing newline) still parses."""
        text = telethon_string()
        assert parse(b"\xef\xbb\xbf  " + text.encode() + b"\r\n").auth_key == KEY

    def test_telethon_string_without_padding(self) -> None:
        """A Telethon string whose '=' padding was lost still parses."""
        text = telethon_string()
        assert text.endswith("=")
        assert parse_string(text.rstrip("=")).auth_key == KEY

    def test_wal_mode_file(self, tmp_path: Path) -> None:
        """A database left in WAL mode (header bytes 18/19 = 2) is read in memory."""
        path = tmp_path / "wal.session"
        path.write_bytes(emit(record(), SessionFormat.TELETHON))
        connection = sqlite3.connect(path)
        assert connection.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
        connection.close()
        data = path.read_bytes()
        assert (data[18], data[19]) == (2, 2)
        assert parse(data).auth_key == KEY

    async def test_pyrogram_storage_version_2(self, tmp_path: Path) -> None:
        """A version-2 Pyrogram file (no api_id column) parses with api_id None."""
        data = altered(
            await pyrogram_file(tmp_path),
            "ALTER TABLE sessions DROP COLUMN api_id",
            "UPDATE version SET number = 2",
        )
        parsed = parse(data)
        assert (parsed.api_id, parsed.user_id) == (None, USER_ID)


# --- emitting, and the libraries reading what we emit -----------------------------------


class TestEmit:
    def test_telethon_string_is_what_telethon_writes(self) -> None:
        """Our Telethon string is byte-for-byte StringSession.save() for the same session."""
        assert emit(record(), SessionFormat.TELETHON_STRING).decode() == telethon_string()

    def test_telethon_reads_our_string(self) -> None:
        """StringSession(ours) has our dc, address, port and key (IPv4 and IPv6)."""
        for address in ("149.154.167.51", "2001:67c:4e8:f002::a"):
            text = emit(record(address=address, port=5222), SessionFormat.TELETHON_STRING)
            session = StringSession(text.decode())
            assert (session.dc_id, session.server_address, session.port) == (2, address, 5222)
            assert session.auth_key.key == KEY

    def test_telethon_reads_our_file(self, tmp_path: Path) -> None:
        """SQLiteSession opens our schema-7 file, reads it, and upgrades it to its own 8."""
        path = tmp_path / "ours.session"
        path.write_bytes(emit(record(address="91.108.56.130", port=443), SessionFormat.TELETHON))
        session = SQLiteSession(str(path))
        assert (session.dc_id, session.server_address, session.port) == (2, "91.108.56.130", 443)
        assert session.auth_key.key == KEY
        session.close()
        upgraded = path.read_bytes()
        assert _version(upgraded, "version") == 8
        assert parse(upgraded).auth_key == KEY

    async def test_pyrogram_string_is_what_pyrogram_writes(self) -> None:
        """Our Pyrogram string equals export_session_string() for the same values."""
        ours = emit(record(is_bot=True, test_mode=True), SessionFormat.PYROGRAM_STRING)
        assert ours.decode() == await pyrogram_string(test_mode=True, is_bot=True)

    async def test_pyrogram_reads_our_string(self) -> None:
        """MemoryStorage(session_string=ours) reads back every field we wrote."""
        written = record(dc_id=4, is_bot=True)
        ours = emit(written, SessionFormat.PYROGRAM_STRING).decode()
        pyrogram = await pyrogram_reads(await _opened(MemoryStorage("ours", ours)))
        assert pyrogram == pyrogram_fields(written)
        assert (pyrogram["dc_id"], pyrogram["is_bot"]) == (4, True)

    async def test_pyrogram_reads_our_file(self, tmp_path: Path) -> None:
        """FileStorage on our emitted file reads back every field we wrote."""
        written = record(dc_id=5, test_mode=True)
        (tmp_path / "ours.session").write_bytes(emit(written, SessionFormat.PYROGRAM))
        pyrogram = await pyrogram_reads(await _opened(FileStorage("ours", tmp_path)))
        assert pyrogram == pyrogram_fields(written)
        assert (pyrogram["dc_id"], pyrogram["test_mode"]) == (5, True)

    async def test_pyrogram_file_schema_matches_pyrogram(self, tmp_path: Path) -> None:
        """Our Pyrogram file has exactly the schema objects Pyrogram creates."""
        theirs = await pyrogram_file(tmp_path)
        ours = emit(record(), SessionFormat.PYROGRAM)
        assert _schema(ours) == _schema(theirs)
        assert _version(ours, "number") == 3

    def test_telethon_file_schema_is_telethon_7(self, tmp_path: Path) -> None:
        """Our Telethon file is Telethon's schema without the version-8 tmp_auth_key column."""
        theirs = altered(telethon_file(tmp_path), "ALTER TABLE sessions DROP COLUMN tmp_auth_key")
        ours = emit(record(), SessionFormat.TELETHON)
        assert _columns(ours) == _columns(theirs)
        assert _version(ours, "version") == 7

    def test_telethon_source_emits_pyrogram_with_unknown_ids(self) -> None:
        """A Telethon record has no api/user id: the Pyrogram string carries 0 for both."""
        telethon = parse_string(telethon_string())
        raw = base64.urlsafe_b64decode(emit(telethon, SessionFormat.PYROGRAM_STRING) + b"==")
        _, api_id, _, _, user_id, is_bot = struct.unpack(">BI?256sQ?", raw)
        assert (api_id, user_id, is_bot) == (0, 0, False)
        assert parse(emit(telethon, SessionFormat.PYROGRAM_STRING)).user_id is None


SESSIONS = st.builds(
    CanonicalSession,
    dc_id=st.integers(1, 255),
    address=st.ip_addresses().map(str),
    port=st.integers(1, 65_535),
    auth_key=st.binary(min_size=256, max_size=256).filter(any),
    user_id=st.none() | st.integers(1, 2**63 - 1),
    api_id=st.none() | st.integers(1, 2**31 - 1),
    test_mode=st.booleans(),
    is_bot=st.none() | st.booleans(),
    source_format=st.sampled_from(SessionFormat),
)


class TestRoundTrip:
    @pytest.mark.parametrize("fmt", list(SessionFormat))
    @pytest.mark.parametrize(
        "session",
        [
            record(),
            record(user_id=None, api_id=None, is_bot=None),
            record(address="2001:b28:f23f:f005::a", dc_id=5, test_mode=True, is_bot=True),
        ],
        ids=["complete", "unknown-ids", "ipv6-test-bot"],
    )
    def test_emit_then_parse(self, session: CanonicalSession, fmt: SessionFormat) -> None:
        """parse(emit(r, f)) is r except for what f cannot carry (expected_after)."""
        assert parse(emit(session, fmt)) == expected_after(session, fmt)

    @settings(max_examples=200, deadline=None)
    @given(session=SESSIONS, fmt=st.sampled_from(SessionFormat))
    def test_any_record_survives_any_format(
        self, session: CanonicalSession, fmt: SessionFormat
    ) -> None:
        """Property: every valid record round-trips through every format per the contract."""
        assert parse(emit(session, fmt), ANY_DC) == expected_after(session, fmt)

    @settings(max_examples=200, deadline=None)
    @given(session=SESSIONS)
    def test_any_record_survives_the_vault_record(self, session: CanonicalSession) -> None:
        """Property: from_record(to_record(r)) == r, every field included."""
        assert from_record(to_record(session)) == session


# --- damaged input never escapes as anything but a format error -------------------------

VALID_INPUTS = {fmt.value: emit(record(), fmt) for fmt in SessionFormat} | {
    # What Telethon 1.45 does to a schema-7 file on open.
    "telethon-8": altered(
        emit(record(), SessionFormat.TELETHON),
        "alter table sessions add column tmp_auth_key blob",
        "update version set version = 8",
    ),
}


def assert_parses_or_refuses(data: bytes) -> None:
    """``parse`` either refuses with a format error or returns a coherent record.

    No format has a checksum, so a change in the auth key or an id is a different valid
    session; what matters is that nothing but a format error escapes.
    """
    try:
        parsed = parse(data, ANY_DC)
    except (SessionFormatError, ImportTooLargeError):
        return
    assert expected_after(parsed, parsed.source_format) == parsed
    assert parse(emit(parsed, parsed.source_format), ANY_DC) == parsed


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A valid input with one byte flipped (biased to the SQLite header) or truncated."""
    data = VALID_INPUTS[draw(st.sampled_from(sorted(VALID_INPUTS)))]
    if draw(st.booleans()):
        return data[: draw(st.integers(0, len(data) - 1))]
    position = draw(st.integers(0, min(len(data), 100) - 1) | st.integers(0, len(data) - 1))
    flipped = data[position] ^ draw(st.integers(1, 255))
    return data[:position] + bytes([flipped]) + data[position + 1 :]


class TestDamagedInput:
    @settings(max_examples=400, deadline=None)
    @given(data=damaged())
    def test_flipped_or_truncated_input(self, data: bytes) -> None:
        """Property: one flipped byte or a truncation gives a format error or a valid record."""
        assert_parses_or_refuses(data)

    @settings(max_examples=200, deadline=None)
    @given(
        data=st.binary(max_size=2048) | st.binary(max_size=2048).map(b"SQLite format 3\0".__add__)
    )
    def test_arbitrary_bytes(self, data: bytes) -> None:
        """Property: arbitrary bytes, with or without a SQLite header, never crash parse."""
        assert_parses_or_refuses(data)

    @pytest.mark.parametrize("fmt", [SessionFormat.TELETHON_STRING, SessionFormat.PYROGRAM_STRING])
    def test_every_character_of_a_string(self, fmt: SessionFormat) -> None:
        """Each position of a string, changed three ways, and each truncation is handled."""
        text = VALID_INPUTS[fmt.value]
        for position in range(len(text)):
            for mask in (0x01, 0x20, 0x80):
                flipped = text[position] ^ mask
                assert_parses_or_refuses(text[:position] + bytes([flipped]) + text[position + 1 :])
            assert_parses_or_refuses(text[:position])

    @pytest.mark.parametrize("source", ["telethon", "telethon-8", "pyrogram"])
    def test_every_byte_of_a_database_header(self, source: str) -> None:
        """Each byte of the 100-byte SQLite header, flipped, and each page-size truncation."""
        data = VALID_INPUTS[source]
        for position in range(100):
            for mask in (0x01, 0xFF):
                flipped = data[position] ^ mask
                assert_parses_or_refuses(data[:position] + bytes([flipped]) + data[position + 1 :])
        for length in range(0, len(data), 512):
            assert_parses_or_refuses(data[:length])

    @settings(max_examples=200, deadline=None)
    @given(position=st.integers(0, 278), mask=st.integers(1, 255), cut=st.booleans())
    def test_damaged_vault_record(self, position: int, mask: int, cut: bool) -> None:
        """Property: a damaged stored record is CorruptSessionError or a valid record."""
        try:
            from_record(damage(to_record(record()), position, mask, cut=cut))
        except CorruptSessionError:
            return


# --- every refusal, with a message an operator can act on -------------------------------


class TestRefusals:
    def test_file_too_large(self) -> None:
        """Input over the policy's size limit is ImportTooLargeError (413), naming the limit."""
        with pytest.raises(ImportTooLargeError, match=r"^big\.session: .*limit is 1000 bytes"):
            parse(b"x" * 1001, FormatPolicy(max_file_bytes=1000), name="big.session")

    def test_empty(self) -> None:
        """An empty or blank file is UnknownFormatError, named."""
        with pytest.raises(UnknownFormatError, match=r"^blank\.txt: empty"):
            parse(b" \n", name="blank.txt")

    def test_not_sqlite(self) -> None:
        """Binary data without the SQLite header is NotSqliteError."""
        png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
        with pytest.raises(NotSqliteError, match=r"^photo\.session: not a SQLite database"):
            parse(png, name="photo.session")

    def test_sqlite_without_sessions_table(self) -> None:
        """Another application's database is ForeignSqliteError, listing its tables."""
        data = raw_database("CREATE TABLE notes (body TEXT)", "CREATE TABLE tags (name TEXT)")
        with pytest.raises(
            ForeignSqliteError, match=r"without a 'sessions' table.*'notes', 'tags'"
        ):
            parse(data)

    def test_sqlite_with_a_different_sessions_table(self) -> None:
        """A 'sessions' table of another shape is ForeignSqliteError too."""
        data = raw_database(
            "CREATE TABLE sessions (id INTEGER PRIMARY KEY, cookie TEXT)",
            "CREATE TABLE version (version INTEGER)",
        )
        with pytest.raises(ForeignSqliteError, match="neither the Telethon nor the Pyrogram"):
            parse(data)

    @pytest.mark.parametrize(
        ("fmt", "sql", "error", "message"),
        [
            pytest.param(
                SessionFormat.TELETHON,
                "UPDATE version SET version = 6",
                UnknownSchemaVersionError,
                "Telethon session schema version 6",
                id="telethon version not 7 or 8",
            ),
            pytest.param(
                SessionFormat.PYROGRAM,
                "UPDATE version SET number = 4",
                UnknownSchemaVersionError,
                "Pyrogram session storage version 4",
                id="pyrogram version not 2 or 3",
            ),
            pytest.param(
                SessionFormat.TELETHON,
                "DELETE FROM version",
                UnknownSchemaVersionError,
                "0 rows",
                id="no version row, not a guess",
            ),
            pytest.param(
                SessionFormat.PYROGRAM,
                "ALTER TABLE sessions DROP COLUMN api_id",
                CorruptSessionError,
                "no api_id",
                id="pyrogram 3 without api_id",
            ),
            pytest.param(
                SessionFormat.PYROGRAM,
                "DELETE FROM sessions",
                SessionRowCountError,
                "empty: the session was never logged in",
                id="no session row",
            ),
            pytest.param(
                SessionFormat.TELETHON,
                "INSERT INTO sessions SELECT 4, server_address, port, auth_key, NULL FROM sessions",
                SessionRowCountError,
                "several rows",
                id="several session rows",
            ),
            pytest.param(
                SessionFormat.TELETHON,
                "UPDATE sessions SET auth_key = NULL",
                AuthKeyError,
                "there is no auth key",
                id="auth key NULL",
            ),
            pytest.param(
                SessionFormat.TELETHON,
                "UPDATE sessions SET auth_key = substr(auth_key, 1, 255)",
                AuthKeyError,
                "is 255 bytes; a Telegram auth key is exactly 256",
                id="auth key short",
            ),
            pytest.param(
                SessionFormat.TELETHON,
                "UPDATE sessions SET auth_key = zeroblob(256)",
                AuthKeyError,
                "all zeros",
                id="auth key all zeros",
            ),
            pytest.param(
                SessionFormat.TELETHON,
                "UPDATE sessions SET auth_key = 'not a blob'",
                AuthKeyError,
                "stored as str",
                id="auth key not a blob",
            ),
            pytest.param(
                SessionFormat.TELETHON,
                "UPDATE sessions SET server_address = 'dc2.example.org'",
                AddressError,
                "not an IPv4 or IPv6 address",
                id="address not an IP",
            ),
            pytest.param(
                SessionFormat.TELETHON,
                "UPDATE sessions SET server_address = NULL",
                AddressError,
                "is not text",
                id="address NULL",
            ),
            pytest.param(
                SessionFormat.TELETHON,
                "UPDATE sessions SET port = 0",
                AddressError,
                "port 0 is not in 1..65535",
                id="port 0",
            ),
            pytest.param(
                SessionFormat.TELETHON,
                "UPDATE sessions SET port = 70000",
                AddressError,
                "port 70000 is not in 1..65535",
                id="port above 65535",
            ),
            pytest.param(
                SessionFormat.PYROGRAM,
                "UPDATE sessions SET test_mode = 7",
                CorruptSessionError,
                "test_mode holds 7",
                id="pyrogram test_mode not 0, 1 or NULL",
            ),
        ],
    )
    def test_altered_database(
        self, fmt: SessionFormat, sql: str, error: type[Exception], message: str
    ) -> None:
        """A session database changed by ``sql`` is refused with ``error``: an unknown schema
        version or none, a missing column, no or several session rows, a NULL, short,
        all-zero or non-blob auth key, an address that is not an IP, a port outside
        1..65535, a boolean that is not 0, 1 or NULL."""
        with pytest.raises(error, match=message):
            parse(altered(emit(record(), fmt), sql))

    def test_dc_id_not_allowed(self, tmp_path: Path) -> None:
        """A dc id outside the policy is DcIdError; configuring it as sandbox admits it."""
        data = telethon_file(tmp_path, dc_id=7)
        with pytest.raises(DcIdError, match="dc id 7 is not an allowed data centre"):
            parse(data)
        sandbox = FormatPolicy(allowed_dc_ids=frozenset({1, 2, 3, 4, 5, 7}))
        assert parse(data, sandbox).dc_id == 7

    def test_dc_id_out_of_range(self) -> None:
        """A dc id no string format can hold is DcIdError even if configured."""
        data = altered(emit(record(), SessionFormat.TELETHON), "UPDATE sessions SET dc_id = 300")
        with pytest.raises(DcIdError, match=r"outside 1\.\.255"):
            parse(data, FormatPolicy(allowed_dc_ids=frozenset({300})))

    def test_truncated_database(self) -> None:
        """A database cut short is CorruptSessionError naming the file."""
        data = emit(record(), SessionFormat.PYROGRAM)
        with pytest.raises(CorruptSessionError, match=r"^cut\.session: the SQLite"):
            parse(data[:60], name="cut.session")
        with pytest.raises(CorruptSessionError, match="corrupt or truncated"):
            parse(data[: len(data) // 2])

    def test_garbage_after_header(self) -> None:
        """A SQLite header followed by garbage is CorruptSessionError."""
        data = emit(record(), SessionFormat.TELETHON)
        garbage = hashlib.shake_256(b"garbage").digest(len(data) - 100)
        with pytest.raises(CorruptSessionError, match="corrupt or truncated"):
            parse(data[:100] + garbage)

    def test_schema_with_invalid_utf8(self) -> None:
        """A schema whose SQL is not UTF-8 (sqlite3 fails decoding its own error) is corrupt."""
        data = raw_database("CREATE TABLE sessions (dc_id INTEGER)", "CREATE TABLE t (x)")
        broken = data.replace(b"CREATE TABLE t (x)", b"CREATE TABLE t \xa5x)")
        assert broken != data
        with pytest.raises(CorruptSessionError, match="schema is corrupt"):
            parse(broken)

    def test_string_of_wrong_length(self) -> None:
        """A string of no known length is SessionStringError listing the valid lengths."""
        text = VALID_INPUTS["pyrogram-string"][:-1]
        with pytest.raises(SessionStringError, match="361 characters matches no known format"):
            parse(text)

    def test_string_outside_the_alphabet(self) -> None:
        """A character outside URL-safe base64 is SessionStringError with its position."""
        text = bytearray(VALID_INPUTS["pyrogram-string"])
        text[10] = ord("+")
        with pytest.raises(SessionStringError, match="character 11 is not URL-safe base64"):
            parse(bytes(text))

    def test_telethon_string_with_another_version(self) -> None:
        """A Telethon-length string that does not start with '1' is SessionStringError."""
        text = b"2" + VALID_INPUTS["telethon-string"][1:]
        with pytest.raises(SessionStringError, match="start with '1'"):
            parse(text)

    def test_string_with_wrong_padding(self) -> None:
        """Padding that does not fit the length is SessionStringError."""
        with pytest.raises(SessionStringError, match="padding"):
            parse(VALID_INPUTS["telethon-string"] + b"==")

    def test_several_strings_in_one_file(self) -> None:
        """Two strings in one file are refused rather than guessed between."""
        text = VALID_INPUTS["telethon-string"] + b"\n" + VALID_INPUTS["pyrogram-string"]
        with pytest.raises(SessionStringError, match="one string session in each file"):
            parse(text)

    def test_non_ascii_string(self) -> None:
        """Text with a non-ASCII byte is SessionStringError with the offset."""
        with pytest.raises(SessionStringError, match="non-ASCII byte at offset 3"):
            parse("abcé".encode())

    def test_string_with_zero_key(self) -> None:
        """A Pyrogram string holding an all-zero key (never logged in) is AuthKeyError."""
        packed = struct.pack(">BI?256sQ?", 2, API_ID, False, bytes(256), USER_ID, False)
        text = base64.urlsafe_b64encode(packed).rstrip(b"=")
        with pytest.raises(AuthKeyError, match="all zeros"):
            parse(text)

    def test_string_with_disallowed_dc(self) -> None:
        """A Telethon string for a dc outside the policy is DcIdError."""
        with pytest.raises(DcIdError, match="dc id 9"):
            parse_string(telethon_string(dc_id=9))

    def test_string_with_port_zero(self) -> None:
        """A Telethon string with port 0 is AddressError."""
        packed = struct.pack(">B4sH256s", 2, bytes([149, 154, 167, 51]), 0, KEY)
        with pytest.raises(AddressError, match="port 0"):
            parse_string("1" + base64.urlsafe_b64encode(packed).decode())

    def test_messages_never_contain_key_material(self) -> None:
        """Error messages name the problem, never the key or the string that holds it."""
        text = VALID_INPUTS["telethon-string"]
        broken = text[:100] + b"+" + text[101:]
        with pytest.raises(SessionStringError) as refused:
            parse(broken + b"=")
        assert text[1:60].decode() not in refused.value.message
        short_key = altered(
            emit(record(), SessionFormat.TELETHON),
            "UPDATE sessions SET auth_key = substr(auth_key, 1, 100)",
        )
        with pytest.raises(AuthKeyError) as short:
            parse(short_key)
        assert KEY[:100].hex()[:16] not in short.value.message


# --- the record, its serialisation and its helpers --------------------------------------


class TestCanonicalSession:
    def test_repr_hides_the_auth_key(self) -> None:
        """repr() shows the session's coordinates but not its key."""
        shown = repr(record())
        assert "149.154.167.51" in shown
        assert "auth_key" not in shown
        assert KEY.hex()[:16] not in shown

    def test_address_is_normalised(self) -> None:
        """IPv6 addresses are stored compressed, so equal sessions compare equal."""
        assert record(address="2001:0DB8:0000::0001").address == "2001:db8::1"

    @pytest.mark.parametrize(
        ("changes", "error"),
        [
            ({"auth_key": KEY[:255]}, AuthKeyError),
            ({"dc_id": 0}, DcIdError),
            ({"dc_id": 256}, DcIdError),
            ({"address": "fe80::1%eth0"}, AddressError),
            ({"address": "localhost"}, AddressError),
            ({"port": 65_536}, AddressError),
            ({"user_id": 0}, CorruptSessionError),
            ({"api_id": 2**31}, CorruptSessionError),
        ],
    )
    def test_invalid_fields(self, changes: dict[str, object], error: type[Exception]) -> None:
        """A record cannot be built with a field no format could store."""
        with pytest.raises(error):
            record(**changes)


class TestVaultRecord:
    def test_layout_is_compact(self) -> None:
        """An IPv4 record with both ids is 7 + 4 + 256 + 8 + 4 bytes, version byte first."""
        data = to_record(record())
        assert len(data) == 279
        assert data[0] == 1

    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (lambda _: b"", "truncated"),
            (lambda data: b"\x02" + data[1:], "unknown version 2"),
            (lambda data: data[:1] + b"\x09" + data[2:], "unknown format 9"),
            (lambda data: data[:2] + bytes([data[2] | 0x40]) + data[3:], "invalid flags"),
            (lambda data: data[:2] + bytes([data[2] & ~0x10 | 0x20]) + data[3:], "invalid flags"),
            (lambda data: data + b"\x00", "280 bytes; its flags say 279"),
            (lambda data: data[:-1], "278 bytes"),
            (lambda data: data[:-12] + bytes(8) + data[-4:], "invalid: the user id 0"),
        ],
    )
    def test_malformed_record(self, mutate: object, message: str) -> None:
        """Every malformation of a stored record is CorruptSessionError, saying which."""
        assert callable(mutate)
        with pytest.raises(CorruptSessionError, match=message):
            from_record(mutate(to_record(record(is_bot=True))))


class TestHelpers:
    def test_fingerprint(self) -> None:
        """The fingerprint is a domain-separated SHA-256: stable, distinct, not the raw hash."""
        assert auth_key_fingerprint(KEY) == auth_key_fingerprint(bytes(KEY))
        assert auth_key_fingerprint(KEY) != auth_key_fingerprint(OTHER_KEY)
        assert auth_key_fingerprint(KEY) != hashlib.sha256(KEY).hexdigest()
        assert len(auth_key_fingerprint(KEY)) == 64

    @pytest.mark.parametrize(
        ("dc_id", "test_mode"),
        [(dc, False) for dc in (1, 2, 3, 4, 5, 203)] + [(dc, True) for dc in (1, 2, 3)],
    )
    def test_default_address_is_pyrogram_s(self, dc_id: int, test_mode: bool) -> None:
        """default_address agrees with Pyrogram's own DataCenter table."""
        expected = DataCenter(dc_id, test_mode, False, False)
        assert default_address(dc_id, test_mode=test_mode) == expected

    def test_default_address_for_unknown_dc(self) -> None:
        """A sandbox dc unknown to Pyrogram gets the loopback placeholder on port 443."""
        assert default_address(42, test_mode=False) == ("127.0.0.1", 443)
        assert default_address(4, test_mode=True) == ("127.0.0.1", 443)


# --- small readers for the assertions above ---------------------------------------------


async def _opened(storage: FileStorage | MemoryStorage) -> FileStorage | MemoryStorage:
    await storage.open()  # type: ignore[no-untyped-call]
    return storage


def _query(database: bytes, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(":memory:")
    try:
        connection.deserialize(database)
        rows: list[tuple[object, ...]] = connection.execute(sql).fetchall()
        return rows
    finally:
        connection.close()


def _version(database: bytes, column: str) -> object:
    return _query(database, f"SELECT {column} FROM version")[0][0]


def _schema(database: bytes) -> list[tuple[object, ...]]:
    return _query(database, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")


def _columns(database: bytes) -> dict[object, list[tuple[object, ...]]]:
    tables = [name for (name,) in _query(database, "SELECT name FROM sqlite_master")]
    return {
        table: _query(
            database, f"SELECT name, type, \"notnull\", pk FROM pragma_table_info('{table}')"
        )
        for table in tables
    }
