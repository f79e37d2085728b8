"""Receivers: where notifications go (DESIGN §10).

:func:`build_receivers` turns the configuration's ``receivers`` into :class:`Receiver`
objects; ``await receiver.notify(notification)`` delivers one notification to each of the
receiver's integrations concurrently and answers one
:class:`~tgfleet.alert.schemas.DeliveryResult` per integration. It never raises for a
failed delivery.

- Telegram: ``sendMessage``, one message per notification, or ``(k/n)`` parts split at line
  boundaries when it is over 4,096 characters (each part valid HTML, no alert lost); 429
  waits ``retry_after`` (up to ``DeliveryPolicy.max_retry_after``), 5xx and network
  errors back off and retry, other 4xx fail at once with Telegram's description.
- Webhook: Alertmanager's webhook body (version 4), ``max_alerts`` truncation.
- Alertmanager: ``POST {url}/api/v2/alerts``.

Each try has a timeout, each delivery a deadline (:class:`DeliveryPolicy`). Secrets (the
bot token, webhook URLs) never appear in logs, errors or results.
"""

from __future__ import annotations

from typing import Any

import httpx

from tgfleet.alert.config import AlertingConfig, ReceiverConfig
from tgfleet.alert.receivers._delivery import DeliveryPolicy, Integration, Receiver
from tgfleet.alert.receivers._html import (
    TELEGRAM_MAX_LENGTH,
    MessageFormatError,
    escape,
    split_message,
    telegram_length,
)
from tgfleet.alert.receivers._prepared import Prepared, prepare
from tgfleet.alert.receivers._secrets import protect_secrets, scrub
from tgfleet.alert.receivers._telegram import (
    TelegramIntegration,
    render_message,
    template_context,
)
from tgfleet.alert.receivers._webhook import (
    ZERO_TIME,
    AlertmanagerIntegration,
    WebhookIntegration,
    postable_alerts,
    rfc3339,
    webhook_body,
)
from tgfleet.metrics import ALERT_NOTIFICATIONS

__all__ = [
    "TELEGRAM_MAX_LENGTH",
    "ZERO_TIME",
    "AlertmanagerIntegration",
    "DeliveryPolicy",
    "Integration",
    "MessageFormatError",
    "Prepared",
    "Receiver",
    "TelegramIntegration",
    "WebhookIntegration",
    "build_receiver",
    "build_receivers",
    "escape",
    "postable_alerts",
    "prepare",
    "protect_secrets",
    "render_message",
    "rfc3339",
    "scrub",
    "split_message",
    "telegram_length",
    "template_context",
    "webhook_body",
]


def build_receivers(
    config: AlertingConfig,
    http: httpx.AsyncClient,
    *,
    policy: DeliveryPolicy | None = None,
) -> dict[str, Receiver]:
    """Every configured receiver by name, sharing ``http`` (the caller owns and closes it).

    Installs the log filter that keeps tokens out of httpx's logs, and starts the
    notification counters of each receiver at 0 so alerts on them see the first event.
    """
    protect_secrets(())
    chosen = policy or DeliveryPolicy()
    receivers: dict[str, Receiver] = {}
    for receiver in config.receivers:
        receivers[receiver.name] = build_receiver(config, receiver, http, policy=chosen)
        for outcome in ("sent", "failed", "retried"):
            ALERT_NOTIFICATIONS.labels(receiver.name, outcome)
    return receivers


def build_receiver(
    config: AlertingConfig,
    receiver: ReceiverConfig,
    http: httpx.AsyncClient,
    *,
    policy: DeliveryPolicy,
) -> Receiver:
    """One receiver's integrations, in file order: Telegram, webhooks, Alertmanagers."""
    integrations: list[Integration[Any]] = []
    global_ = config.global_
    for index, telegram in enumerate(receiver.telegram_configs):
        token, token_file = telegram.bot_token, telegram.bot_token_file
        if token is None and token_file is None:
            token, token_file = global_.telegram_bot_token, global_.telegram_bot_token_file
        integrations.append(
            TelegramIntegration(
                receiver=receiver.name,
                index=index,
                config=telegram,
                api_url=telegram.api_url or global_.telegram_api_url,
                bot_token=token,
                bot_token_file=token_file,
                http=http,
                policy=policy,
            )
        )
    integrations.extend(
        WebhookIntegration(
            receiver=receiver.name, index=index, config=webhook, http=http, policy=policy
        )
        for index, webhook in enumerate(receiver.webhook_configs)
    )
    integrations.extend(
        AlertmanagerIntegration(
            receiver=receiver.name, index=index, config=alertmanager, http=http, policy=policy
        )
        for index, alertmanager in enumerate(receiver.alertmanager_configs)
    )
    return Receiver(receiver.name, integrations)
