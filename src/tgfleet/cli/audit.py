"""``tgfleet audit``: verify the hash chain, export records as JSON lines."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditRecordRead, AuditVerifyRead
from tgfleet.cli._runtime import (
    cli_audit_context,
    console,
    fail,
    load_settings,
    open_private,
    run_in_session,
)

app = typer.Typer(help="Verify and export the audit log.", no_args_is_help=True)


@app.command()
def verify() -> None:
    """Check every record's hash and link; exit 1 naming the first bad seq."""
    settings = load_settings()

    async def work(session: AsyncSession) -> AuditVerifyRead:
        return await audit_service.verify(session)

    result = run_in_session(settings, work, read_only=True)
    if result.ok:
        console.print(f"OK {result.count} records")
        return
    raise fail(f"audit chain broken at seq {result.first_bad_seq}: {result.reason}")


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
) -> None:
    """Write records (oldest first) as JSON lines, with their hashes for offline checks."""
    settings = load_settings()
    moment = _parse_since(since)

    async def work(session: AsyncSession) -> int:
        # Plain blocking writes are fine here: this loop is the CLI process's only task.
        count = 0
        handle: TextIO = open_private(output) if output else sys.stdout
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
