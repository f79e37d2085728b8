"""The alerting configuration, in the shape of Alertmanager's ``alertmanager.yml``.

A file named by ``TGFLEET_ALERTING_CONFIG`` is read with :func:`load_config`; every problem
is reported with the file, the line and the field, e.g.
``alerting.yml:12: route.routes[0].receiver: unknown receiver 'pager' (known: ops, oncall)``.

What is Alertmanager's and what is not:

- ``global`` (``resolve_timeout``, ``telegram_api_url``, ``telegram_bot_token[_file]``),
  ``route`` (``receiver``, ``group_by`` with ``['...']``, ``group_wait``, ``group_interval``,
  ``repeat_interval``, ``matchers`` and the deprecated ``match``/``match_re``,
  ``continue``, ``routes``), ``receivers`` and ``inhibit_rules`` (``source_matchers``,
  ``target_matchers``, ``equal`` and the deprecated ``*_match``/``*_match_re``) read as in
  Alertmanager, with its defaults and its duration format (``30s``, ``5m``, ``1h30m``, ``1d``).
- Receivers: ``telegram_configs`` and ``webhook_configs`` with Alertmanager's fields, and
  our ``alertmanager_configs`` (POST the alerts to an Alertmanager's ``/api/v2/alerts``).
  Other integrations (email, Slack, ...), ``http_config``, ``templates`` and time
  intervals are refused with a message that says so, never silently ignored.
- ``message`` templates are **Jinja2** (sandboxed), not Go templates: Alertmanager's data
  keeps its names, so ``{{ .CommonLabels.alertname }}`` becomes
  ``{{ CommonLabels.alertname }}`` and ``{{ range .Alerts.Firing }}`` becomes
  ``{% for a in Alerts.Firing %}``. A Go template is refused with that hint.
- ``parse_mode`` is ``HTML`` (the default) or ``""`` (plain text): long notifications are
  split into several messages at line boundaries, which tgfleet can only do safely for
  these two. ``Markdown``/``MarkdownV2`` are refused.
- ``repeat_interval`` acts rounded up to a multiple of ``group_interval``, as in
  Alertmanager (the repeat is checked at each group interval); :class:`Route` holds the
  rounded value and the configuration warns when it differs.
- Secrets (``bot_token``, a webhook ``url``) are ``SecretStr``: never in a repr, a log line
  or an error. ``*_file`` paths are relative to the configuration file's directory, must
  exist and be non-empty; a file every user can read is a warning.

Without a file, :func:`default_config` routes every alert to one receiver, ``default``,
that has no integrations: alerts are evaluated, grouped and visible in the API, and nothing
leaves the process until a configuration names a destination.

The models are in ``_models``, the cross-field checks in ``_checks``, reading a file in
``_loading``; the matcher language, durations, ``message`` templates and the resolved
routing tree are the domain's own modules (``matchers``, ``durations``, ``templates``,
``routing``), which the engine and the receivers use too.
"""

from __future__ import annotations

from tgfleet.alert.config._loading import (
    MAX_CONFIG_BYTES,
    config_from_settings,
    default_config,
    load_config,
    parse_config,
)
from tgfleet.alert.config._models import (
    DEFAULT_TELEGRAM_API_URL,
    AlertingConfig,
    AlertmanagerReceiverConfig,
    GlobalConfig,
    InhibitRuleConfig,
    ReceiverConfig,
    RouteConfig,
    TelegramConfig,
    WebhookConfig,
)

__all__ = [
    "DEFAULT_TELEGRAM_API_URL",
    "MAX_CONFIG_BYTES",
    "AlertingConfig",
    "AlertmanagerReceiverConfig",
    "GlobalConfig",
    "InhibitRuleConfig",
    "ReceiverConfig",
    "RouteConfig",
    "TelegramConfig",
    "WebhookConfig",
    "config_from_settings",
    "default_config",
    "load_config",
    "parse_config",
]
