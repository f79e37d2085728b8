"""``tgfleet alert``: the alerts firing now and their history (through the server's API),
and, on the server's host, a check of the alerting configuration and test notifications."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import typer

from tgfleet.cli import _remote
from tgfleet.cli._output import OUTPUT, Column, Output, ago, emit, stamp
from tgfleet.cli._runtime import console, fail

app = typer.Typer(
    help="Alerts: firing now, history; check the configuration, send test notifications.",
    no_args_is_help=True,
)

#: Labels with a column of their own; the others are shown in LABELS.
_NAMED_LABELS = ("alertname", "severity")


def _other_labels(alert: Mapping[str, Any]) -> str:
    labels = alert.get("labels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in _NAMED_LABELS)


def _state(alert: Mapping[str, Any]) -> str:
    """firing, silenced (a silence mutes it), inhibited, or resolved."""
    if alert.get("status") == "resolved":
        return "resolved"
    if alert.get("silenced_by"):
        return "silenced"
    return "inhibited" if alert.get("inhibited") else str(alert.get("status", ""))


def _severity_style(value: Any) -> str | None:
    return {"critical": "red", "warning": "yellow"}.get(str(value))


ALERT_COLUMNS = (
    Column("alertname", "labels.alertname", key=True),
    Column("severity", "labels.severity", style=_severity_style),
    Column("labels", _other_labels),
    Column("since", lambda a: ago(a.get("starts_at"))),
    Column("state", _state),
    Column("silenced-by", "silenced_by"),
    Column("summary", "annotations.summary", wide=True),
    Column("fingerprint", "fingerprint", wide=True, key=True),
)
HISTORY_COLUMNS = (
    Column("alertname", "labels.alertname", key=True),
    Column("severity", "labels.severity", style=_severity_style),
    Column("labels", _other_labels),
    Column("started", lambda a: stamp(a.get("starts_at"))),
    Column("ended", lambda a: stamp(a.get("ends_at"))),
    Column("summary", "annotations.summary", wide=True),
    Column("fingerprint", "fingerprint", wide=True, key=True),
)
NOTIFICATION_COLUMNS = (
    Column("sent", lambda n: stamp(n.get("sent_at"))),
    Column("receiver", "receiver"),
    Column("status", "status"),
    Column("firing", "firing"),
    Column("resolved", "resolved"),
    Column("ok", "ok", style=lambda ok: None if ok else "red"),
    Column("group", "group_key", wide=True),
)
LIMIT: Any = typer.Option(100, "--limit", min=1, max=10_000, help="at most this many rows")


@app.command("list")
def list_alerts(
    alertname: str | None = typer.Option(None, "--alertname", help="only this alert"),
    severity: str | None = typer.Option(None, "--severity", help="only this severity"),
    limit: int = LIMIT,
    output: Output = OUTPUT,
) -> None:
    """The alerts firing now, newest first, with the silences muting them.

    \b
    Examples:
      tgfleet alert list
      tgfleet alert list --severity critical -o json
    """
    with _remote.client("alert list") as api:
        query = {"alertname": alertname, "severity": severity, "limit": min(limit, 1000)}
        items = _first(api.pages("/api/v1/alerts", query), limit)
    emit(items, ALERT_COLUMNS, output, empty="no alert is firing")


@app.command("history")
def history(
    notifications: bool = typer.Option(
        False, "--notifications", help="the notifications sent, not the resolved alerts"
    ),
    limit: int = LIMIT,
    output: Output = OUTPUT,
) -> None:
    """Resolved alerts, newest first (kept 30 days), or with --notifications the
    notifications sent and what the receivers answered.

    \b
    Examples:
      tgfleet alert history
      tgfleet alert history --notifications -o wide
    """
    with _remote.client("alert history") as api:
        if notifications:
            page = api.get("/api/v1/alerts/history", limit=min(limit, 1000))
            sent = page["notifications"][:limit]
            emit(sent, NOTIFICATION_COLUMNS, output, empty="no notification was sent")
            return
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(items) < limit:
            page = api.get("/api/v1/alerts/history", limit=min(limit, 1000), cursor=cursor)
            items.extend(page["alerts"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
    emit(items[:limit], HISTORY_COLUMNS, output, empty="no resolved alert")


def _first(pages: Any, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for item in pages:
        items.append(item)
        if len(items) >= limit:
            break
    return items


@app.command("check")
def check() -> None:
    """Validate TGFLEET_ALERTING_CONFIG on the server's host (exit 2 with every problem
    and its line).

    \b
    Example:
      TGFLEET_ALERTING_CONFIG=alerting.yaml tgfleet alert check
    """
    from tgfleet.alert.config import config_from_settings
    from tgfleet.alert.exceptions import AlertingConfigError
    from tgfleet.cli._local import load_settings

    settings = load_settings()
    try:
        config = config_from_settings(settings)
    except AlertingConfigError as exc:
        raise fail(str(exc), 2) from exc
    for warning in config.warnings:
        console.print(f"warning: {warning}", highlight=False)
    source = config.source or "the default configuration (nothing is sent)"
    console.print(
        f"{source}: {len(config.receivers)} receivers ({', '.join(config.receiver_names)})",
        highlight=False,
    )


@app.command("test")
def send_test(
    receiver: str = typer.Argument(..., help="a receiver named in the configuration"),
) -> None:
    """Send a test notification through RECEIVER now, from the server's host, and print
    each integration's result (exit 1 when one failed).

    \b
    Example:
      tgfleet alert test oncall
    """
    from tgfleet.alert.config import config_from_settings
    from tgfleet.alert.exceptions import AlertingConfigError
    from tgfleet.alert.receivers import build_receivers
    from tgfleet.alert.runtime import trial_notification
    from tgfleet.cli._local import cli_audit_context, load_settings

    settings = load_settings()
    try:
        config = config_from_settings(settings)
    except AlertingConfigError as exc:
        raise fail(str(exc), 2) from exc
    if receiver not in config.receiver_names:
        known = ", ".join(config.receiver_names) or "none"
        raise fail(f"no receiver {receiver!r} (known: {known})", 2)
    actor = cli_audit_context().actor

    async def send() -> list[tuple[str, bool, str | None, int]]:
        import httpx

        async with httpx.AsyncClient(timeout=30) as http:
            target = build_receivers(config, http)[receiver]
            results = await target.notify(
                trial_notification(receiver, actor, settings.alerting_external_url)
            )
        return [(r.integration, r.ok, r.error, r.attempts) for r in results]

    results = asyncio.run(send())
    if not results:
        raise fail(f"receiver {receiver!r} has no integrations: nothing was sent", 1)
    for integration, ok, error, attempts in results:
        status = "sent" if ok else f"failed: {error}"
        console.print(f"{integration}: {status} ({attempts} attempt(s))", highlight=False)
    if not all(ok for _, ok, _, _ in results):
        raise typer.Exit(1)
