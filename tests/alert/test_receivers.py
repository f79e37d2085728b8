"""Receivers against local servers speaking the Bot API, a webhook endpoint and
Alertmanager's ``/api/v2/alerts``: what is sent, how failures are retried, and that the bot
token never leaks."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import textwrap
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tests.fakes.local_server import LocalApp
from tests.fakes.telegram_bot_api import FakeBotApi, parse_telegram_html, utf16_length
from tgfleet.alert.config import AlertingConfig, default_config, parse_config
from tgfleet.alert.receivers import (
    ZERO_TIME,
    DeliveryPolicy,
    MessageFormatError,
    Receiver,
    build_receivers,
    split_message,
)
from tgfleet.alert.receivers._secrets import redact_url
from tgfleet.alert.schemas import Alert, DeliveryResult, Notification
from tgfleet.logging import configure_logging

pytestmark = pytest.mark.timeout(60)

TOKEN = "7123456789:AAG-fake_Bot-token-Value_0123456789abc"
CHAT = -1001234567890
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
FAST = DeliveryPolicy(
    attempt_timeout=2.0, deadline=20.0, max_attempts=4, backoff_base=0.01, backoff_cap=0.05
)


# --------------------------------------------------------------------------- helpers


def alert(
    index: int = 0,
    *,
    name: str = "AccountBanned",
    resolved: bool = False,
    **labels: str,
) -> Alert:
    return Alert(
        labels={"alertname": name, "severity": "critical", "account": f"acc-{index}", **labels},
        annotations={"summary": f"Account acc-{index} was banned"},
        starts_at=NOW - timedelta(minutes=10),
        ends_at=NOW - timedelta(minutes=1) if resolved else None,
        generator_url=f"http://tgfleet.local/alerts/{index}",
    )


def notification(
    alerts: tuple[Alert, ...], *, receiver: str = "r", group_key: str = "route:{}"
) -> Notification:
    firing = any(a.ends_at is None for a in alerts)
    names = {a.name for a in alerts}
    return Notification(
        receiver=receiver,
        group_key=group_key,
        group_labels={"alertname": names.pop()} if len(names) == 1 else {},
        status="firing" if firing else "resolved",
        alerts=alerts,
        common_labels={},
        common_annotations={},
        external_url="http://tgfleet.local",
        at=NOW,
    )


def telegram_config(api_url: str, extra: str = "", *, chat: int = CHAT) -> AlertingConfig:
    return parse_config(
        textwrap.dedent(
            f"""
            route: {{receiver: r}}
            receivers:
              - name: r
                telegram_configs:
                  - api_url: {api_url}
                    bot_token: "{TOKEN}"
                    chat_id: {chat}
            """
        )
        + textwrap.indent(textwrap.dedent(extra), " " * 8)
    )


def nodelay_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        )
    )


def counter(receiver: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "tgfleet_alert_notifications_total", {"receiver": receiver, "outcome": outcome}
    )
    return value or 0.0


@pytest.fixture
async def bot() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN, chats=[CHAT]) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with nodelay_client() as client:
        yield client


async def deliver(
    config: AlertingConfig,
    http: httpx.AsyncClient,
    sent: Notification,
    policy: DeliveryPolicy = FAST,
) -> DeliveryResult:
    receivers = build_receivers(config, http, policy=policy)
    (result,) = await receivers[sent.receiver].notify(sent)
    return result


class HttpSink(LocalApp):
    """A webhook endpoint (any path) recording JSON bodies; answers from ``statuses`` first,
    then 200."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.paths: list[str] = []
        self.statuses: deque[int] = deque()
        super().__init__()

    def routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self._receive, methods=["POST"])]

    async def _receive(self, request: Request) -> Response:
        self.paths.append(request.url.path)
        self.bodies.append(json.loads(await request.body()))
        status = self.statuses.popleft() if self.statuses else 200
        return JSONResponse({"status": status}, status_code=status)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- Telegram


class TestTelegramMessages:
    async def test_one_message_per_notification(
        self, bot: FakeBotApi, http: httpx.AsyncClient
    ) -> None:
        """A notification is one sendMessage to the chat: HTML, status and count, group
        labels, then one line per alert with its summary, labels and start; resolved
        alerts listed after the firing ones."""
        config = telegram_config(bot.api_url)
        sent = notification(
            (alert(1, worker="w-1", group="g-9"), alert(2), alert(3, resolved=True))
        )
        result = await deliver(config, http, sent)
        assert result == DeliveryResult(
            ok=True,
            receiver="r",
            integration="telegram",
            attempts=1,
            messages=1,
            detail={"index": 0, "chat_id": CHAT, "messages_total": 1, "status_code": 200},
        )
        (message,) = bot.messages
        assert (message.chat_id, message.parse_mode, message.message_thread_id) == (
            CHAT,
            "HTML",
            None,
        )
        assert message.disable_notification is False
        lines = message.visible_text.splitlines()
        assert lines[0] == "🔥 FIRING · 2 firing, 1 resolved"
        assert lines[1] == "alertname=AccountBanned"
        firing_at, resolved_at = lines.index("Firing (2)"), lines.index("Resolved (1)")
        assert firing_at < resolved_at
        # The grouped alertname is said once in the header; a label the summary already
        # names is not repeated; times on the notification's day carry no date.
        assert lines[firing_at + 1] == (
            "• [critical]: Account acc-1 was banned · worker w-1 group g-9 · since 11:50:00 UTC"
        )
        assert lines[resolved_at + 1].startswith("✅ [critical]: Account acc-3")
        assert lines[resolved_at + 1].endswith("ended 11:59:00 UTC")
        assert "<b>FIRING</b>" in message.text
        assert '<a href="http://tgfleet.local">Open in tgfleet</a>' in message.text

    async def test_values_are_escaped(self, bot: FakeBotApi, http: httpx.AsyncClient) -> None:
        """Label and annotation values with HTML in them arrive exactly as written."""
        nasty = 'x < y && <b>bold</b> "q" &amp; </code>'
        sent = notification(
            (
                Alert(
                    labels={"alertname": "Odd<name>", "account": "<acc>"},
                    annotations={"summary": nasty},
                    starts_at=NOW,
                ),
            )
        )
        result = await deliver(telegram_config(bot.api_url), http, sent)
        assert result.ok, result.error
        (message,) = bot.messages
        assert nasty in message.visible_text
        assert "Odd<name>" in message.visible_text
        assert "account <acc>" in message.visible_text

    async def test_thread_and_silent_notifications(
        self, bot: FakeBotApi, http: httpx.AsyncClient
    ) -> None:
        """message_thread_id and disable_notifications reach sendMessage."""
        config = telegram_config(
            bot.api_url, "message_thread_id: 42\ndisable_notifications: true\n"
        )
        assert (await deliver(config, http, notification((alert(),)))).ok
        (message,) = bot.messages
        assert message.message_thread_id == 42
        assert message.disable_notification is True

    async def test_send_resolved_false(self, bot: FakeBotApi, http: httpx.AsyncClient) -> None:
        """Without send_resolved, resolved alerts are left out, and a notification with only
        resolved alerts sends nothing."""
        config = telegram_config(bot.api_url, "send_resolved: false\n")
        mixed = notification((alert(1), alert(2, resolved=True)))
        assert (await deliver(config, http, mixed)).ok
        (message,) = bot.messages
        assert "acc-1" in message.visible_text
        assert "acc-2" not in message.visible_text
        assert "1 firing" in message.visible_text
        result = await deliver(config, http, notification((alert(3, resolved=True),)))
        assert result.ok
        assert (result.attempts, result.messages) == (0, 0)
        assert "skipped" in result.detail
        assert len(bot.requests) == 1

    async def test_ten_thousand_alerts_are_split(
        self, bot: FakeBotApi, http: httpx.AsyncClient
    ) -> None:
        """10,000 alerts: messages of at most 4,096 characters, each valid HTML on its own,
        numbered, and every alert in exactly one of them; listed compactly, so far fewer
        messages than one line per alert would need."""
        alerts = tuple(alert(i, worker=f"w-{i % 7}") for i in range(10_000))
        result = await deliver(telegram_config(bot.api_url), http, notification(alerts))
        assert result.ok, result.error
        assert len(bot.messages) == result.messages == result.detail["messages_total"]
        assert len(bot.messages) > 1
        assert all(request.status == 200 for request in bot.requests)
        seen: list[int] = []
        for number, message in enumerate(bot.messages, 1):
            assert len(message.text) <= 4096
            assert utf16_length(message.text) <= 4096
            assert message.text.startswith(f"({number}/{len(bot.messages)})\n")
            parse_telegram_html(message.text)  # raises on a broken tag
            seen.extend(
                int(n)
                # A mass event is listed compactly: each alert's summary once, comma-separated.
                for n in re.findall(r"Account acc-(\d+) was", message.visible_text)
            )
        assert sorted(seen) == list(range(10_000))
        assert len(bot.messages) <= 100  # ~30 characters per alert; one line each: ~175

    async def test_a_delivery_cut_short_resumes_where_it_stopped(
        self, bot: FakeBotApi, http: httpx.AsyncClient
    ) -> None:
        """A notification of several parts whose delivery gives up after the first part
        (Telegram answers 500 past the retries) is sent again at the next flush from the
        second part on: every part arrives exactly once."""
        sent = notification(tuple(alert(i) for i in range(400)), group_key="route:{resume}")
        config = telegram_config(bot.api_url)
        once = replace(FAST, max_attempts=1)

        async def fail_after_the_first_part() -> None:
            await bot.wait_for_messages(1, within=10)
            bot.fail_next(500, times=50)

        watcher = asyncio.create_task(fail_after_the_first_part())
        bot.delay = 0.2  # time for the watcher to queue the faults before part 2 arrives
        cut = await deliver(config, http, sent, once)
        await watcher
        assert not cut.ok
        assert cut.messages >= 1
        total = cut.detail["messages_total"]
        assert isinstance(total, int)
        assert total > cut.messages
        bot._faults.clear()
        bot.delay = 0.0
        again = await deliver(config, http, sent)
        assert again.ok, again.error
        assert again.detail["resumed_at_part"] == cut.messages + 1
        texts = [m.text for m in bot.messages]
        assert len(texts) == total == len(set(texts))
        assert [int(t.split("/")[0].strip("(")) for t in texts] == list(range(1, total + 1))

    async def test_custom_template(self, bot: FakeBotApi, http: httpx.AsyncClient) -> None:
        """A Jinja2 message uses Alertmanager's names; values are HTML-escaped."""
        template = (
            "message: |\n"
            "  <b>{{ Status|upper }}</b> {{ CommonLabels.alertname }} ({{ Alerts|length }})\n"
            "  {% for a in Alerts.Firing %}{{ a.Labels.account }} {% endfor %}\n"
        )
        config = telegram_config(bot.api_url, template)
        sent = notification((alert(1), alert(2, resolved=True), alert(3, account="<x>")))
        sent = Notification(**{**_fields(sent), "common_labels": {"alertname": "AccountBanned"}})
        assert (await deliver(config, http, sent)).ok
        (message,) = bot.messages
        assert message.visible_text == "FIRING AccountBanned (3)\nacc-1 <x>"
        assert "&lt;x&gt;" in message.text

    async def test_template_making_broken_html_fails_without_sending(
        self, bot: FakeBotApi, http: httpx.AsyncClient
    ) -> None:
        """A template whose output Telegram would refuse fails before any request."""
        config = telegram_config(bot.api_url, "message: '<b>{{ Status }}'\n")
        result = await deliver(config, http, notification((alert(),)))
        assert not result.ok
        assert result.error == "the message is not valid Telegram HTML: <b> is never closed"
        assert result.attempts == 0
        assert bot.requests == []


def _fields(sent: Notification) -> dict[str, Any]:
    return {name: getattr(sent, name) for name in Notification.__dataclass_fields__}


class TestTelegramFailures:
    async def test_429_retry_after_is_obeyed(
        self, bot: FakeBotApi, http: httpx.AsyncClient
    ) -> None:
        """A 429 waits the retry_after Telegram gives, then the retry goes through."""
        bot.fail_next(429, retry_after=1)
        retried = counter("r", "retried")
        result = await deliver(telegram_config(bot.api_url), http, notification((alert(),)))
        assert result.ok, result.error
        assert (result.attempts, result.messages) == (2, 1)
        first, second = bot.requests
        assert (first.status, second.status) == (429, 200)
        assert 1.0 <= second.at - first.at < 2.0
        assert counter("r", "retried") == retried + 1

    async def test_429_beyond_the_limit_fails_at_once(
        self, bot: FakeBotApi, http: httpx.AsyncClient
    ) -> None:
        """A retry_after longer than max_retry_after fails the delivery instead of waiting."""
        bot.fail_next(429, retry_after=3600)
        policy = DeliveryPolicy(max_retry_after=30)
        started = time.monotonic()
        result = await deliver(telegram_config(bot.api_url), http, notification((alert(),)), policy)
        assert time.monotonic() - started < 5
        assert not result.ok
        assert result.attempts == 1
        assert result.error == (
            "Too Many Requests: retry after 3600 (the server asks to wait 3600 s, longer "
            "than the 30 s allowed)"
        )
        assert result.detail["status_code"] == 429

    async def test_5xx_is_retried(self, bot: FakeBotApi, http: httpx.AsyncClient) -> None:
        """Server errors are retried with backoff until one succeeds."""
        bot.fail_next(502, times=2)
        result = await deliver(telegram_config(bot.api_url), http, notification((alert(),)))
        assert result.ok, result.error
        assert (result.attempts, result.messages) == (3, 1)
        assert [r.status for r in bot.requests] == [502, 502, 200]

    async def test_5xx_gives_up_after_max_attempts(
        self, bot: FakeBotApi, http: httpx.AsyncClient
    ) -> None:
        """Retries stop after max_attempts; the result says why and how many."""
        bot.fail_next(500, times=10)
        failed = counter("r", "failed")
        result = await deliver(telegram_config(bot.api_url), http, notification((alert(),)))
        assert not result.ok
        assert result.error == "Internal Server Error (gave up after 4 attempts)"
        assert result.attempts == len(bot.requests) == 4
        assert counter("r", "failed") == failed + 1

    async def test_chat_not_found_is_not_retried(
        self, bot: FakeBotApi, http: httpx.AsyncClient
    ) -> None:
        """A 400 (an unknown chat) fails at once with Telegram's description."""
        config = telegram_config(bot.api_url, chat=-100999)
        result = await deliver(config, http, notification((alert(),)))
        assert not result.ok
        assert result.error == "Bad Request: chat not found"
        assert result.attempts == len(bot.requests) == 1
        assert result.detail["status_code"] == 400

    async def test_wrong_token(self, bot: FakeBotApi, http: httpx.AsyncClient) -> None:
        """A refused token is a permanent failure that does not repeat the token."""
        bot.token = "1:another"
        result = await deliver(telegram_config(bot.api_url), http, notification((alert(),)))
        assert not result.ok
        assert result.error == "the bot token was refused (401 Unauthorized)"
        assert result.attempts == 1

    async def test_connection_errors_are_retried(self, http: httpx.AsyncClient) -> None:
        """Nobody listening: every attempt is made, then the error says what happened."""
        result = await deliver(telegram_config(closed_port_url()), http, notification((alert(),)))
        assert not result.ok
        assert result.attempts == 4
        assert result.error is not None
        assert result.error.startswith("connection failed: ConnectError")
        assert result.error.endswith("(gave up after 4 attempts)")

    async def test_slow_answers_time_out_within_the_deadline(
        self, bot: FakeBotApi, http: httpx.AsyncClient
    ) -> None:
        """Each attempt has a timeout and the whole delivery a deadline."""
        bot.delay = 5.0
        policy = DeliveryPolicy(
            attempt_timeout=0.3, deadline=1.0, max_attempts=10, backoff_base=0.01
        )
        started = time.monotonic()
        result = await deliver(telegram_config(bot.api_url), http, notification((alert(),)), policy)
        elapsed = time.monotonic() - started
        assert not result.ok
        assert 0.9 <= elapsed < 2.0
        assert result.attempts >= 2
        assert result.error in {
            "not delivered within the deadline of 1 s",
            f"no answer within 0.3 s (gave up after {result.attempts} attempts)",
        }

    async def test_token_file_is_read_at_each_delivery(
        self, bot: FakeBotApi, http: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        """bot_token_file is re-read: a rotated token is used without a rebuild."""
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
        config = parse_config(
            f"route: {{receiver: r}}\nreceivers:\n  - name: r\n    telegram_configs:\n"
            f"      - api_url: {bot.api_url}\n        bot_token_file: {token_file}\n"
            f"        chat_id: {CHAT}\n"
        )
        receivers = build_receivers(config, http, policy=FAST)
        assert (await receivers["r"].notify(notification((alert(1),))))[0].ok
        bot.token = "42:rotated-token"
        token_file.write_text("42:rotated-token")
        assert (await receivers["r"].notify(notification((alert(2),))))[0].ok
        token_file.unlink()
        (result,) = await receivers["r"].notify(notification((alert(3),)))
        assert result.error == f"cannot read bot_token_file {token_file}: FileNotFoundError"
        assert len(bot.messages) == 2


class TestSecrets:
    async def test_token_never_in_logs_or_results(
        self, bot: FakeBotApi, http: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """Successes, retries (429, 5xx), refusals and network errors at DEBUG, through
        structlog and the standard library (httpx's logger included): the token appears in
        no log line and no result, while the request lines themselves are logged."""
        configure_logging(level="DEBUG", json=True)
        logging.getLogger("httpx").setLevel(logging.DEBUG)
        results: list[DeliveryResult] = []
        try:
            bot.fail_next(429, retry_after=0)
            bot.fail_next(503)
            results.append(
                await deliver(telegram_config(bot.api_url), http, notification((alert(),)))
            )
            results.append(
                await deliver(telegram_config(bot.api_url, chat=-5), http, notification((alert(),)))
            )
            results.append(
                await deliver(telegram_config(closed_port_url()), http, notification((alert(),)))
            )
            structlog.get_logger("probe").info("probe.done")
        finally:
            configure_logging(level="INFO", json=False)
            logging.getLogger("httpx").setLevel(logging.NOTSET)
        captured = capfd.readouterr()
        logs = captured.out + captured.err
        assert "probe.done" in logs  # the capture works
        assert "HTTP Request: POST http://127.0.0.1:" in logs
        assert "/bot[redacted]/sendMessage" in logs
        assert "alert.delivery.retrying" in logs
        assert "alert.delivery.failed" in logs
        assert [r.ok for r in results] == [True, False, False]
        for text in (logs, repr(results), *(str(r.error) for r in results)):
            assert TOKEN not in text
            assert TOKEN.split(":", 1)[1] not in text


# --------------------------------------------------------------------------- splitting


_TAGS = ["b", "i", "u", "s", "code", "tg-spoiler", "blockquote"]


@st.composite
def telegram_html(draw: st.DrawFn, depth: int = 0) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["text", "text", "newline", "entity", "tag", "link"]))
        if kind == "text":
            alphabet = st.characters(blacklist_characters="<>&", blacklist_categories=["Cs"])
            parts.append(draw(st.text(alphabet, max_size=120)))
        elif kind == "newline":
            parts.append("\n" * draw(st.integers(1, 2)))
        elif kind == "entity":
            parts.append(draw(st.sampled_from(["&lt;", "&gt;", "&amp;", "&quot;", "&#128578;"])))
        elif depth < 3:
            inner = draw(telegram_html(depth + 1))
            if kind == "link":
                parts.append(f'<a href="https://example.org/?a=1&amp;b=2">{inner}</a>')
            else:
                tag = draw(st.sampled_from(_TAGS))
                parts.append(f"<{tag}>{inner}</{tag}>")
    return "".join(parts)


def _squeeze(text: str) -> str:
    return "".join(text.split())


class TestSplit:
    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    # Room for the deepest nesting drawn (a link and three tags) plus some text.
    @given(text=telegram_html(), limit=st.integers(min_value=200, max_value=600))
    def test_parts_fit_parse_and_keep_every_character(self, text: str, limit: int) -> None:
        """Whatever the nesting, each part is within the limit, parses on its own, and the
        parts together show the same text (whitespace aside)."""
        parts = split_message(text, limit=limit)
        for part in parts:
            assert utf16_length(part) <= limit
            parse_telegram_html(part)
        visible = [parse_telegram_html(p) for p in parts]
        if len(parts) > 1:
            visible = [v.split("\n", 1)[1] for v in visible]  # the (k/n) line
        assert _squeeze("".join(visible)) == _squeeze(parse_telegram_html(text))

    def test_short_text_is_one_part(self) -> None:
        """A text within the limit goes as it is, unnumbered."""
        assert split_message("<b>hi</b>\nthere") == ["<b>hi</b>\nthere"]
        assert split_message("  \n ") == []

    def test_cuts_at_lines_then_spaces(self) -> None:
        """Line boundaries first; a line too long for one part is cut at a space."""
        lines = [f"line {n} " + "word " * 10 for n in range(6)]
        parts = split_message("\n".join(lines), limit=150, html_mode=False)
        assert all(len(p) <= 150 for p in parts)
        assert parts[0].startswith("(1/")
        assert "line 0" in parts[0]
        assert all(p.splitlines()[-1].rstrip().endswith("word") for p in parts)
        long_line = "<b>" + "x" * 500 + "</b>"
        cut = split_message(long_line, limit=100)
        assert all(p.count("<b>") == p.count("</b>") == 1 for p in cut)
        assert _squeeze("".join(parse_telegram_html(p).split("\n", 1)[1] for p in cut)) == "x" * 500

    def test_emoji_count_double(self) -> None:
        """Characters outside the BMP count as two, as Telegram counts them."""
        parts = split_message("🔥" * 100, limit=100, html_mode=False)
        assert all(utf16_length(p) <= 100 for p in parts)
        assert "".join(p.split("\n", 1)[1] for p in parts) == "🔥" * 100

    @pytest.mark.parametrize(
        ("text", "error"),
        [
            ("a < b", "unescaped '<' at offset 2"),
            ("<b>open", "<b> is never closed"),
            ("<b><i>x</b></i>", "unmatched </b> at offset 7, expected </i>"),
        ],
    )
    def test_broken_html_is_refused(self, text: str, error: str) -> None:
        """HTML Telegram would refuse is refused here too, long or short."""
        with pytest.raises(MessageFormatError, match=re.escape(error)):
            split_message(text)


# --------------------------------------------------------------------------- webhooks


def webhook_config(url: str, extra: str = "") -> AlertingConfig:
    return parse_config(
        f"route: {{receiver: r}}\nreceivers:\n  - name: r\n    webhook_configs:\n"
        f"      - url: {url}\n" + textwrap.indent(textwrap.dedent(extra), " " * 8)
    )


class TestWebhook:
    async def test_alertmanager_webhook_body(self, http: httpx.AsyncClient) -> None:
        """The body has exactly Alertmanager's documented fields (version 4)."""
        async with HttpSink() as sink:
            firing, resolved = alert(1), alert(2, resolved=True)
            sent = notification((firing, resolved))
            result = await deliver(webhook_config(f"{sink.url}/hook"), http, sent)
        assert result.ok, result.error
        assert (result.attempts, result.messages) == (1, 1)
        (body,) = sink.bodies
        assert sink.paths == ["/hook"]
        assert set(body) == {
            "version",
            "groupKey",
            "truncatedAlerts",
            "status",
            "receiver",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "alerts",
        }
        assert body["version"] == "4"
        assert (body["groupKey"], body["status"], body["receiver"]) == ("route:{}", "firing", "r")
        assert body["truncatedAlerts"] == 0
        assert body["groupLabels"] == {"alertname": "AccountBanned"}
        assert body["externalURL"] == "http://tgfleet.local"
        first, second = body["alerts"]
        assert set(first) == {
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        }
        assert first == {
            "status": "firing",
            "labels": dict(firing.labels),
            "annotations": dict(firing.annotations),
            "startsAt": "2026-05-01T11:50:00Z",
            "endsAt": ZERO_TIME,
            "generatorURL": "http://tgfleet.local/alerts/1",
            "fingerprint": firing.fingerprint,
        }
        assert (second["status"], second["endsAt"]) == ("resolved", "2026-05-01T11:59:00Z")

    async def test_max_alerts(self, http: httpx.AsyncClient) -> None:
        """max_alerts keeps the first alerts and counts the others in truncatedAlerts."""
        async with HttpSink() as sink:
            sent = notification(tuple(alert(i) for i in range(5)))
            assert (await deliver(webhook_config(sink.url, "max_alerts: 2\n"), http, sent)).ok
        (body,) = sink.bodies
        assert body["truncatedAlerts"] == 3
        assert [a["labels"]["account"] for a in body["alerts"]] == ["acc-0", "acc-1"]

    async def test_retries_5xx_not_4xx(self, http: httpx.AsyncClient) -> None:
        """5xx and 429 are retried; a 4xx is final."""
        async with HttpSink() as sink:
            sink.statuses.extend([503, 429])
            ok = await deliver(webhook_config(sink.url), http, notification((alert(),)))
            sink.statuses.extend([404])
            refused = await deliver(webhook_config(sink.url), http, notification((alert(),)))
        assert ok.ok, ok.error
        assert ok.attempts == 3
        assert not refused.ok
        assert refused.attempts == 1
        assert refused.error == 'HTTP 404: {"status":404}'

    async def test_url_is_kept_secret(
        self, http: httpx.AsyncClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A webhook URL is a secret, as in Alertmanager: out of logs and results, also
        when read from url_file."""
        async with HttpSink() as sink:
            secret_url = f"{sink.url}/hooks/s3cr3t-p4th"
            url_file = tmp_path / "url"
            url_file.write_text(secret_url + "\n")
            url_file.chmod(0o600)
            config = parse_config(
                "route: {receiver: r}\nreceivers:\n  - name: r\n    webhook_configs:\n"
                f"      - url_file: {url_file}\n"
            )
            sink.statuses.extend([500])
            with caplog.at_level(logging.DEBUG):
                result = await deliver(config, http, notification((alert(),)))
        assert result.ok
        assert sink.paths == ["/hooks/s3cr3t-p4th"] * 2
        assert "HTTP Request: POST" in caplog.text
        assert "s3cr3t-p4th" not in caplog.text
        assert "s3cr3t-p4th" not in repr(result)


class EchoingHook(HttpSink):
    """A webhook receiver that knows no hook: it answers 404 (or ``status``) with the URL it
    was called at, its path and its query in the body, as many real ones do."""

    def __init__(self, status: int = 404, pad: int = 0) -> None:
        super().__init__()
        self.status = status
        self.pad = pad

    async def _receive(self, request: Request) -> Response:
        body = {
            "pad": "x" * self.pad,
            "error": f"no hook at {request.url}",
            "path": request.url.path,
            "query": request.url.query,
        }
        return JSONResponse(body, status_code=self.status)


class TestWebhookUrlRedaction:
    SECRET_PATH = "hooks/T0KEN-in-the-path"
    SECRET_QUERY = "key=Qu3ry-s3cret-value"

    @pytest.mark.parametrize(("status", "pad"), [(404, 0), (503, 0), (404, 135)])
    async def test_an_echoed_url_shows_scheme_and_host_only(
        self,
        http: httpx.AsyncClient,
        caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str],
        status: int,
        pad: int,
    ) -> None:
        """A receiver that echoes the URL, its path and its query in its error (a final 404,
        or 503s retried until the attempts run out): the result's error, its detail and the
        logs (httpx's request lines, tgfleet's retry and failure events) show
        ``http://host:port/…`` and never the path or the query (the URL in full was already
        hidden; its parts were not). With ``pad`` the error's 200-character cut falls inside
        the secret path: it is scrubbed before it is cut, so no half of it shows either."""
        configure_logging(level="DEBUG", json=True)
        try:
            async with EchoingHook(status, pad) as hook:
                url = f"{hook.url}/{self.SECRET_PATH}?{self.SECRET_QUERY}"
                with caplog.at_level(logging.DEBUG):
                    result = await deliver(webhook_config(url), http, notification((alert(),)))
        finally:
            configure_logging(level="INFO", json=False)
        captured = capfd.readouterr()
        shown = repr(result) + caplog.text + captured.out + captured.err
        assert not result.ok
        assert result.attempts == (1 if status == 404 else FAST.max_attempts)
        assert result.error is not None
        assert f"no hook at {hook.url}/…" in result.error
        assert "hooks/T0" not in result.error
        assert "alert.delivery.failed" in shown
        assert "HTTP Request: POST" in shown
        for secret in ("T0KEN-in-the-path", "Qu3ry-s3cret-value"):
            assert secret not in shown

    def test_redact_url(self) -> None:
        """Only the scheme, the host and the port of a secret URL are shown."""
        assert redact_url("https://user:pw@hooks.example.com/a/b?c=d") == (
            "https://hooks.example.com/…"
        )
        assert redact_url("http://[::1]:9000/x") == "http://[::1]:9000/…"
        assert redact_url("not a url") == "[redacted]"


class TestAlertmanagerReceiver:
    async def test_posts_api_v2_alerts(self, http: httpx.AsyncClient) -> None:
        """POST {url}/api/v2/alerts: labels, annotations, startsAt, generatorURL; endsAt
        for resolved alerts, and for firing ones only with firing_ttl."""
        async with HttpSink() as sink:
            config = parse_config(
                "route: {receiver: r}\nreceivers:\n  - name: r\n    alertmanager_configs:\n"
                f"      - url: {sink.url}/\n      - url: {sink.url}\n        firing_ttl: 1h\n"
            )
            receivers = build_receivers(config, http, policy=FAST)
            results = await receivers["r"].notify(notification((alert(1), alert(2, resolved=True))))
        assert [(r.ok, r.integration, r.detail["index"]) for r in results] == [
            (True, "alertmanager", 0),
            (True, "alertmanager", 1),
        ]
        assert sink.paths == ["/api/v2/alerts"] * 2
        plain, with_ttl = sorted(sink.bodies, key=lambda body: "endsAt" in body[0])
        firing, resolved = plain
        assert firing == {
            "labels": {"alertname": "AccountBanned", "severity": "critical", "account": "acc-1"},
            "annotations": {"summary": "Account acc-1 was banned"},
            "startsAt": "2026-05-01T11:50:00Z",
            "generatorURL": "http://tgfleet.local/alerts/1",
        }
        assert resolved["endsAt"] == "2026-05-01T11:59:00Z"
        assert with_ttl[0]["endsAt"] == "2026-05-01T13:00:00Z"

    async def test_bad_request_is_final(self, http: httpx.AsyncClient) -> None:
        """Alertmanager's 400 (an invalid alert) is not retried."""
        async with HttpSink() as sink:
            sink.statuses.extend([400])
            config = parse_config(
                "route: {receiver: r}\nreceivers:\n  - name: r\n    alertmanager_configs:\n"
                f"      - url: {sink.url}\n"
            )
            result = await deliver(config, http, notification((alert(),)))
        assert not result.ok
        assert result.attempts == 1


class TestReceiver:
    async def test_fans_out_and_isolates_failures(
        self, bot: FakeBotApi, http: httpx.AsyncClient
    ) -> None:
        """One result per integration, in order; one failing leaves the others alone."""
        async with HttpSink() as sink:
            config = parse_config(
                "route: {receiver: r}\nreceivers:\n  - name: r\n    telegram_configs:\n"
                f"      - {{api_url: '{bot.api_url}', bot_token: '{TOKEN}', chat_id: {CHAT}}}\n"
                f"      - {{api_url: '{bot.api_url}', bot_token: '{TOKEN}', chat_id: -7}}\n"
                f"    webhook_configs:\n      - url: {sink.url}\n"
            )
            receivers = build_receivers(config, http, policy=FAST)
            results = await receivers["r"].notify(notification((alert(),)))
        assert [(r.integration, r.ok) for r in results] == [
            ("telegram", True),
            ("telegram", False),
            ("webhook", True),
        ]
        assert len(bot.messages) == len(sink.bodies) == 1
        assert "telegram[0], telegram[1], webhook[0]" in repr(receivers["r"])
        assert receivers["r"].send_resolved is True

    async def test_default_receiver_sends_nothing(self, http: httpx.AsyncClient) -> None:
        """The default configuration's receiver has no integrations and no results."""
        receivers = build_receivers(default_config(), http)
        assert isinstance(receivers["default"], Receiver)
        assert await receivers["default"].notify(notification((alert(),), receiver="default")) == []

    async def test_success_metrics(self, bot: FakeBotApi, http: httpx.AsyncClient) -> None:
        """A delivery counts as sent, is timed, and moves the last-delivery time."""
        config = parse_config(
            "route: {receiver: metrics}\nreceivers:\n  - name: metrics\n    telegram_configs:\n"
            f"      - {{api_url: '{bot.api_url}', bot_token: '{TOKEN}', chat_id: {CHAT}}}\n"
        )
        before = time.time()
        sent = counter("metrics", "sent")
        timed = REGISTRY.get_sample_value(
            "tgfleet_alert_notification_duration_seconds_count", {"receiver": "metrics"}
        )
        await deliver(config, http, notification((alert(),), receiver="metrics"))
        assert counter("metrics", "sent") == sent + 1
        assert (
            REGISTRY.get_sample_value(
                "tgfleet_alert_notification_duration_seconds_count", {"receiver": "metrics"}
            )
            == (timed or 0) + 1
        )
        last = REGISTRY.get_sample_value("tgfleet_alert_last_delivery_timestamp_seconds")
        assert last is not None
        assert last >= before
