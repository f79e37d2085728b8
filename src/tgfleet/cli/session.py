"""``tgfleet session``: import session files into the vault, export them (audited).

Database-direct (on the server's host): the vault, the ORM and rich's progress bar are
imported inside the commands, so loading this module for `--help` costs nothing heavy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import typer

from tgfleet.cli._runtime import check_output, console, err_console, fail
from tgfleet.vault.canonical import SessionFormat  # an enum (stdlib only): typer needs it

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from tgfleet.config import Settings
    from tgfleet.vault.archive import Entry
    from tgfleet.vault.service import ImportResult, ReplaceResult, Vault

#: Suffixes of files that are plainly no session: a folder's or zip's files with one of
#: these (and no SQLite header) are skipped with a note; any other file is tried.
NOT_SESSION_SUFFIXES = frozenset(
    {".yaml", ".yml", ".json", ".toml", ".ini", ".md", ".rst", ".log", ".csv", ".html",
     ".xml", ".pdf", ".png", ".jpg", ".jpeg", ".gif", ".py", ".sh", ".session-journal"}
)  # fmt: skip
_SQLITE_MAGIC = b"SQLite format 3\x00"

app = typer.Typer(help="Import and export Telegram sessions.", no_args_is_help=True)


def _replace(settings: Settings, vault: Vault, paths: list[Path], ref: str) -> None:
    from tgfleet.account import service as account_service
    from tgfleet.cli._local import cli_audit_context, with_sessionmaker
    from tgfleet.exceptions import AppError
    from tgfleet.kit.db import unit_of_work
    from tgfleet.vault import service as vault_service

    if len(paths) != 1 or not paths[0].is_file():
        raise fail("--account takes exactly one session file")
    try:
        entries = vault_service.expand_path(paths[0], vault.limits)
    except AppError as exc:
        raise fail(f"{paths[0]}: {exc.message}") from exc
    if len(entries) != 1:
        raise fail(f"{paths[0]}: holds {len(entries)} sessions; --account takes exactly one")

    async def work(maker: async_sessionmaker[AsyncSession]) -> ReplaceResult:
        async with unit_of_work(maker, read_only=True) as session:
            target = await account_service.resolve(session, ref)
        return await vault_service.replace_session(
            maker, vault, cli_audit_context(), target.id, entries[0]
        )

    try:
        result = with_sessionmaker(settings, work)
    except AppError as exc:
        raise fail(exc.message) from exc
    console.print(
        f"replaced the session of account {result.account_id}: version {result.version}"
        f"{' (the same session as before)' if result.same_key else ''}; the worker restarts it"
    )


@app.command("import")
def import_(
    paths: list[Path] = typer.Argument(..., help="session files, string files, folders, zips"),
    label: str | None = typer.Option(None, help="label for the account (one file only)"),
    account: str | None = typer.Option(
        None,
        "--account",
        help="re-import: this file replaces the session of this account (id or label); "
        "lifts a quarantine",
    ),
) -> None:
    """Import session files, folders or zips into the vault.

    Prints a result per file and exits 1 if any failed. A folder's or zip's files that are
    plainly not sessions (world.yaml beside minted sessions, a README) are skipped with a
    note; a label already taken gets a -2 suffix, and the result line says so.

    \b
    Examples:
      tgfleet session import ./minted
      tgfleet session import alice.session --label alice
      tgfleet session import new.session --account alice
    """
    from tgfleet.cli._local import cli_audit_context, load_settings, load_vault, with_sessionmaker
    from tgfleet.exceptions import AppError
    from tgfleet.vault import service as vault_service

    settings = load_settings()
    vault = load_vault(settings)
    if account is not None:
        _replace(settings, vault, paths, account)
        return
    entries = _entries(paths, vault)
    try:
        vault_service.check_totals(entries, vault.limits)
    except AppError as exc:
        raise fail(exc.message) from exc
    if label is not None and len(entries) != 1:
        raise fail("--label names one account; give exactly one session file")
    if not entries:
        raise fail("no session files to import")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("importing"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task("import", total=len(entries))
        results = with_sessionmaker(
            settings,
            lambda maker: vault_service.import_entries(
                maker,
                vault,
                cli_audit_context(),
                entries,
                label=label,
                on_result=lambda _result: bar.advance(task),
            ),
        )
    _print_results(results)
    failed = sum(not r.ok for r in results)
    console.print(f"{len(results) - failed} imported, {failed} failed")
    if failed:
        raise typer.Exit(1)


def _entries(paths: list[Path], vault: Vault) -> list[Entry]:
    """The files to import: each path named, and the session files of folders and zips
    (their other files skipped, with a note on stderr)."""
    from tgfleet.exceptions import AppError
    from tgfleet.vault import service as vault_service

    entries: list[Entry] = []
    for path in paths:
        if not path.exists():
            raise fail(f"{path}: no such file or folder")
        try:
            expanded = vault_service.expand_path(path, vault.limits)
        except AppError as exc:
            raise fail(f"{path}: {exc.message}") from exc
        except OSError as exc:
            raise fail(f"{path}: {exc.strerror}") from exc
        if path.is_file() and len(expanded) == 1 and expanded[0].name == path.name:
            entries += expanded  # a file named on the command line is always tried
            continue
        for entry in expanded:
            if _plainly_not_a_session(entry):
                err_console.print(
                    f"skipped {path / entry.name}: not a session file "
                    f"(a {PurePosixPath(entry.name).suffix} file without a SQLite header)",
                    highlight=False,
                    soft_wrap=True,
                )
            else:
                entries.append(entry)
    return entries


def _plainly_not_a_session(entry: Entry) -> bool:
    """A file in a folder or zip whose name says it is something else (``world.yaml``,
    ``notes.md``, a ``.session-journal``) and whose bytes are no SQLite database."""
    suffix = PurePosixPath(entry.name).suffix.lower()
    return suffix in NOT_SESSION_SUFFIXES and not entry.data.startswith(_SQLITE_MAGIC)


def _print_results(results: list[ImportResult]) -> None:
    """One line per file; piped, every value whole (`_output.render`)."""
    from tgfleet.account.service import clean_label
    from tgfleet.cli._output import Column, render, table
    from tgfleet.vault.service import label_from_name

    rows = []
    for result in results:
        if result.ok:
            shown = result.label or ""
            wanted = clean_label(label_from_name(result.name))
            if shown != wanted and shown.startswith(f"{wanted}-"):
                shown = f"{shown} ({wanted!r} was taken)"
            rows.append(
                {
                    "file": result.name,
                    "result": "imported",
                    "account": str(result.account_id),
                    "note": shown,
                }
            )
        else:
            rows.append(
                {
                    "file": result.name,
                    "result": "failed",
                    "account": "",
                    "note": f"{result.error}: {result.detail}",
                }
            )
    columns = (
        Column("file", "file", key=True),
        Column("result", "result", style=lambda v: "green" if v == "imported" else "red"),
        Column("account", "account", key=True),
        Column("label / error", "note"),
    )
    render(table(rows, columns, wide=True))


@app.command()
def export(
    account: str = typer.Argument(..., help="account id or unique label"),
    fmt: SessionFormat = typer.Option(..., "--format", help="output format"),
    out: Path = typer.Option(..., "--out", help="file to write (0600)"),
    reason: str = typer.Option(..., "--reason", help="why; recorded in the audit log"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write an account's decrypted session to a file.

    Audited, with the reason given; the file is written 0600.

    \b
    Example:
      tgfleet session export alice --format telethon-string --out alice.txt --reason "move host"
    """
    from tgfleet.account import service as account_service
    from tgfleet.cli._local import cli_audit_context, load_settings, load_vault, run_in_session
    from tgfleet.kit.files import write_private_file
    from tgfleet.vault import service as vault_service

    settings = load_settings()
    if not 3 <= len(reason.strip()) <= 500:
        raise fail("--reason must say why, in 3 to 500 characters")
    check_output(out, force=force)
    vault = load_vault(settings)

    async def work(session: AsyncSession) -> bytes:
        target = await account_service.resolve(session, account)
        content = await vault_service.export(
            session, vault, cli_audit_context(), target.id, fmt=fmt, reason=reason.strip()
        )
        # Written before the unit of work commits: a failed write leaves no export record.
        try:
            await asyncio.to_thread(write_private_file, out, content)
        except OSError as exc:
            raise fail(f"cannot write {out}: {exc.strerror}") from exc
        return content

    content = run_in_session(settings, work)
    console.print(f"wrote {out} ({fmt.value}, {len(content)} bytes, mode 0600)")
