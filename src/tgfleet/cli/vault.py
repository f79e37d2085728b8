"""``tgfleet vault``: create the keyring, rotate it, show what each key wraps.

Database-direct: the vault and the ORM are imported inside the commands (`vault --help`
imports neither).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from tgfleet.cli._runtime import console, fail

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from tgfleet.vault.service import VaultStatus

app = typer.Typer(help="The session vault's key-encryption keys.", no_args_is_help=True)


@app.command()
def init() -> None:
    """Create the vault's key file, mode 0600.

    The file is TGFLEET_VAULT_KEY_FILE, default <data dir>/vault.key. Back it up: without
    it no session in the vault can be decrypted.

    \b
    Example:
      tgfleet vault init
    """
    from tgfleet.cli._local import load_settings
    from tgfleet.exceptions import AppError
    from tgfleet.vault.keyring import init_key_file

    settings = load_settings()
    path = settings.effective_vault_key_file
    try:
        keyring = init_key_file(path)
    except AppError as exc:
        raise fail(exc.message) from exc
    console.print(f"created {path} with key {keyring.active.id}")
    console.print("Back this file up: without it no session in the vault can be decrypted.")


@app.command()
def rotate(
    batch_size: int = typer.Option(500, min=1, max=10_000, help="secrets per transaction"),
) -> None:
    """Add a key and re-wrap every data key under it.

    Keys nothing uses any more are retired. Rerun after a crash to continue where it
    stopped.

    \b
    Example:
      tgfleet vault rotate --batch-size 1000
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from tgfleet.cli._local import cli_audit_context, load_settings, load_vault, with_sessionmaker
    from tgfleet.vault import service as vault_service

    settings = load_settings()
    vault = load_vault(settings)
    with Progress(
        TextColumn("re-wrapping"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("rotate", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = with_sessionmaker(
            settings,
            lambda maker: vault_service.rotate(
                maker, vault, cli_audit_context(), batch_size=batch_size, progress=progress
            ),
        )
    verb = "continued" if report.resumed else "rotated"
    console.print(
        f"{verb} to key {report.target_kek_id}: {report.rewrapped} re-wrapped, "
        f"{report.failed} failed, retired {', '.join(report.retired) or 'none'}"
    )
    if report.failed:
        raise typer.Exit(1)


@app.command()
def status() -> None:
    """List the keys, their state and how many secrets each wraps.

    \b
    Example:
      tgfleet vault status
    """
    from rich.table import Table

    from tgfleet.cli._local import load_settings, load_vault, run_in_session
    from tgfleet.vault import service as vault_service

    settings = load_settings()
    vault = load_vault(settings)

    async def work(session: AsyncSession) -> VaultStatus:
        return await vault_service.status(session, vault)

    result = run_in_session(settings, work, read_only=True)
    table = Table(
        "key id", "state", "secrets", "created", "retired", title=f"source: {result.source}"
    )
    for kek in result.keks:
        table.add_row(
            kek.id, kek.state, str(kek.secrets), kek.created_at or "", kek.retired_at or ""
        )
    console.print(table)
    states = ", ".join(f"{k} {v}" for k, v in sorted(result.secrets_by_state.items())) or "none"
    console.print(f"secrets: {states}")
    if result.last_rotation is not None:
        r = result.last_rotation
        console.print(
            f"last rotation: #{r.id} to {r.target_kek_id}, {r.state}, {r.rewrapped} re-wrapped"
        )
