"""``tgfleet alert``: check the alerting configuration and its receivers."""

from __future__ import annotations

import asyncio

import typer

from tgfleet.cli._local import cli_audit_context, load_settings
from tgfleet.cli._runtime import console, fail

app = typer.Typer(
    help="Alerting: check the configuration, send test notifications.", no_args_is_help=True
)


@app.command("check")
def check() -> None:
    """Validate TGFLEET_ALERTING_CONFIG (exit 2 with every problem and its line)."""
    from tgfleet.alert.config import config_from_settings
    from tgfleet.alert.exceptions import AlertingConfigError

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
    """Send a test notification through RECEIVER now and print each integration's result
    (exit 1 when one failed)."""
    from tgfleet.alert.config import config_from_settings
    from tgfleet.alert.exceptions import AlertingConfigError
    from tgfleet.alert.receivers import build_receivers
    from tgfleet.alert.runtime import trial_notification

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
