"""``tgfleet audit``: read, verify and export the audit log (through the server's API when
a context or ``--server`` is chosen), and, on the server's host, verify it offline, publish
checkpoints and rotate the audit key."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import typer

from tgfleet.cli import _remote
from tgfleet.cli._output import OUTPUT, Column, Output, emit, stamp
from tgfleet.cli._runtime import EXIT_USAGE, check_output, console, fail, open_private

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from tgfleet.audit.checkpoint import Checkpoint
    from tgfleet.audit.keys import AuditKeyring
    from tgfleet.audit.schemas import AuditVerifyRead
    from tgfleet.config import Settings

app = typer.Typer(help="The audit log: list, verify, export.", no_args_is_help=True)

COLUMNS = (
    Column("seq", "seq", key=True),
    Column("at", lambda r: stamp(r["at"])),
    Column("actor", "actor"),
    Column("action", "action"),
    Column("target", "target"),
    Column("result", "result", style=lambda v: None if v == "success" else "red"),
    Column("ip", "ip", wide=True),
    Column("details", "details", wide=True),
)
ACTOR: Any = typer.Option(None, "--actor", help="e.g. token:admin/ci, user:alice, cli:root")
ACTION: Any = typer.Option(None, "--action", help="exact, or a prefix ending in * (silence.*)")
TARGET: Any = typer.Option(None, "--target", help="e.g. account:fleet_0001")
SINCE: Any = typer.Option(None, "--since", help="ISO 8601 time with zone (inclusive)")
UNTIL: Any = typer.Option(None, "--until", help="ISO 8601 time with zone (exclusive)")


@app.command("list")
def list_records(
    actor: str | None = ACTOR,
    action: str | None = ACTION,
    target: str | None = TARGET,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    limit: int = typer.Option(50, "--limit", min=1, max=100_000, help="at most this many"),
    output: Output = OUTPUT,
) -> None:
    """Audit records, newest first, filtered by actor, action, target and time.

    \b
    Examples:
      tgfleet audit list --action 'silence.*' --since 2026-12-07T00:00:00Z
      tgfleet audit list --actor token:admin/ci -o json
    """
    query: dict[str, Any] = _filters(actor, action, target, since, until)
    query["limit"] = min(limit, 500)
    records: list[dict[str, Any]] = []
    with _remote.client("audit list") as api:
        for record in api.pages("/api/v1/audit", query):
            records.append(record)
            if len(records) >= limit:
                break
    emit(records, COLUMNS, output, empty="no audit records match")


@app.command()
def verify(
    offline: bool = typer.Option(
        False, "--offline", help="read the database directly (on the server's host)"
    ),
    checkpoints: Path | None = typer.Option(
        None,
        "--checkpoints",
        help="with --offline: checkpoint file to check the log against "
        "(default: TGFLEET_AUDIT_CHECKPOINT_FILE, if it exists)",
    ),
) -> None:
    """Check every record's hash, link and MAC, and the log against the published
    checkpoints; exit 1 naming the first bad seq. The server checks with its keys and its
    checkpoint file; --offline (the default with no server chosen) checks the database
    from this host: without the audit key the MACs are skipped (the line says so), the
    hashes and checkpoints need no secret.

    \b
    Examples:
      tgfleet audit verify
      tgfleet audit verify --offline --checkpoints /backup/checkpoints.jsonl
    """
    if not offline and _remote.target() is not None:
        if checkpoints is not None:
            raise fail("--checkpoints goes with --offline (the server uses its own file)", 2)
        with _remote.client("audit verify") as api:
            result = api.get("/api/v1/audit/verify")
            _report(result, f"{result['checkpoints']} of the server's checkpoints matched")
        return
    _verify_offline(checkpoints)


def _report(result: dict[str, Any], against: str) -> None:
    if not result["ok"]:
        raise fail(f"audit chain broken at seq {result['first_bad_seq']}: {result['reason']}")
    macs = "MACs checked" if result["macs_checked"] else "MACs NOT checked (no audit key)"
    console.print(
        f"OK {result['count']} records ({result['keyed']} keyed, {result['unkeyed']} from "
        f"before audit keys); {macs}; {against}",
        highlight=False,
        soft_wrap=True,
    )


def _verify_offline(checkpoints: Path | None) -> None:
    from tgfleet.audit import checkpoint as audit_checkpoint
    from tgfleet.audit import service as audit_service
    from tgfleet.cli._local import load_settings, run_in_session
    from tgfleet.exceptions import AppError

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
    against = f"{result.checkpoints} checkpoints matched" if path else "no checkpoint file"
    _report(result.model_dump(), against)


def _verifying_keyring(settings: Settings) -> AuditKeyring | None:
    """The audit keys if this machine has them (never creates a key file); None without."""
    from tgfleet.audit import keys as audit_keys
    from tgfleet.exceptions import AppError

    if settings.audit_key is None and not settings.effective_audit_key_file.exists():
        return None
    try:
        return audit_keys.load(settings, create=False)
    except AppError as exc:
        raise fail(exc.message, 2) from exc


@app.command()
def checkpoint() -> None:
    """Publish a checkpoint of the chain head now, to the configured sinks, from the
    server's host (the API processes also publish them on their schedule).

    \b
    Example:
      tgfleet audit checkpoint
    """
    from tgfleet.audit import checkpoint as audit_checkpoint
    from tgfleet.cli._local import load_settings, with_sessionmaker

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
    within seconds. On the server's host.

    \b
    Example:
      tgfleet audit rotate-key
    """
    from tgfleet.audit import keys as audit_keys
    from tgfleet.audit import service as audit_service
    from tgfleet.cli._local import cli_audit_context, load_settings, run_in_session
    from tgfleet.exceptions import AppError

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


def _parse_since(value: str | None, option: str = "--since") -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise fail(
            f"{option} {value!r} is not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)"
        ) from exc
    if moment.tzinfo is None:
        raise fail(f"{option} needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return moment


def _filters(
    actor: str | None, action: str | None, target: str | None, since: str | None, until: str | None
) -> dict[str, str]:
    """The filters given, by the API's names; a time that is not ISO 8601 with a zone
    exits 1."""
    _parse_since(since)
    _parse_since(until, "--until")
    given = {"actor": actor, "action": action, "target": target, "since": since, "until": until}
    return {name: value for name, value in given.items() if value}


@app.command()
def export(
    since: str | None = SINCE,
    until: str | None = UNTIL,
    actor: str | None = ACTOR,
    action: str | None = ACTION,
    target: str | None = TARGET,
    reason: str | None = typer.Option(
        None, "--reason", help="why the records leave (the server needs it; it is audited)"
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="file (default: stdout)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Write records (oldest first) as JSON lines, with their hashes for offline checks.
    The export itself is audited, with --reason. Through the server the reason is
    required (and audit:export); on the server's host with no server chosen only --since
    filters.

    \b
    Examples:
      tgfleet audit export --reason "quarterly review" --since 2026-10-01T00:00:00Z -o q4.jsonl
      tgfleet audit export --reason "incident 42" --action 'account.*' | jq .
    """
    filters = _filters(actor, action, target, since, until)
    if output is not None:
        check_output(output, force=force)
    if _remote.target() is None:
        if set(filters) - {"since"}:
            raise fail(
                "--until, --actor, --action and --target need a server (the API's export); "
                "on the server's host only --since filters",
                EXIT_USAGE,
            )
        count: int | None = _export_locally(since, reason, output, force=force)
    else:
        if not reason:
            raise fail("say why the records leave: pass --reason (it is audited)", EXIT_USAGE)
        body = {"reason": reason, "filters": filters}
        with (
            _remote.client("audit export") as api,
            api.stream("POST", "/api/v1/audit/export", json_body=body) as response,
        ):
            count = _write(response.iter_lines(), output, force=force)
    if output:
        console.print(f"wrote {count} records to {output}")


def _write(lines: Any, output: Path | None, *, force: bool) -> int:
    """Write JSON lines to ``output`` (0600) or stdout; how many."""
    count = 0
    handle: TextIO = open_private(output, force=force) if output else sys.stdout
    try:
        for line in lines:
            if line:
                handle.write(line + "\n")
                count += 1
    finally:
        if output:
            handle.close()
    return count


def _export_locally(
    since: str | None, reason: str | None, output: Path | None, *, force: bool
) -> int:
    from tgfleet.audit import service as audit_service
    from tgfleet.audit.schemas import AuditRecordRead
    from tgfleet.cli._local import cli_audit_context, load_settings, run_in_session

    settings = load_settings()
    moment = _parse_since(since)

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
            details={
                "records": count,
                "since": since,
                "output": str(output or "stdout"),
                **({"reason": reason} if reason else {}),
            },
        )

    run_in_session(settings, record_export)
    return count
