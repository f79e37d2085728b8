"""The candidate session files of a zip or a folder, read safely and in memory.

Which files are yielded: every regular file, except hidden ones (a path segment starting
with ``.``, such as ``.DS_Store``, ``._x.session`` or ``.git/``) and anything under
``__MACOSX/``. Nothing is filtered by extension: string sessions come as ``.txt``, as
``.session-string`` or with no extension at all, and :func:`tgfleet.vault.formats.parse`
already rejects a non-session with a specific error the caller can report per entry.
Directories, symlinks and special files (FIFOs, devices, sockets) are skipped.

The whole input is refused when any name is unsafe (absolute, a drive letter, a ``..``
segment, a NUL), when there are too many entries, when the declared sizes are too large,
when an entry compresses suspiciously well (a zip bomb), or when the zip is corrupt. The
checks on names, counts and declared sizes all run before the first entry is yielded;
corruption (a bad CRC, a truncated member) can only show while reading, so it may surface
after some entries were yielded. Callers import all-or-nothing: collect, then commit.

Sizes are never trusted: each read is bounded by ``max_entry_bytes + 1`` and zipfile
stops at the declared size and checks the CRC there, so a lying header cannot make us
inflate more than the limits. Nothing is extracted to disk.
"""

from __future__ import annotations

import io
import lzma
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from tgfleet.vault.exceptions import ArchiveError, ImportTooLargeError

__all__ = ["ArchiveLimits", "Entry", "is_zip", "iter_folder", "iter_zip"]

_ZIP_MAGIC: Final = (b"PK\x03\x04", b"PK\x05\x06")  # a first member, or an empty archive
_UTF8_NAME_FLAG: Final = 0x800
_ENCRYPTED_FLAG: Final = 0x1
_DRIVE: Final = re.compile(r"[A-Za-z]:")
_READ_CHUNK: Final = 64 * 1024
# Everything zipfile and its decompressors raise on damaged input. zipfile has no common
# base class for them, so they are listed rather than caught blindly.
_ZIP_ERRORS: Final = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,  # also bz2's "Invalid data stream"
    ValueError,  # also UnicodeDecodeError: a name flagged UTF-8 that is not
    NotImplementedError,  # an unsupported compression method or zip feature
    RuntimeError,  # an encrypted member (refused earlier, kept as a backstop)
    zlib.error,
    lzma.LZMAError,
)


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Bounds for one import. ``max_ratio`` applies to entries above ``ratio_floor_bytes``.

    The floor exists because a small SQLite file of mostly empty pages legitimately
    compresses beyond 200:1; below it an entry cannot hurt, since sizes are capped anyway.
    """

    max_entries: int = 10_000
    max_entry_bytes: int = 1024 * 1024
    max_total_bytes: int = 512 * 1024 * 1024
    max_ratio: int = 200
    ratio_floor_bytes: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class Entry:
    """A candidate session file: its display name and its bytes (kept out of ``repr``)."""

    name: str
    data: bytes = field(repr=False)


def is_zip(data: bytes) -> bool:
    """Whether ``data`` starts like a zip archive (a local file header or an empty zip)."""
    return data.startswith(_ZIP_MAGIC)


def iter_zip(data: bytes, limits: ArchiveLimits) -> Iterator[Entry]:
    """Yield the candidate session files of a zip held in memory, refusing unsafe archives.

    Raises ``ArchiveError`` for unsafe names, too many entries, a zip bomb, encryption or
    corruption, and ``ImportTooLargeError`` for sizes over the limits.
    """
    if len(data) > limits.max_total_bytes:
        raise ImportTooLargeError(
            f"the zip is {len(data)} bytes; the import limit is {limits.max_total_bytes}"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except UnicodeDecodeError:
        # zipfile decodes flagged names strictly while reading the directory, so no single
        # name can be shown with replacement characters: the archive is malformed.
        raise ArchiveError(
            "an entry name is flagged as UTF-8 but is not valid UTF-8; re-create the zip"
        ) from None
    except _ZIP_ERRORS as exc:
        raise ArchiveError(f"not a readable zip archive ({exc})") from None
    with archive:
        members = _plan_zip(archive.infolist(), limits)
        total = 0
        for info, name in members:
            try:
                with archive.open(info) as member:
                    content = _bounded_read(member, limits.max_entry_bytes, name)
            except _ZIP_ERRORS as exc:
                raise ArchiveError(f"the zip is corrupt at entry {name!r} ({exc})") from None
            total += len(content)
            if total > limits.max_total_bytes:
                raise ImportTooLargeError(
                    f"the zip's entries exceed the {limits.max_total_bytes}-byte import limit"
                )
            yield Entry(name=name, data=content)


def _plan_zip(
    infos: list[zipfile.ZipInfo], limits: ArchiveLimits
) -> list[tuple[zipfile.ZipInfo, str]]:
    """Check every name and declared size; return the members to read with display names."""
    if len(infos) > limits.max_entries:
        raise ArchiveError(
            f"the zip has {len(infos)} entries; at most {limits.max_entries} are accepted"
        )
    members: list[tuple[zipfile.ZipInfo, str]] = []
    declared_total = 0
    for info in infos:
        name = _display_name(info)
        segments = _safe_segments(info.orig_filename, name)
        is_directory = info.is_dir() or name.endswith("\\")  # some Windows tools write folders so
        if is_directory or not segments or _is_hidden(segments):
            continue
        shown = "/".join(segments)
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise ArchiveError(f"entry {shown!r} is encrypted; upload an unencrypted zip")
        if info.file_size > limits.max_entry_bytes:
            raise ImportTooLargeError(
                f"entry {shown!r} declares {info.file_size} bytes; the limit per file is "
                f"{limits.max_entry_bytes}"
            )
        if (
            info.file_size > limits.ratio_floor_bytes
            and info.file_size > limits.max_ratio * info.compress_size
        ):
            raise ArchiveError(
                f"entry {shown!r} expands {info.file_size} bytes from {info.compress_size}, "
                f"more than {limits.max_ratio}:1; refusing a likely zip bomb"
            )
        declared_total += info.file_size
        if declared_total > limits.max_total_bytes:
            raise ImportTooLargeError(
                f"the zip's entries declare more than the {limits.max_total_bytes}-byte "
                "import limit"
            )
        members.append((info, shown))
    return members


def _display_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as a person would read it.

    Flagged names are UTF-8 (zipfile already decoded them). Unflagged names were decoded
    as cp437, which cannot fail; when the same bytes are valid UTF-8 we prefer that, since
    macOS and many Unix tools write UTF-8 names without setting the flag.
    """
    name = info.orig_filename
    if info.flag_bits & _UTF8_NAME_FLAG:
        return name
    raw = name.encode("cp437")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return name


def _safe_segments(raw_name: str, name: str) -> list[str]:
    """Split a zip name into path segments, refusing the archive if it is unsafe.

    Backslashes count as separators: Windows extractors treat them so, which makes
    ``..\\x`` just as much a traversal as ``../x``.
    """
    if "\x00" in raw_name:
        raise ArchiveError(f"entry {_printable(name)!r} has a NUL byte in its name")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        raise ArchiveError(f"entry {_printable(name)!r} has an absolute path")
    segments = [segment for segment in unified.split("/") if segment not in ("", ".")]
    if ".." in segments:
        raise ArchiveError(f"entry {_printable(name)!r} climbs out of the archive with '..'")
    return segments


def _printable(name: str) -> str:
    return name.replace("\x00", "\\0")


def _is_hidden(segments: list[str]) -> bool:
    return any(segment.startswith(".") or segment == "__MACOSX" for segment in segments)


def _bounded_read(stream: IO[bytes], limit: int, name: str) -> bytes:
    """Read at most ``limit`` bytes, refusing (not truncating) anything longer."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ImportTooLargeError(f"{name!r} is larger than the {limit}-byte limit per file")
    return b"".join(chunks)


def iter_folder(path: Path, limits: ArchiveLimits) -> Iterator[Entry]:
    """Yield the candidate session files under ``path``, recursively, without following links.

    Names are relative to ``path`` with ``/`` separators. The tree is listed and checked
    against the limits (count, sizes) before the first entry is yielded.
    """
    if not path.is_dir():
        raise ArchiveError(f"{str(path)!r} is not a directory")
    files = _list_folder(path, limits)
    total = 0
    for relative, file_path in files:
        content = _read_regular_file(file_path, limits.max_entry_bytes, relative)
        total += len(content)
        if total > limits.max_total_bytes:
            raise ImportTooLargeError(
                f"the folder's files exceed the {limits.max_total_bytes}-byte import limit"
            )
        yield Entry(name=relative, data=content)


def _list_folder(root: Path, limits: ArchiveLimits) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    seen = 0
    declared_total = 0
    pending: list[tuple[Path, tuple[str, ...]]] = [(root, ())]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                children = sorted(listing, key=lambda child: child.name)
        except OSError as exc:
            raise ArchiveError(f"cannot list {_relative(prefix)!r}: {exc.strerror}") from None
        for child in children:
            seen += 1
            if seen > limits.max_entries:
                raise ArchiveError(
                    f"the folder has more than {limits.max_entries} entries; split the import"
                )
            name = _display_path(child.name)
            if name.startswith(".") or name == "__MACOSX" or child.is_symlink():
                continue
            segments = (*prefix, name)
            if child.is_dir(follow_symlinks=False):
                pending.append((Path(child.path), segments))
                continue
            if not child.is_file(follow_symlinks=False):
                continue  # a FIFO, socket or device: reading it could block forever
            relative = _relative(segments)
            try:
                size = child.stat(follow_symlinks=False).st_size
            except OSError as exc:
                raise ArchiveError(f"cannot read {relative!r}: {exc.strerror}") from None
            if size > limits.max_entry_bytes:
                raise ImportTooLargeError(
                    f"{relative!r} is {size} bytes; the limit per file is {limits.max_entry_bytes}"
                )
            declared_total += size
            if declared_total > limits.max_total_bytes:
                raise ImportTooLargeError(
                    f"the folder's files exceed the {limits.max_total_bytes}-byte import limit"
                )
            files.append((relative, Path(child.path)))
    files.sort()
    return files


def _display_path(name: str) -> str:
    # Undecodable bytes in a file name come back from the OS as lone surrogates, which no
    # encoder downstream accepts; show them as U+FFFD instead.
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _relative(segments: tuple[str, ...]) -> str:
    return "/".join(segments) or "."


def _read_regular_file(path: Path, limit: int, name: str) -> bytes:
    # O_NOFOLLOW and the fstat check close the gap between listing and reading: a file
    # swapped for a symlink or a FIFO meanwhile is refused instead of followed or blocked on.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise ArchiveError(f"cannot read {name!r}: {exc.strerror}") from None
    with os.fdopen(descriptor, "rb") as stream:
        try:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                raise ArchiveError(f"{name!r} changed into a non-regular file while importing")
            return _bounded_read(stream, limit, name)
        except OSError as exc:
            raise ArchiveError(f"cannot read {name!r}: {exc.strerror}") from None
