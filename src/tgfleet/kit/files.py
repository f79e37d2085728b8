"""Private files (mode 0600) written atomically, and the lock file that serialises their changes.

A secret file (a key file, a salt, a generated secret) is never seen half-written: the
content goes to a temporary file beside the target (created 0600, exclusively), is fsynced,
then moved into place, and the directory is fsynced so the new name survives a crash.
``write_private_file`` replaces an existing target (rename); ``create_private_file`` never
does (it links the temporary file into place, which fails if the target exists).

All of it is blocking file I/O: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_private_file(path: Path, content: bytes) -> None:
    """Write ``content`` atomically to ``path`` with mode 0600 (temp file, fsync, rename).

    An existing ``path`` is replaced; a failure leaves it as it was and no temporary file."""
    tmp = _write_temp_beside(path, content)
    try:
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def create_private_file(path: Path, content: bytes) -> None:
    """Write ``content`` to a new file ``path`` (0600), atomically; FileExistsError if it exists.

    ``write_private_file`` renames over its target; a key file or salt must never be replaced,
    so this links the finished temp file into place, which fails if ``path`` exists.
    """
    tmp = _write_temp_beside(path, content)
    try:
        path.hardlink_to(tmp)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def _write_temp_beside(path: Path, content: bytes) -> Path:
    """A new 0600 file beside ``path`` holding ``content``, flushed to disk."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries to disk (after a rename or link into it)."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def lock_path_beside(path: Path) -> Path:
    """The lock file that guards changes to ``path``: ``.<name>.lock`` in the same directory."""
    return path.with_name(f".{path.name}.lock")


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created 0600) across processes.

    A file replaced by rename on every change cannot be locked itself, so its lock lives on
    a separate file that is never replaced (nor deleted: deleting a lock file reopens the
    race). OSError if the lock file cannot be opened, raised before the block runs.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
