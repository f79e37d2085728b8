"""What every CLI command shares and can afford at start: the consoles, clean one-line
errors with documented exit codes, private output files.

This module is imported by every command, the remote ones included, so it imports no
heavy part (no SQLAlchemy, Telethon, FastAPI, pydantic-settings): `tgfleet --help` and a
remote `tgfleet account list` start in a fraction of a second. What the database-direct
commands share (settings, one unit of work, the vault) is in ``tgfleet.cli._local``.

Exit codes: 0 ok, 1 failed, 2 usage or configuration, 3 server unreachable, 4 not
permitted (or not signed in).
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import TextIO

import typer
from rich.console import Console

#: The documented exit codes (docs/cli.md).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_FORBIDDEN = 4

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
#: Set by the serving commands: an unexpected error is then logged at ERROR with its
#: traceback (the service's log), not only at DEBUG.
serving = False
#: Longest error line printed for an unexpected error (a driver message can be long).
ERROR_LINE_CHARS = 300


def check_output(path: Path, *, force: bool) -> None:
    """Refuse an output path that is a symbolic link (always: writing would follow it to
    whatever it names), or an existing file unless ``force``. The exports call this first."""
    if path.is_symlink():
        raise fail(f"{path} is a symbolic link; refusing to write through it")
    if path.exists() and not force:
        raise fail(f"{path} exists; pass --force to overwrite it")


def open_private(path: Path, *, force: bool) -> TextIO:
    """Open ``path`` for writing with mode 0600 (exports can hold sensitive metadata), after
    ``check_output``; a symlink or file that appears meanwhile is refused by ``open`` itself
    (``O_NOFOLLOW``, and ``O_EXCL`` without ``force``)."""
    check_output(path, force=force)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise fail(f"{path} exists; pass --force to overwrite it") from exc
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}") from exc
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def read_password() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise fail("--password-stdin given but standard input was empty")
    return password


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def describe_error(exc: BaseException) -> str:
    """One line for an error no command expected: its type and the first line of its message.

    A SQLAlchemy error shows its driver's message only: its own text appends the statement
    and its parameters, which may hold secrets."""
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")  # loaded only if a command used it
    if sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.DBAPIError):
        cause = exc.orig if exc.orig is not None else exc
        text = str(cause).strip().splitlines()
        detail = text[0] if text else type(cause).__name__
        return f"database error: {detail}"[:ERROR_LINE_CHARS]
    text = str(exc).strip().splitlines()
    first = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return f"unexpected {first}"[:ERROR_LINE_CHARS]


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)
