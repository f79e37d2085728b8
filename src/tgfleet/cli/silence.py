"""``tgfleet silence``: mute alerts for a while (Alertmanager's silences), audited."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from tgfleet.alert import service as alert_service
from tgfleet.cli._local import cli_audit_context, load_settings, run_in_session
from tgfleet.cli._runtime import console, fail
from tgfleet.kit.clock import utcnow
from tgfleet.models import Silence

app = typer.Typer(help="Silences: mute matching alerts for a while.", no_args_is_help=True)

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_matcher(text: str) -> dict[str, object]:
    """``account="fleet_0001"``, ``severity!=info``, ``account=~"fleet_.*"``."""
    found = _MATCHER.match(text)
    if found is None:
        msg = f"{text!r} is not a matcher: use name=value, name!=value, name=~regex or name!~regex"
        raise ValueError(msg)
    name, op, value = found.groups()
    return {"name": name, "value": value, "is_regex": "~" in op, "is_equal": op in {"=", "=~"}}


def parse_duration(text: str) -> timedelta:
    found = _DURATION.match(text.strip())
    if not text.strip() or found is None:
        msg = f"{text!r} is not a duration: use e.g. 30m, 2h, 1d12h"
        raise ValueError(msg)
    days, hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


@app.command("add")
def add(
    matchers: list[str] = typer.Argument(..., help='matchers, e.g. account="fleet_0001"'),
    duration: str = typer.Option("2h", "--for", help="how long, e.g. 30m, 2h, 1d"),
    comment: str = typer.Option(..., "--comment", "-c", help="why (shown to whoever is on call)"),
) -> None:
    """Mute the alerts all MATCHERS match, from now for --for."""
    settings = load_settings()
    try:
        parsed = [parse_matcher(m) for m in matchers]
        length = parse_duration(duration)
    except ValueError as exc:
        raise fail(str(exc), 2) from exc
    context = cli_audit_context()

    async def work(session: AsyncSession) -> Silence:
        return await alert_service.create_silence(
            session,
            context,
            matchers=parsed,
            starts_at=None,
            ends_at=utcnow() + length,
            comment=comment,
        )

    silence = run_in_session(settings, work)  # a refused silence: its reason, exit 1
    console.print(f"silence {silence.id} until {silence.ends_at.isoformat()}", highlight=False)


@app.command("list")
def list_silences(
    expired: bool = typer.Option(False, "--expired", help="also list expired silences"),
) -> None:
    """Pending and active silences (and expired ones with --expired)."""
    settings = load_settings()

    async def work(session: AsyncSession) -> list[Silence]:
        return await alert_service.list_silences(session, include_expired=expired)

    table = Table("id", "matchers", "starts", "ends", "by", "comment")
    for row in run_in_session(settings, work, read_only=True):
        table.add_row(
            str(row.id),
            " ".join(str(m) for m in alert_service.to_silence(row).matchers),
            row.starts_at.isoformat(timespec="seconds"),
            row.ends_at.isoformat(timespec="seconds"),
            row.created_by,
            row.comment,
        )
    console.print(table)


@app.command("expire")
def expire(silence_id: uuid.UUID = typer.Argument(..., help="the silence's id")) -> None:
    """End a silence now."""
    settings = load_settings()
    context = cli_audit_context()

    async def work(session: AsyncSession) -> Silence:
        return await alert_service.expire_silence(session, context, silence_id)

    run_in_session(settings, work)
    console.print(f"silence {silence_id} expired")
