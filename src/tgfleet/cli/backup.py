"""``tgfleet backup``: take, verify and restore backups of the database (docs/deploy.md,
"Backup and restore")."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from tgfleet.cli._runtime import check_output, console, err_console, fail

if TYPE_CHECKING:
    from tgfleet.kit.keyfile import KeyCheck

T = TypeVar("T")

app = typer.Typer(
    help="Backups of the database, and the keys they need (which are not in them).",
    no_args_is_help=True,
)

PG_RESTORE_STEPS = """\
PostgreSQL: tgfleet does not run pg_restore; the backup verified. Restore it with:
  1. stop every tgfleet api and worker (scale them to 0);
  2. create an empty database (createdb ...), with TGFLEET_DATABASE_URL pointing at it;
  3. with PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE naming that database:
     tar -xOf {file} database.pgdump \\
       | pg_restore --no-owner --single-transaction --exit-on-error --dbname "$PGDATABASE"
  4. tgfleet db upgrade         # migrates a backup older than this tgfleet
  5. tgfleet backup check-keys  # decrypts a session per vault key id, checks the audit keys
  6. start the api and the workers."""


def _run(work: Coroutine[Any, Any, T]) -> T:
    from tgfleet.exceptions import AppError

    try:
        return asyncio.run(work)
    except AppError as exc:
        raise fail(exc.message) from exc


def _print_checks(vault: list[KeyCheck], audit: list[KeyCheck]) -> None:
    for kind, checks in (("vault", vault), ("audit", audit)):
        for check in checks:
            state = "ok" if check.problem is None else "MISSING"
            console.print(
                f"{kind} key {check.key_id}: {check.records} record(s), {state}", highlight=False
            )


@app.command()
def create(
    output: Path = typer.Argument(..., help="the backup file to write (0600)"),
    include_keys: bool = typer.Option(
        False,
        "--include-keys",
        help="also write the vault and audit key files into the backup: whoever holds the "
        "file then holds every session. Keep keys apart from backups unless you must.",
    ),
    force: bool = typer.Option(False, "--force", help="overwrite OUTPUT if it exists"),
    pg_dump: str = typer.Option("pg_dump", help="the pg_dump to run (PostgreSQL)"),
) -> None:
    """Back up the database online, in one file.

    SQLite: its backup API; PostgreSQL: pg_dump -Fc. A manifest names the keys the backup
    needs; no key material is in it unless --include-keys.

    \b
    Example:
      tgfleet backup create /backups/tgfleet-$(date +%F).tar
    """
    from tgfleet.backup import service as backup_service
    from tgfleet.cli._local import cli_audit_context, load_settings

    settings = load_settings()
    check_output(output, force=force)
    if include_keys:
        err_console.print(
            "[bold red]WARNING:[/bold red] --include-keys writes the vault and audit keys into "
            "the backup: anyone who reads this file can decrypt every session in it. Store it "
            "as you would the keys themselves.",
            highlight=False,
        )
    result = _run(
        backup_service.create(
            settings,
            output,
            cli_audit_context(),
            include_keys=include_keys,
            force=force,
            pg_dump=pg_dump,
        )
    )
    manifest = result.manifest
    console.print(
        f"backed up {manifest.backend} at revision {manifest.schema_revision} to {output} "
        f"({manifest.database_bytes} bytes, sha256 {manifest.database_sha256[:16]}…)",
        highlight=False,
    )
    vault_ids = ", ".join(f"{u.id} ({u.records})" for u in manifest.vault_keys) or "none"
    audit_ids = ", ".join(f"{u.id} ({u.records})" for u in manifest.audit_keys) or "none"
    console.print(f"vault key ids it needs: {vault_ids}", highlight=False)
    console.print(f"audit key ids it needs: {audit_ids}", highlight=False)
    if manifest.includes_keys:
        console.print("the key files are INSIDE this backup", highlight=False)
    else:
        console.print("the backup holds no key: back these up too, apart from it:", highlight=False)
        for source in manifest.key_sources:
            console.print(f"  {source}", highlight=False)


@app.command()
def verify(file: Path = typer.Argument(..., help="a backup file")) -> None:
    """Check a backup without restoring it.

    Checks the manifest, checksum, integrity and schema revision, and that the configured
    keys open one record per key id the backup needs.

    \b
    Example:
      tgfleet backup verify /backups/tgfleet-2026-12-07.tar
    """
    from tgfleet.backup import service as backup_service
    from tgfleet.cli._local import load_settings

    settings = load_settings()
    result = _run(backup_service.verify(settings, file))
    manifest = result.manifest
    console.print(
        f"{file}: {manifest.backend} backup taken {manifest.created_at} by tgfleet "
        f"{manifest.tgfleet_version} at revision {manifest.schema_revision}; integrity "
        f"{result.integrity}",
        highlight=False,
    )
    _print_checks(result.vault, result.audit)
    if result.problems:
        raise fail(
            "the configured keys cannot open this backup:\n  " + "\n  ".join(result.problems)
        )


@app.command()
def restore(
    file: Path = typer.Argument(..., help="a backup file"),
    force: bool = typer.Option(
        False,
        "--force",
        help="replace an existing database (stop tgfleet first; the old one is kept)",
    ),
    install_keys: bool = typer.Option(
        False,
        "--install-keys",
        help="write key files held in the backup (--include-keys) where the settings look "
        "for them, never over an existing file",
    ),
) -> None:
    """Restore a backup as the configured database.

    SQLite: the backup and the keys are checked first, and a failure writes nothing.
    PostgreSQL: verifies and prints the pg_restore steps.

    \b
    Example:
      tgfleet backup restore /backups/tgfleet-2026-12-07.tar
    """
    from tgfleet.backup import service as backup_service
    from tgfleet.cli._local import cli_audit_context, load_settings

    settings = load_settings()
    if backup_service.backend_of(settings) != backup_service.SQLITE:
        verify(file)
        console.print(PG_RESTORE_STEPS.format(file=file), highlight=False)
        return
    result = _run(
        backup_service.restore(
            settings, file, cli_audit_context(), force=force, install_keys=install_keys
        )
    )
    console.print(f"restored {file} to {result.database}", highlight=False)
    if result.migrated_from != result.migrated_to:
        console.print(
            f"migrated from revision {result.migrated_from} to {result.migrated_to}",
            highlight=False,
        )
    if result.replaced is not None:
        console.print(f"the previous database was kept as {result.replaced}", highlight=False)
    for key_file in result.installed_keys:
        console.print(f"installed key file {key_file}", highlight=False)


@app.command("check-keys")
def check_keys() -> None:
    """Check that the configured keys open the configured database.

    Decrypts one session per vault key id and verifies one audit record per audit key id
    (after a pg_restore, or any time).

    \b
    Example:
      tgfleet backup check-keys
    """
    from tgfleet.backup import service as backup_service
    from tgfleet.cli._local import load_settings

    settings = load_settings()
    vault, audit = _run(backup_service.check_keys(settings, settings.effective_database_url))
    problems = [c.problem for c in (*vault, *audit) if c.problem is not None]
    _print_checks(vault, audit)
    if problems:
        raise fail("the configured keys cannot open this database:\n  " + "\n  ".join(problems))
    console.print("every key id in use opens its records", highlight=False)
