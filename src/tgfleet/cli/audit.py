"""``tgfleet audit``: verify the keyed hash chain, publish checkpoints, rotate the audit key,
export records as JSON lines."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tgfleet.audit import checkpoint as audit_checkpoint
from tgfleet.audit import keys as audit_keys
from tgfleet.audit import service as audit_service
from tgfleet.audit.checkpoint import Checkpoint
from tgfleet.audit.keys import AuditKeyring
from tgfleet.audit.schemas import AuditRecordRead, AuditVerifyRead
from tgfleet.cli._local import cli_audit_context, load_settings, run_in_session, with_sessionmaker
from tgfleet.cli._runtime import check_output, console, fail, open_private
from tgfleet.config import Settings
from tgfleet.exceptions import AppError

app = typer.Typer(help="Verify and export the audit log.", no_args_is_help=True)


@app.command()
def verify(
    checkpoints: Path | None = typer.Option(
        None,
        "--checkpoints",
        help="checkpoint file to check the log against "
        "(default: TGFLEET_AUDIT_CHECKPOINT_FILE, if it exists)",
    ),
) -> None:
    """Check every record's hash, link and MAC, and the log against the published
    checkpoints; exit 1 naming the first bad seq. Without the audit key the MACs are skipped
    (the line says so): the hashes and checkpoints need no secret."""
    settings = load_settings()
    keyring = _verifying_keyring(settings)
    path = checkpoints
    if path is None and settings.effective_audit_checkpoint_file.exists():
        path = settings.effective_audit_checkpoint_file
    try:
        published = audit_checkpoint.read_file(path) if path is not None else []
    except AppError as exc:
        raise fail(exc.message) from exc

    async def work(session: AsyncSession) -> AuditVerifyRead:
        return await audit_service.verify(session, keyring=keyring, checkpoints=published)

    result = run_in_session(settings, work, read_only=True)
    if not result.ok:
        raise fail(f"audit chain broken at seq {result.first_bad_seq}: {result.reason}")
    macs = "MACs checked" if result.macs_checked else "MACs NOT checked (no audit key)"
    against = f"{result.checkpoints} checkpoints matched" if path else "no checkpoint file"
    console.print(
        f"OK {result.count} records ({result.keyed} keyed, {result.unkeyed} from before "
        f"audit keys); {macs}; {against}",
        highlight=False,
    )


def _verifying_keyring(settings: Settings) -> AuditKeyring | None:
    """The audit keys if this machine has them (never creates a key file); None without."""
    if settings.audit_key is None and not settings.effective_audit_key_file.exists():
        return None
    try:
        return audit_keys.load(settings, create=False)
    except AppError as exc:
        raise fail(exc.message, 2) from exc


@app.command()
def checkpoint() -> None:
    """Publish a checkpoint of the chain head now, to the configured sinks (the API
    processes also publish them on their schedule)."""
    settings = load_settings()

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> Checkpoint | None:
        publisher = audit_checkpoint.CheckpointPublisher(settings, sessionmaker)
        return await publisher.publish_due(force=True)

    published = with_sessionmaker(settings, work)
    if published is None:
        console.print("no record since the last checkpoint; nothing published")
        return
    console.print(
        f"checkpoint seq {published.seq} hash {published.hash} key {published.key_id} "
        f"written to {settings.effective_audit_checkpoint_file}",
        highlight=False,
    )


@app.command("rotate-key")
def rotate_key() -> None:
    """Add a new audit key to the audit key file and make it active; earlier keys stay, to
    verify the records they keyed. Running processes reading the same file switch to it
    within seconds."""
    settings = load_settings()
    if settings.audit_key is not None:
        raise fail(
            "TGFLEET_AUDIT_KEY is set: rotate by setting a new key, moving the old one to "
            "TGFLEET_AUDIT_PREVIOUS_KEYS and restarting every process",
            2,
        )
    path = settings.effective_audit_key_file
    try:
        previous = audit_keys.load(settings).active.id
        key = audit_keys.add_key(path)
    except AppError as exc:
        raise fail(exc.message, 2) from exc
    audit_keys.configure(settings)  # this record is keyed by the new key already

    async def work(session: AsyncSession) -> None:
        await audit_service.record(
            session,
            cli_audit_context(),
            action="audit.key.rotate",
            target=f"audit-key:{key.id}",
            details={"previous": previous},
        )

    run_in_session(settings, work)
    console.print(
        f"audit key {key.id} is now active in {path} (was {previous}); processes using "
        f"this file switch to it within seconds; back the file up",
        highlight=False,
    )


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise fail(
            f"--since {value!r} is not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)"
        ) from exc
    if moment.tzinfo is None:
        raise fail("--since needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return moment


@app.command()
def export(
    since: str | None = typer.Option(None, "--since", help="ISO 8601 time with zone"),
    output: Path | None = typer.Option(None, "--output", "-o", help="file (default: stdout)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write records (oldest first) as JSON lines, with their hashes for offline checks."""
    settings = load_settings()
    moment = _parse_since(since)
    if output is not None:
        check_output(output, force=force)

    async def work(session: AsyncSession) -> int:
        # Plain blocking writes are fine here: this loop is the CLI process's only task.
        count = 0
        handle: TextIO = open_private(output, force=force) if output else sys.stdout
        try:
            async for entry in audit_service.stream(session, since=moment):
                line = AuditRecordRead.model_validate(entry).model_dump_json()
                handle.write(line + "\n")
                count += 1
        finally:
            if output:
                handle.close()
        return count

    count = run_in_session(settings, work, read_only=True)

    async def record_export(session: AsyncSession) -> None:
        await audit_service.record(
            session,
            cli_audit_context(),
            action="audit.export",
            target="audit",
            details={"records": count, "since": since, "output": str(output or "stdout")},
        )

    run_in_session(settings, record_export)
    if output:
        console.print(f"wrote {count} records to {output}")
