"""``tgfleet session``: import session files into the vault, export them (audited)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.account import service as account_service
from tgfleet.cli._local import (
    cli_audit_context,
    load_settings,
    load_vault,
    run_in_session,
    with_sessionmaker,
)
from tgfleet.cli._runtime import check_output, console, fail
from tgfleet.config import Settings
from tgfleet.exceptions import AppError
from tgfleet.kit.db import unit_of_work
from tgfleet.kit.files import write_private_file
from tgfleet.vault import service as vault_service
from tgfleet.vault.archive import Entry
from tgfleet.vault.formats import SessionFormat
from tgfleet.vault.service import Vault

app = typer.Typer(help="Import and export Telegram sessions.", no_args_is_help=True)


def _replace(settings: Settings, vault: Vault, paths: list[Path], ref: str) -> None:
    if len(paths) != 1 or not paths[0].is_file():
        raise fail("--account takes exactly one session file")
    try:
        entries = vault_service.expand_path(paths[0], vault.limits)
    except AppError as exc:
        raise fail(f"{paths[0]}: {exc.message}") from exc
    if len(entries) != 1:
        raise fail(f"{paths[0]}: holds {len(entries)} sessions; --account takes exactly one")

    async def work(maker: async_sessionmaker[AsyncSession]) -> vault_service.ReplaceResult:
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
    """Import sessions; prints a result per file and exits 1 if any failed."""
    settings = load_settings()
    vault = load_vault(settings)
    if account is not None:
        _replace(settings, vault, paths, account)
        return
    entries: list[Entry] = []
    for path in paths:
        if not path.exists():
            raise fail(f"{path}: no such file or folder")
        try:
            entries += vault_service.expand_path(path, vault.limits)
        except AppError as exc:
            raise fail(f"{path}: {exc.message}") from exc
        except OSError as exc:
            raise fail(f"{path}: {exc.strerror}") from exc
    try:
        vault_service.check_totals(entries, vault.limits)
    except AppError as exc:
        raise fail(exc.message) from exc
    if label is not None and len(entries) != 1:
        raise fail("--label names one account; give exactly one session file")
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
    table = Table("file", "result", "account", "label / error")
    for result in results:
        if result.ok:
            table.add_row(
                result.name, "[green]imported[/green]", str(result.account_id), result.label
            )
        else:
            table.add_row(result.name, "[red]failed[/red]", "", f"{result.error}: {result.detail}")
    console.print(table)
    failed = sum(not r.ok for r in results)
    console.print(f"{len(results) - failed} imported, {failed} failed")
    if failed:
        raise typer.Exit(1)


@app.command()
def export(
    account: str = typer.Argument(..., help="account id or unique label"),
    fmt: SessionFormat = typer.Option(..., "--format", help="output format"),
    out: Path = typer.Option(..., "--out", help="file to write (0600)"),
    reason: str = typer.Option(..., "--reason", help="why; recorded in the audit log"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write an account's decrypted session to a file (audited, needs a reason)."""
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
