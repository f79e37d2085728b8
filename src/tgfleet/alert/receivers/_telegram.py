"""The Telegram integration: ``sendMessage`` through the Bot API, one notification (one
group key) as one message, or several when it is longer than Telegram allows.

The bot token lives in the request path (``/bot<token>/sendMessage``): it is kept out of
every log record (httpx's included, see :func:`~._delivery.protect_secrets`), every error
and every result.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jinja2
from pydantic import SecretStr

from tgfleet.alert.config import TelegramConfig
from tgfleet.alert.receivers._delivery import (
    DeliveryPolicy,
    Integration,
    Permanent,
    Retryable,
    _Progress,
    read_secret_file,
)
from tgfleet.alert.receivers._html import (
    MessageFormatError,
    escape,
    escape_attribute,
    split_message,
)
from tgfleet.alert.receivers._prepared import Prepared, as_utc
from tgfleet.alert.schemas import Alert
from tgfleet.alert.templates import message_template_environment

# Labels shown on every alert line when present; the rest only when nothing else says what
# the alert is about.
DETAIL_LABELS = ("account", "worker", "group")
#: Notifications whose parts went out only partly: (receiver, integration, group key,
#: text hash) -> parts delivered. In memory: a restart sends such a notification whole.
_DELIVERED_PARTS: OrderedDict[tuple[str, int, str, str], int] = OrderedDict()
RESUME_MEMORY = 1000
#: Sections with more alerts than this list them compactly (names only, times once).
COMPACT_OVER = 100
COMPACT_LINE = 400
_QUIET_LABELS = frozenset({"alertname", "severity", *DETAIL_LABELS})


class TelegramIntegration(Integration[TelegramConfig]):
    kind = "telegram"

    def __init__(
        self,
        *,
        receiver: str,
        index: int,
        config: TelegramConfig,
        api_url: str,
        bot_token: SecretStr | None,
        bot_token_file: Path | None,
        http: httpx.AsyncClient,
        policy: DeliveryPolicy,
    ) -> None:
        if (bot_token is None) == (bot_token_file is None):
            raise ValueError("give exactly one of bot_token or bot_token_file")
        super().__init__(receiver=receiver, index=index, config=config, http=http, policy=policy)
        self._api_url = api_url.rstrip("/")
        self._bot_token = bot_token
        self._bot_token_file = bot_token_file
        self._html = config.parse_mode == "HTML"
        self._template = (
            message_template_environment(html=self._html).from_string(config.message)
            if config.message is not None
            else None
        )
        if bot_token is not None:
            self._add_secret(bot_token.get_secret_value())

    async def _deliver(self, prepared: Prepared, progress: _Progress) -> None:
        token = await self._token()
        chat_id = await self._chat_id()
        progress.detail["chat_id"] = chat_id
        text = self._render(prepared)
        try:
            parts = split_message(text, html_mode=self._html)
        except MessageFormatError as exc:
            raise Permanent(f"the message is not valid Telegram HTML: {exc}") from None
        if not parts:
            raise Permanent("the message is empty")
        progress.detail["messages_total"] = len(parts)
        # A delivery cut short (deadline, 429s) resumes where it stopped when the same text
        # is sent again at the next flush: operators never get the first parts twice.
        key = (
            self.receiver,
            self.index,
            prepared.notification.group_key,
            hashlib.sha256(text.encode()).hexdigest(),
        )
        done = _DELIVERED_PARTS.get(key, 0)
        if done:
            progress.detail["resumed_at_part"] = done + 1
        for number, part in enumerate(parts):
            if number < done:
                continue
            send = functools.partial(self._send, token, chat_id, part, progress)
            await self._with_retries(send, progress)
            progress.messages += 1
            _DELIVERED_PARTS[key] = number + 1
            _DELIVERED_PARTS.move_to_end(key)
            while len(_DELIVERED_PARTS) > RESUME_MEMORY:
                _DELIVERED_PARTS.popitem(last=False)
        _DELIVERED_PARTS.pop(key, None)

    async def _send(self, token: str, chat_id: int | str, text: str, progress: _Progress) -> None:
        payload: dict[str, Any] = {
            "chat_id": chat_id,
            "text": text,
            "disable_notification": self._config.disable_notifications,
            "link_preview_options": {"is_disabled": True},
        }
        if self._config.message_thread_id is not None:
            payload["message_thread_id"] = self._config.message_thread_id
        if self._html:
            payload["parse_mode"] = "HTML"
        response = await self._post(f"{self._api_url}/bot{token}/sendMessage", payload)
        status = progress.status_code = response.status_code
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            reason = f"HTTP {status}: not a Bot API answer"
            if status >= 500 or status == 429:
                raise Retryable(reason, status_code=status)
            raise Permanent(reason, status_code=status)
        if status == 200 and answer.get("ok") is True:
            return
        description = str(answer.get("description") or f"HTTP {status}")
        parameters = answer.get("parameters")
        parameters = parameters if isinstance(parameters, dict) else {}
        if status == 429:
            retry_after = parameters.get("retry_after")
            wait = float(retry_after) if isinstance(retry_after, (int, float)) else None
            raise self._rate_limited(description, wait, status)
        if status >= 500:
            raise Retryable(description, status_code=status)
        if status == 401:
            raise Permanent("the bot token was refused (401 Unauthorized)", status_code=status)
        moved = parameters.get("migrate_to_chat_id")
        if moved is not None:
            description += f" (the chat is now {moved}: update chat_id)"
        raise Permanent(description, status_code=status)

    async def _token(self) -> str:
        if self._bot_token is not None:
            return self._bot_token.get_secret_value()
        assert self._bot_token_file is not None  # noqa: S101 - checked in __init__
        token = await read_secret_file(self._bot_token_file, "bot_token_file")
        self._add_secret(token)
        return token

    async def _chat_id(self) -> int | str:
        if self._config.chat_id is not None:
            return self._config.chat_id
        assert self._config.chat_id_file is not None  # noqa: S101 - the config requires one
        content = await read_secret_file(self._config.chat_id_file, "chat_id_file")
        if re.fullmatch(r"-?\d+", content):
            return int(content)
        if re.fullmatch(r"@\w+", content):
            return content
        raise Permanent(f"chat_id_file {self._config.chat_id_file} holds no chat id")

    def _render(self, prepared: Prepared) -> str:
        if self._template is None:
            return render_message(prepared, html=self._html)
        try:
            return self._template.render(template_context(prepared)).strip()
        except jinja2.TemplateError as exc:
            raise Permanent(f"the message template failed: {exc}") from None


# --------------------------------------------------------------------------- the message


def _when(moment: datetime | None, today: str | None = None) -> str:
    """``14:02:11 UTC`` on the day of the notification (``today``), else with its date."""
    if moment is None:
        return "?"
    utc = as_utc(moment)
    if today is not None and utc.strftime("%Y-%m-%d") == today:
        return utc.strftime("%H:%M:%S UTC")
    return utc.strftime("%Y-%m-%d %H:%M:%S UTC")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render_message(prepared: Prepared, *, html: bool = True) -> str:
    """The default message: a header (status, counts, group labels), then one line per
    alert, firing first, resolved after; values HTML-escaped when ``html``."""

    def bold(text: str) -> str:
        return f"<b>{text}</b>" if html else text

    def code(text: str) -> str:
        return f"<code>{text}</code>" if html else text

    def esc(text: str) -> str:
        return escape(text) if html else text

    notification = prepared.notification
    counts = []
    if prepared.firing:
        counts.append(f"{len(prepared.firing)} firing")
    if prepared.resolved:
        counts.append(f"{len(prepared.resolved)} resolved")
    icon = "🔥" if prepared.status == "firing" else "✅"
    lines = [f"{icon} {bold(prepared.status.upper())} · {', '.join(counts)}"]
    group_labels = notification.group_labels
    if group_labels:
        lines.append(" ".join(f"{esc(k)}={code(esc(v))}" for k, v in sorted(group_labels.items())))
    shown = [*prepared.firing, *prepared.resolved]
    # What every alert says alike is said once, above the list: a mass event stays short.
    hoisted = {
        name
        for name in ("description",)
        if len(shown) > 1
        and shown[0].annotations.get(name)
        and all(a.annotations.get(name) == shown[0].annotations.get(name) for a in shown)
    }
    lines.extend(esc(_one_line(shown[0].annotations[name])) for name in sorted(hoisted))
    today = as_utc(notification.at).strftime("%Y-%m-%d") if notification.at else None
    for title, alerts, resolved in (
        ("Firing", prepared.firing, False),
        ("Resolved", prepared.resolved, True),
    ):
        if not alerts:
            continue
        if len(alerts) > COMPACT_OVER:
            # A mass event: one line of names per ~COMPACT_LINE characters, the times once.
            lines.extend(("", _compact_title(title, alerts, resolved, bold, today)))
            lines.extend(_compact_lines(alerts, esc))
            continue
        lines.extend(("", bold(f"{title} ({len(alerts)})")))
        lines.extend(
            _alert_line(
                alert,
                group_labels,
                resolved=resolved,
                esc=esc,
                bold=bold,
                code=code,
                hoisted=hoisted,
                today=today,
            )
            for alert in alerts
        )
    if notification.external_url:
        url = notification.external_url
        lines.append("")
        lines.append(f'<a href="{escape_attribute(url)}">Open in tgfleet</a>' if html else url)
    return "\n".join(lines)


def _compact_title(
    title: str, alerts: Sequence[Alert], resolved: bool, bold: Any, today: str | None
) -> str:
    moments = [a.ends_at if resolved else a.starts_at for a in alerts]
    known = sorted(m for m in moments if m is not None)
    verb = "ended" if resolved else "since"
    span = ""
    if known:
        first, last = _when(known[0], today), _when(known[-1], today)
        span = f", {verb} {first}" if first == last else f", {verb} {first} to {last}"
    return str(bold(f"{title} ({len(alerts)}{span})"))


def _compact_lines(alerts: Sequence[Alert], esc: Any) -> list[str]:
    """Each alert's summary (or its account label, or its name), comma-separated, in lines
    of about COMPACT_LINE characters (the splitter cuts between lines)."""
    lines: list[str] = []
    current: list[str] = []
    width = 0
    for alert in alerts:
        said = _one_line(
            alert.annotations.get("summary", "") or alert.labels.get("account", "") or alert.name
        )
        if current and width + len(said) + 2 > COMPACT_LINE:
            lines.append(esc(", ".join(current)))
            current, width = [], 0
        current.append(said)
        width += len(said) + 2
    if current:
        lines.append(esc(", ".join(current)))
    return lines


def _alert_line(
    alert: Alert,
    group_labels: Mapping[str, str],
    *,
    resolved: bool,
    esc: Any,
    bold: Any,
    code: Any,
    hoisted: frozenset[str] | set[str] = frozenset(),
    today: str | None = None,
) -> str:
    labels, annotations = alert.labels, alert.annotations
    named = "alertname" not in group_labels  # else the header names it once for all
    head = "✅" if resolved else "•"
    if named:
        head += f" {bold(esc(alert.name or 'alert'))}"
    severity = labels.get("severity")
    if severity and "severity" not in group_labels:
        head += f" [{esc(severity)}]"
    summary = _one_line(annotations.get("summary", ""))
    description = "" if "description" in hoisted else _one_line(annotations.get("description", ""))
    said = " — ".join(part for part in (summary, description) if part)
    details = [
        f"{name} {code(esc(labels[name]))}"
        for name in DETAIL_LABELS
        if name in labels and labels[name] not in said  # the summary names it already
    ]
    parts = [f"{head}: {esc(said)}" if said else head]
    if not said:
        details.extend(
            f"{esc(name)}={code(esc(value))}"
            for name, value in sorted(labels.items())
            if name not in _QUIET_LABELS and name not in group_labels
        )
    if details:
        parts.append(" ".join(details))
    parts.append(
        f"ended {_when(alert.ends_at, today)}"
        if resolved
        else f"since {_when(alert.starts_at, today)}"
    )
    return " · ".join(parts)


class _AlertList(list[dict[str, Any]]):
    """``Alerts`` in a template; ``Alerts.Firing`` and ``Alerts.Resolved`` as in
    Alertmanager."""

    @property
    def Firing(self) -> list[dict[str, Any]]:  # noqa: N802 - Alertmanager's template name
        return [a for a in self if a["Status"] == "firing"]

    @property
    def Resolved(self) -> list[dict[str, Any]]:  # noqa: N802 - Alertmanager's template name
        return [a for a in self if a["Status"] == "resolved"]


def template_context(prepared: Prepared) -> dict[str, Any]:
    """Alertmanager's template data, with its names: ``Status``, ``Receiver``,
    ``GroupLabels``, ``CommonLabels``, ``CommonAnnotations``, ``ExternalURL``, ``GroupKey``
    and ``Alerts`` (each with ``Status``, ``Labels``, ``Annotations``, ``StartsAt``,
    ``EndsAt``, ``GeneratorURL``, ``Fingerprint``)."""
    notification = prepared.notification
    return {
        "Receiver": notification.receiver,
        "Status": prepared.status,
        "GroupKey": notification.group_key,
        "GroupLabels": dict(notification.group_labels),
        "CommonLabels": dict(prepared.common_labels),
        "CommonAnnotations": dict(prepared.common_annotations),
        "ExternalURL": notification.external_url,
        "Alerts": _AlertList(
            {
                "Status": prepared.status_of(alert),
                "Labels": dict(alert.labels),
                "Annotations": dict(alert.annotations),
                "StartsAt": alert.starts_at,
                "EndsAt": alert.ends_at,
                "GeneratorURL": alert.generator_url,
                "Fingerprint": alert.fingerprint,
            }
            for alert in prepared.alerts
        ),
    }
