"""Reading zips and folders of sessions: limits, hostile names, bombs, links and odd files.

Zips are built with zipfile and, where zipfile refuses to write something hostile (a NUL
or a raw non-UTF-8 name, a lying size), patched at the byte level afterwards.
"""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgfleet.vault.archive import ArchiveLimits, Entry, is_zip, iter_folder, iter_zip
from tgfleet.vault.exceptions import ArchiveError, ImportTooLargeError
from tgfleet.vault.formats import CanonicalSession, SessionFormat, emit, parse

LIMITS = ArchiveLimits()
KEY = bytes(range(1, 256)) + b"\x01"
SESSION = CanonicalSession(
    dc_id=2,
    address="149.154.167.51",
    port=443,
    auth_key=KEY,
    user_id=42,
    api_id=7,
    test_mode=False,
    is_bot=False,
    source_format=SessionFormat.PYROGRAM,
)
BOMB_BYTES = 50 * 1024 * 1024


def make_zip(
    members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED, level: int = 9
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression, compresslevel=level) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def damage(data: bytes, position: int, mask: int, *, cut: bool) -> bytes:
    """``data`` cut at ``position``, or with that byte XORed with ``mask``."""
    if cut:
        return data[:position]
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]


def central_offsets(data: bytes) -> list[int]:
    """Offsets of every central-directory header (signature PK\\x01\\x02)."""
    offsets: list[int] = []
    start = 0
    while (found := data.find(b"PK\x01\x02", start)) != -1:
        offsets.append(found)
        start = found + 4
    return offsets


def patch_u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4 :]


def entries(data: bytes, limits: ArchiveLimits = LIMITS) -> list[Entry]:
    return list(iter_zip(data, limits))


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """One 50 MiB entry of zeros, deflated to about 50 KiB."""
    return make_zip({"bomb.session": bytes(BOMB_BYTES)})


def peak_memory(action: Callable[[], object]) -> int:
    """Peak Python allocation while ``action`` runs, in bytes."""
    tracemalloc.start()
    try:
        action()
    except (ArchiveError, ImportTooLargeError):
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


class TestZip:
    def test_sessions_in_a_zip(self) -> None:
        """A zip of N session files (one per format, in folders) yields N parseable entries."""
        members = {f"batch/{fmt.value}.session": emit(SESSION, fmt) for fmt in SessionFormat}
        members["top.txt"] = emit(SESSION, SessionFormat.TELETHON_STRING)
        found = entries(make_zip(members))
        assert [entry.name for entry in found] == list(members)
        assert [parse(entry.data).auth_key for entry in found] == [KEY] * len(members)

    def test_is_zip(self) -> None:
        """Zips are recognised by their first bytes; sessions are not zips."""
        assert is_zip(make_zip({"a.session": b"x"}))
        assert is_zip(make_zip({}))
        assert not is_zip(emit(SESSION, SessionFormat.TELETHON))
        assert not is_zip(emit(SESSION, SessionFormat.PYROGRAM_STRING))

    def test_empty_zip(self) -> None:
        """An empty zip yields nothing and raises nothing."""
        assert entries(make_zip({})) == []

    def test_directories_and_hidden_files_are_skipped(self) -> None:
        """Folders, __MACOSX/, .DS_Store and dot-folders are not yielded; stored works too."""
        data = make_zip(
            {
                "dir/": b"",
                "dir/a.session": b"A",
                "__MACOSX/dir/._a.session": b"resource fork",
                ".DS_Store": b"finder",
                "dir/.git/config": b"git",
                "./b": b"B",
            },
            compression=zipfile.ZIP_STORED,
        )
        assert [(entry.name, entry.data) for entry in entries(data)] == [
            ("dir/a.session", b"A"),
            ("b", b"B"),
        ]

    @pytest.mark.parametrize(
        "name",
        ["../x.session", "/etc/x", "C:\\x", "c:x.session", "a/../../b", "..\\x.session", "\\x"],
    )
    def test_unsafe_names_refuse_the_whole_zip(self, name: str) -> None:
        """A traversal or absolute name refuses the zip before any entry is yielded."""
        archive = iter_zip(make_zip({"good.session": b"ok", name: b"evil"}), LIMITS)
        with pytest.raises(ArchiveError, match=r"absolute path|climbs out"):
            next(archive)

    def test_nul_in_name(self) -> None:
        """A NUL in a name (which zipfile would silently cut) refuses the zip."""
        data = make_zip({"aXb.session": b"x"}).replace(b"aXb", b"a\x00b")
        with pytest.raises(ArchiveError, match="NUL"):
            entries(data)

    def test_too_many_entries(self) -> None:
        """More entries than max_entries refuses the zip."""
        data = make_zip({f"{n}.session": b"x" for n in range(4)})
        with pytest.raises(ArchiveError, match="4 entries; at most 3"):
            entries(data, ArchiveLimits(max_entries=3))

    def test_entry_over_the_size_limit(self) -> None:
        """An entry declaring more than max_entry_bytes is ImportTooLargeError, named."""
        data = make_zip({"small.session": b"x", "large.session": b"y" * 2000})
        with pytest.raises(ImportTooLargeError, match=r"'large\.session' declares 2000 bytes"):
            entries(data, ArchiveLimits(max_entry_bytes=1000))

    def test_total_over_the_limit(self) -> None:
        """Entries whose sizes together pass max_total_bytes are refused up front."""
        data = make_zip({f"{n}.session": b"x" * 600 for n in range(3)})
        assert len(data) < 1500
        with pytest.raises(ImportTooLargeError, match="declare more than the 1500-byte"):
            next(iter_zip(data, ArchiveLimits(max_total_bytes=1500)))

    def test_zip_larger_than_the_total_limit(self) -> None:
        """A zip whose own size passes max_total_bytes is refused before it is opened."""
        data = make_zip({f"{n}.session": os.urandom(600) for n in range(3)})
        with pytest.raises(ImportTooLargeError, match=f"the zip is {len(data)} bytes"):
            next(iter_zip(data, ArchiveLimits(max_total_bytes=1500)))

    def test_bomb_refused_by_ratio(self, bomb: bytes) -> None:
        """Property of a bomb: its ratio alone refuses it, even when sizes would pass."""
        limits = ArchiveLimits(max_entry_bytes=BOMB_BYTES, max_total_bytes=BOMB_BYTES)
        with pytest.raises(ArchiveError, match="zip bomb"):
            entries(bomb, limits)

    def test_bomb_refused_by_size(self, bomb: bytes) -> None:
        """With the ratio check out of the way, its declared size refuses it."""
        with pytest.raises(ImportTooLargeError, match=r"'bomb\.session' declares 52428800 bytes"):
            entries(bomb, ArchiveLimits(max_ratio=10**9))

    def test_bomb_is_never_inflated(self, bomb: bytes) -> None:
        """Refusing the bomb allocates a few MiB at most, not its 50 MiB."""
        assert peak_memory(lambda: entries(bomb)) < 4 * 1024 * 1024

    def test_bomb_with_a_lying_size(self, bomb: bytes) -> None:
        """A bomb declaring 1000 bytes is read only that far, then fails its CRC."""
        (central,) = central_offsets(bomb)
        lying = patch_u32(patch_u32(bomb, 22, 1000), central + 24, 1000)
        assert peak_memory(lambda: entries(lying)) < 4 * 1024 * 1024
        with pytest.raises(ArchiveError, match=r"corrupt at entry 'bomb\.session'.*CRC"):
            entries(lying)

    def test_small_entries_compress_freely(self) -> None:
        """A small, very compressible entry (mostly empty SQLite pages) is not a bomb."""
        data = make_zip({"sparse.session": bytes(60 * 1024)})
        assert [entry.name for entry in entries(data)] == ["sparse.session"]

    def test_corrupt_member_data(self) -> None:
        """A flipped byte in a member's compressed data is ArchiveError, not a crash."""
        data = bytearray(make_zip({"a.session": emit(SESSION, SessionFormat.PYROGRAM)}))
        data[60] ^= 0xFF
        with pytest.raises(ArchiveError, match=r"corrupt at entry 'a\.session'"):
            entries(bytes(data))

    def test_truncated_zip(self) -> None:
        """A zip cut short has no central directory: ArchiveError."""
        data = make_zip({"a.session": emit(SESSION, SessionFormat.TELETHON)})
        with pytest.raises(ArchiveError, match="not a readable zip"):
            entries(data[: len(data) // 2])

    def test_not_a_zip(self) -> None:
        """Bytes that are no zip at all are ArchiveError."""
        with pytest.raises(ArchiveError, match="not a readable zip"):
            entries(b"PK\x03\x04 but nothing else")

    def test_encrypted_entry(self) -> None:
        """An encrypted member (flag bit 0) is refused with a hint, not a password prompt."""
        data = make_zip({"a.session": b"x"}, compression=zipfile.ZIP_STORED)
        (central,) = central_offsets(data)
        flagged = bytearray(data)
        flagged[6] |= 1
        flagged[central + 8] |= 1
        with pytest.raises(ArchiveError, match=r"'a\.session' is encrypted"):
            entries(bytes(flagged))

    def test_cp437_name(self) -> None:
        """An unflagged name with a cp437 byte ('é' is 0x82) is decoded, never raising."""
        data = make_zip({"cafX.session": b"x"}).replace(b"cafX", b"caf\x82")
        assert [entry.name for entry in entries(data)] == ["café.session"]

    def test_latin1_name(self) -> None:
        """A Latin-1 name (0xE9), valid in no UTF-8, still reads, as cp437."""
        data = make_zip({"cafX.session": b"x"}).replace(b"cafX", b"caf\xe9")
        assert [entry.name for entry in entries(data)] == ["cafΘ.session"]

    def test_unflagged_utf8_name(self) -> None:
        """macOS-style UTF-8 names without the UTF-8 flag read as UTF-8."""
        data = make_zip({"cafXY.session": b"x"}).replace(b"cafXY", "café".encode())
        assert [entry.name for entry in entries(data)] == ["café.session"]

    def test_flagged_utf8_name(self) -> None:
        """A name zipfile writes with the UTF-8 flag reads back unchanged."""
        data = make_zip({"сессия/ключ.session": b"x"})
        assert [entry.name for entry in entries(data)] == ["сессия/ключ.session"]

    def test_flagged_name_that_is_not_utf8(self) -> None:
        """A name flagged UTF-8 that is not UTF-8 is a malformed zip: ArchiveError."""
        data = make_zip({"éX.session": b"x"}).replace("éX".encode(), b"\xff\xfe\xfd")
        with pytest.raises(ArchiveError, match="flagged as UTF-8 but is not valid UTF-8"):
            entries(data)

    def test_entry_repr_hides_data(self) -> None:
        """An Entry's repr never prints the session bytes."""
        assert repr(Entry(name="a.session", data=KEY)) == "Entry(name='a.session')"

    @settings(max_examples=200, deadline=None)
    @given(position=st.integers(0, 10_000), mask=st.integers(1, 255), cut=st.booleans())
    def test_damaged_zip(self, position: int, mask: int, cut: bool) -> None:
        """Property: a damaged zip yields entries or raises ArchiveError/ImportTooLargeError."""
        try:
            entries(damage(SMALL_ZIP, position % len(SMALL_ZIP), mask, cut=cut))
        except (ArchiveError, ImportTooLargeError):
            return


SMALL_ZIP = make_zip(
    {
        "a/one.session": emit(SESSION, SessionFormat.TELETHON_STRING),
        "b/two.session": emit(SESSION, SessionFormat.PYROGRAM_STRING),
        "three.txt": b"not a session",
    }
)


class TestFolder:
    @pytest.fixture
    def tree(self, tmp_path: Path) -> Path:
        """A folder with nested sessions, hidden files, a symlink, a FIFO and a link loop."""
        root = tmp_path / "import"
        (root / "team" / "eu").mkdir(parents=True)
        (root / ".git").mkdir()
        (root / "__MACOSX").mkdir()
        (root / "top.session").write_bytes(emit(SESSION, SessionFormat.TELETHON))
        (root / "team" / "eu" / "deep.session").write_bytes(emit(SESSION, SessionFormat.PYROGRAM))
        (root / "team" / "string").write_bytes(emit(SESSION, SessionFormat.TELETHON_STRING))
        (root / ".DS_Store").write_bytes(b"finder")
        (root / ".git" / "HEAD").write_bytes(b"ref")
        (root / "__MACOSX" / "._top.session").write_bytes(b"fork")
        outside = tmp_path / "outside.session"
        outside.write_bytes(b"must not be read")
        (root / "link.session").symlink_to(outside)
        (root / "linked-dir").symlink_to(tmp_path)
        os.mkfifo(root / "pipe.session")
        return root

    def test_walks_nested_folders(self, tree: Path) -> None:
        """Regular files are yielded with '/'-relative names; links, FIFOs, hidden skipped."""
        found = list(iter_folder(tree, LIMITS))
        assert [entry.name for entry in found] == [
            "team/eu/deep.session",
            "team/string",
            "top.session",
        ]
        assert all(parse(entry.data).auth_key == KEY for entry in found)

    def test_too_many_entries(self, tree: Path) -> None:
        """More directory entries than max_entries refuses the folder before any read."""
        with pytest.raises(ArchiveError, match="more than 3 entries"):
            next(iter_folder(tree, ArchiveLimits(max_entries=3)))

    def test_file_over_the_size_limit(self, tmp_path: Path) -> None:
        """A file over max_entry_bytes is ImportTooLargeError naming it."""
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "big.session").write_bytes(b"x" * 2000)
        with pytest.raises(ImportTooLargeError, match=r"'sub/big\.session' is 2000 bytes"):
            list(iter_folder(tmp_path, ArchiveLimits(max_entry_bytes=1000)))

    def test_total_over_the_limit(self, tmp_path: Path) -> None:
        """Files together over max_total_bytes are refused before any is read."""
        for n in range(3):
            (tmp_path / f"{n}.session").write_bytes(b"x" * 600)
        with pytest.raises(ImportTooLargeError, match="1500-byte import limit"):
            next(iter_folder(tmp_path, ArchiveLimits(max_total_bytes=1500)))

    def test_not_a_directory(self, tmp_path: Path) -> None:
        """A path that is no directory is ArchiveError."""
        with pytest.raises(ArchiveError, match="is not a directory"):
            list(iter_folder(tmp_path / "missing", LIMITS))

    def test_undecodable_file_name(self, tmp_path: Path) -> None:
        """A file name that is not UTF-8 gets U+FFFD in its display name, and encodes."""
        (tmp_path / os.fsdecode(b"caf\xe9.session")).write_bytes(b"x")
        (entry,) = iter_folder(tmp_path, LIMITS)
        assert entry.name == "caf\ufffd.session"
        assert entry.name.encode() == b"caf\xef\xbf\xbd.session"
