"""Alerting in a running process: the configuration, the receivers, the dispatcher and the
evaluator, started and stopped with the API (``tgfleet run`` and every ``tgfleet api``;
on PostgreSQL one of them leads, see :mod:`tgfleet.alert.evaluator`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Final

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tgfleet import __version__, metrics
from tgfleet.alert import service as alert_service
from tgfleet.alert.config import AlertingConfig, config_from_settings
from tgfleet.alert.engine import Dispatcher
from tgfleet.alert.evaluator import Evaluator, Thresholds
from tgfleet.alert.receivers import build_receivers
from tgfleet.alert.schemas import Alert, DeliveryResult, Notification
from tgfleet.audit import service as audit_service
from tgfleet.audit.schemas import AuditContext
from tgfleet.config import Settings
from tgfleet.exceptions import NotFound, ServiceUnavailable
from tgfleet.health.delivery import DeliveryRecord
from tgfleet.health.network import NetworkMonitor
from tgfleet.kit.clock import utcnow
from tgfleet.kit.lifecycle import Lifecycle, cancel_and_wait
from tgfleet.logging import get_logger

log = get_logger(__name__)

HTTP_TIMEOUT: Final = 30.0
#: Seconds between re-posts of firing alerts to external Alertmanagers (Prometheus' own
#: resend delay is 1 m; Alertmanager's resolve_timeout 5 m).
RESEND_EVERY: Final = 60.0


class UnknownReceiver(LookupError):
    pass


def trial_notification(receiver: str, actor: str, external_url: str = "") -> Notification:
    """One firing ``TestNotification`` alert addressed to ``receiver``."""
    now = utcnow()
    alert = Alert(
        labels={"alertname": "TestNotification", "severity": "info", "receiver": receiver},
        annotations={
            "summary": "A test notification from tgfleet",
            "description": f"Sent by {actor} to check the receiver {receiver!r}.",
        },
        starts_at=now,
        ends_at=now + timedelta(minutes=5),
    )
    return Notification(
        receiver=receiver,
        group_key=f"test:{{receiver={receiver!r}}}",
        group_labels={"alertname": "TestNotification"},
        status="firing",
        alerts=(alert,),
        common_labels=dict(alert.labels),
        common_annotations=dict(alert.annotations),
        external_url=external_url,
        at=now,
    )


class AlertingRuntime(Lifecycle):
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        network: NetworkMonitor | None = None,
        delivery: DeliveryRecord | None = None,
        config: AlertingConfig | None = None,
    ) -> None:
        # load_config logs the configuration's warnings itself.
        self.config = config if config is not None else config_from_settings(settings)
        self._http = httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, headers={"User-Agent": f"tgfleet/{__version__}"}
        )
        self.receivers = build_receivers(self.config, self._http)
        self._delivery = delivery
        self.dispatcher = Dispatcher(
            self.config.root_route,
            self._send,
            log=alert_service.DatabaseLog(sessionmaker),
            inhibit_rules=self.config.inhibitions,
            send_resolved=self._wants_resolved,
            external_url=settings.alerting_external_url,
        )
        #: Receivers with an ``alertmanager_configs`` integration: their firing alerts are
        #: re-posted every RESEND_EVERY seconds.
        self._pushing = tuple(
            name
            for name, receiver in self.receivers.items()
            if any(i.kind == "alertmanager" for i in receiver.integrations)
        )
        self._resend_task: asyncio.Task[None] | None = None
        self.evaluator = Evaluator(
            sessionmaker,
            self.dispatcher,
            interval=settings.alerting_evaluation_interval_seconds,
            thresholds=Thresholds(
                online_ratio=settings.alerting_online_ratio_threshold,
                flood_wait_seconds=settings.alerting_flood_wait_threshold_seconds,
            ),
            network_snapshot=network.snapshot if network is not None else None,
            engine=engine,
        )

    def start(self) -> None:
        self.evaluator.start()
        if self._pushing and self._resend_task is None:
            self._resend_task = asyncio.create_task(self._resend_loop(), name="alert:resend")

    async def stop(self) -> None:
        task, self._resend_task = self._resend_task, None
        await cancel_and_wait(task)
        await self.evaluator.stop()
        await self._http.aclose()

    async def _resend_loop(self) -> None:
        """Re-post firing alerts to the external Alertmanagers every RESEND_EVERY seconds,
        while this process leads (an Alertmanager resolves what it stops hearing about)."""
        while True:
            await asyncio.sleep(RESEND_EVERY)
            if not self.evaluator.leader:
                continue
            try:
                await self.dispatcher.refresh(self._push, self._pushing)
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("alert.resend_failed", error=type(exc).__name__)

    async def _push(self, receiver: str, notification: Notification) -> Sequence[DeliveryResult]:
        target = self.receivers.get(receiver)
        if target is None:
            return []
        pushers = [i for i in target.integrations if i.kind == "alertmanager"]
        return [await integration.notify(notification) for integration in pushers]

    # ---- delivery

    def _wants_resolved(self, receiver: str) -> bool:
        try:
            config = self.config.receiver(receiver)
        except KeyError:
            return False
        return (
            any(i.send_resolved for i in config.telegram_configs)
            or any(i.send_resolved for i in config.webhook_configs)
            or any(i.send_resolved for i in config.alertmanager_configs)
        )

    async def _send(self, receiver: str, notification: Notification) -> Sequence[DeliveryResult]:
        target = self.receivers.get(receiver)
        if target is None:
            return []
        results = await target.notify(notification)
        if self._delivery is not None and results:
            if all(r.ok for r in results):
                self._delivery.record_success(utcnow())
            else:
                errors = "; ".join(f"{r.integration}: {r.error}" for r in results if not r.ok)
                self._delivery.record_failure(utcnow(), errors)
        return results

    async def send_test(self, receiver: str, *, actor: str) -> list[DeliveryResult]:
        """A test notification through ``receiver``, now, past grouping and silences."""
        target = self.receivers.get(receiver)
        if target is None:
            known = ", ".join(sorted(self.receivers)) or "none"
            raise UnknownReceiver(f"no receiver {receiver!r} (known: {known})")
        notification = trial_notification(receiver, actor, self.dispatcher.external_url)
        results = list(await target.notify(notification))
        if not results:
            metrics.ALERT_NOTIFICATIONS.labels(receiver, "failed").inc()
        return results

    # ---- views

    def muting(self) -> dict[str, tuple[list[str], bool]]:
        """fingerprint -> (silences muting it, whether an inhibition rule mutes it)."""
        return {
            alert.fingerprint: (silences, inhibited)
            for alert, silences, inhibited in self.dispatcher.active()
        }


async def send_test_notification(
    runtime: AlertingRuntime | None,
    session: AsyncSession,
    context: AuditContext,
    receiver: str,
) -> list[DeliveryResult]:
    """``POST /alerts/test`` (and the console's twin): a test notification through
    ``receiver`` now, audited as ``alert.test`` (a failure when nothing was delivered: no
    integration, or one failed). An unknown receiver is a NotFound naming the known ones."""
    if runtime is None:
        raise ServiceUnavailable("alerting is not running in this process")
    try:
        results = await runtime.send_test(receiver, actor=context.actor)
    except UnknownReceiver as exc:
        raise NotFound(str(exc)) from exc
    ok = bool(results) and all(r.ok for r in results)
    await audit_service.record(
        session,
        context,
        action="alert.test",
        target=f"receiver:{receiver}",
        result=audit_service.SUCCESS if ok else audit_service.FAILURE,
        details={"integrations": [r.integration for r in results], "ok": ok},
    )
    return results
