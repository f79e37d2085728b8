"""The webhook integration (Alertmanager's webhook body, version 4) and the Alertmanager
integration (``POST {url}/api/v2/alerts``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import httpx

from tgfleet.alert.config import AlertmanagerReceiverConfig, WebhookConfig
from tgfleet.alert.receivers._delivery import (
    DeliveryPolicy,
    Integration,
    _Progress,
    read_secret_file,
)
from tgfleet.alert.receivers._prepared import Prepared, as_utc
from tgfleet.alert.receivers._secrets import url_secrets
from tgfleet.alert.schemas import Alert

#: Go's zero time, which Alertmanager writes for an unknown start or end.
ZERO_TIME: Final = "0001-01-01T00:00:00Z"


def rfc3339(moment: datetime | None) -> str:
    """RFC 3339 in UTC with a ``Z`` (``2026-05-01T12:00:00.5Z``); ``ZERO_TIME`` for None."""
    if moment is None:
        return ZERO_TIME
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def webhook_body(prepared: Prepared, *, receiver: str, max_alerts: int = 0) -> dict[str, Any]:
    """Alertmanager's webhook payload (version "4"); with ``max_alerts`` > 0 only the first
    ``max_alerts`` alerts (firing first) are sent and ``truncatedAlerts`` counts the rest."""
    notification = prepared.notification
    alerts = prepared.alerts
    truncated = 0
    if 0 < max_alerts < len(alerts):
        truncated = len(alerts) - max_alerts
        alerts = alerts[:max_alerts]
    return {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": truncated,
        "status": prepared.status,
        "receiver": receiver,
        "groupLabels": dict(notification.group_labels),
        "commonLabels": dict(prepared.common_labels),
        "commonAnnotations": dict(prepared.common_annotations),
        "externalURL": notification.external_url,
        "alerts": [_webhook_alert(prepared, alert) for alert in alerts],
    }


def _webhook_alert(prepared: Prepared, alert: Alert) -> dict[str, Any]:
    return {
        "status": prepared.status_of(alert),
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(alert.ends_at),
        "generatorURL": alert.generator_url,
        "fingerprint": alert.fingerprint,
    }


def postable_alerts(
    prepared: Prepared, *, firing_ttl: timedelta | None = None
) -> list[dict[str, Any]]:
    """The body of Alertmanager's ``POST /api/v2/alerts``.

    A resolved alert carries its ``endsAt``; a firing one its future ``endsAt`` when known,
    else now + ``firing_ttl`` when set, else none (the Alertmanager then resolves it after
    its ``resolve_timeout`` unless it is posted again).
    """
    posted: list[dict[str, Any]] = []
    for alert in prepared.alerts:
        item: dict[str, Any] = {
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
        }
        if alert.generator_url:
            item["generatorURL"] = alert.generator_url
        if alert.starts_at is not None:
            item["startsAt"] = rfc3339(alert.starts_at)
        if alert.ends_at is not None:
            item["endsAt"] = rfc3339(alert.ends_at)
        elif firing_ttl is not None:
            item["endsAt"] = rfc3339(prepared.now + firing_ttl)
        posted.append(item)
    return posted


class WebhookIntegration(Integration[WebhookConfig]):
    kind = "webhook"

    def __init__(
        self,
        *,
        receiver: str,
        index: int,
        config: WebhookConfig,
        http: httpx.AsyncClient,
        policy: DeliveryPolicy,
    ) -> None:
        if (config.url is None) == (config.url_file is None):
            raise ValueError("give exactly one of url or url_file")
        super().__init__(receiver=receiver, index=index, config=config, http=http, policy=policy)
        if config.url is not None:
            self._add_secrets(url_secrets(config.url.get_secret_value()))

    async def _deliver(self, prepared: Prepared, progress: _Progress) -> None:
        url = await self._target()
        body = webhook_body(prepared, receiver=self.receiver, max_alerts=self._config.max_alerts)
        if body["truncatedAlerts"]:
            progress.detail["truncated_alerts"] = body["truncatedAlerts"]
        await self._with_retries(lambda: self._post_json(url, body, progress), progress)
        progress.messages = 1

    async def _target(self) -> str:
        if self._config.url is not None:
            return self._config.url.get_secret_value()
        assert self._config.url_file is not None  # noqa: S101 - checked in __init__
        url = await read_secret_file(self._config.url_file, "url_file")
        self._add_secrets(url_secrets(url))
        return url


class AlertmanagerIntegration(Integration[AlertmanagerReceiverConfig]):
    kind = "alertmanager"

    async def _deliver(self, prepared: Prepared, progress: _Progress) -> None:
        endpoint = self._config.url.rstrip("/") + "/api/v2/alerts"
        body = postable_alerts(prepared, firing_ttl=self._config.firing_ttl)
        await self._with_retries(lambda: self._post_json(endpoint, body, progress), progress)
        progress.messages = 1
