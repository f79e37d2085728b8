"""``tgfleet silence``: mute alerts for a while (Alertmanager's silences), audited.

Through the server's API (``/api/v1/silences``) when a context or ``--server`` is chosen;
otherwise database-direct on the server's host, as the local admin. Both print the API's
shapes: ``-o json`` is the same either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

from tgfleet.cli import _complete, _remote
from tgfleet.cli._output import OUTPUT, Column, Output, emit, stamp
from tgfleet.cli._runtime import console, fail

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

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


def matcher_text(matcher: Mapping[str, Any]) -> str:
    """An API matcher (``{"name", "value", "is_regex", "is_equal"}``) as it is typed:
    ``account="fleet_0001"``, ``severity!~"info|debug"``."""
    equal, regex = matcher.get("is_equal", True), matcher.get("is_regex", False)
    op = {(True, False): "=", (True, True): "=~", (False, False): "!=", (False, True): "!~"}[
        (bool(equal), bool(regex))
    ]
    return f"{matcher.get('name')}{op}{json.dumps(str(matcher.get('value', '')))}"


COLUMNS = (
    Column("id", "id", key=True),
    Column("matchers", lambda s: " ".join(matcher_text(m) for m in s["matchers"])),
    Column("state", "state"),
    Column("starts", lambda s: stamp(s["starts_at"]), wide=True),
    Column("ends", lambda s: stamp(s["ends_at"])),
    Column("by", "created_by"),
    Column("comment", "comment"),
)


@app.command("add")
def add(
    matchers: list[str] = typer.Argument(..., help='matchers, e.g. account="fleet_0001"'),
    duration: str = typer.Option("2h", "--for", help="how long, e.g. 30m, 2h, 1d"),
    comment: str = typer.Option(..., "--comment", "-c", help="why (shown to whoever is on call)"),
) -> None:
    """Mute the alerts all MATCHERS match, from now for --for; prints the silence's id.

    \b
    Examples:
      tgfleet silence add 'account="fleet_0001"' --for 2h -c "re-login in progress"
      tgfleet silence add 'alertname=~"Flood.*"' severity!=critical --for 30m -c "known"
    """
    try:
        parsed = [parse_matcher(m) for m in matchers]
        length = parse_duration(duration)
    except ValueError as exc:
        raise fail(str(exc), 2) from exc
    if _remote.target() is None:
        created = _add_locally(parsed, length, comment)
    else:
        ends_at = datetime.now(UTC) + length
        with _remote.client("silence add") as api:
            created = api.post(
                "/api/v1/silences",
                {"matchers": parsed, "ends_at": ends_at.isoformat(), "comment": comment},
            )
    console.print(f"silence {created['id']} until {stamp(created['ends_at'])}", highlight=False)


@app.command("list")
def list_silences(
    expired: bool = typer.Option(False, "--expired", help="also list expired silences"),
    output: Output = OUTPUT,
) -> None:
    """Pending and active silences (and expired ones with --expired).

    \b
    Examples:
      tgfleet silence list
      tgfleet silence list --expired -o json
    """
    if _remote.target() is None:
        items = _list_locally(include_expired=expired)
    else:
        with _remote.client("silence list") as api:
            items = api.get("/api/v1/silences", include_expired=expired)
    emit(items, COLUMNS, output, empty="no silences")


@app.command("expire")
def expire(
    silence_id: str = typer.Argument(
        ...,
        help="the silence's id, or a unique prefix of 6+ characters",
        autocompletion=_complete.silence_ids,
    ),
) -> None:
    """End a silence now (it is kept, as expired).

    \b
    Examples:
      tgfleet silence expire 1a6f7b97
      tgfleet silence expire 1a6f7b97-63d0-43b1-a2be-f83c0ffee000
    """
    if _remote.target() is None:
        expired = _expire_locally(silence_id)
    else:
        with _remote.client("silence expire") as api:
            chosen = silence_id.strip()
            if not _remote.is_uuid(chosen):
                chosen = _pick(silence_id, api.get("/api/v1/silences"))
            expired = api.delete(f"/api/v1/silences/{chosen}")
    console.print(f"silence {expired['id']} expired", highlight=False)


def _pick(ref: str, silences: list[dict[str, Any]]) -> str:
    """The one pending or active silence ``ref`` names (a full id or a unique prefix)."""
    return _remote.pick(ref, [(str(s["id"]), "") for s in silences], "active or pending silence")


# ----------------------------------------------------------------------- database-direct


def _read(row: Silence) -> dict[str, Any]:
    """A silence row in the API's shape (``SilenceRead``)."""
    from tgfleet.kit.clock import utcnow

    now = utcnow()
    state = "pending" if row.starts_at > now else "active" if row.ends_at > now else "expired"
    return {
        "id": str(row.id),
        "matchers": list(row.matchers),
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat(),
        "created_by": row.created_by,
        "comment": row.comment,
        "created_at": row.created_at.isoformat(),
        "state": state,
    }


def _add_locally(
    matchers: list[dict[str, object]], length: timedelta, comment: str
) -> dict[str, Any]:
    from tgfleet.alert import service as alert_service
    from tgfleet.cli._local import cli_audit_context, load_settings, run_in_session
    from tgfleet.kit.clock import utcnow

    settings = load_settings()
    context = cli_audit_context()

    async def work(session: AsyncSession) -> dict[str, Any]:
        row = await alert_service.create_silence(
            session,
            context,
            matchers=matchers,
            starts_at=None,
            ends_at=utcnow() + length,
            comment=comment,
        )
        return _read(row)

    return run_in_session(settings, work)  # a refused silence: its reason, exit 1


def _list_locally(*, include_expired: bool) -> list[dict[str, Any]]:
    from tgfleet.alert import service as alert_service
    from tgfleet.cli._local import load_settings, run_in_session

    settings = load_settings()

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        rows = await alert_service.list_silences(session, include_expired=include_expired)
        return [_read(row) for row in rows]

    return run_in_session(settings, work, read_only=True)


def _expire_locally(ref: str) -> dict[str, Any]:
    import uuid

    from tgfleet.alert import service as alert_service
    from tgfleet.cli._local import cli_audit_context, load_settings, run_in_session

    settings = load_settings()
    if _remote.is_uuid(ref.strip()):
        silence_id = uuid.UUID(ref.strip())
    else:
        silence_id = uuid.UUID(_pick(ref, _list_locally(include_expired=False)))
    context = cli_audit_context()

    async def work(session: AsyncSession) -> dict[str, Any]:
        return _read(await alert_service.expire_silence(session, context, silence_id))

    return run_in_session(settings, work)
