"""A real Alertmanager: our Alertmanager receiver posts alerts to it, and its own Telegram
notifier (``telegram_configs``) delivers them to our fake Bot API; ``amtool`` checks the
shipped deploy/alertmanager/alertmanager.yml.

Needs the Debian package ``prometheus-alertmanager`` (``/usr/bin/prometheus-alertmanager``
and ``amtool``; upstream names the server ``alertmanager``): skipped with a reason when it
is missing, unless ``CI=true`` (``.ci/run`` installs it, and there a missing binary fails).
Alertmanager has ``telegram_configs`` since 0.24; Debian's package was 0.25 when this was
written, which lacks ``bot_token_file`` (0.26) and ``message_thread_id`` (0.28).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI
from tests.fakes.telegram_bot_api import FakeBotApi, SentMessage
from tests.harness import stop_process
from tgfleet.alert.config import parse_config
from tgfleet.alert.receivers import DeliveryPolicy, build_receivers
from tgfleet.alert.schemas import Alert, DeliveryResult, Notification

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
TOKEN = "5123456789:AAFake-alertmanager_token-0123456789"
CHAT = -1009876543210
START_TIMEOUT = 30.0
DELIVERY_TIMEOUT = 30.0
COMMAND_TIMEOUT = 60.0


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    package = "prometheus-alertmanager"
    if IN_CI:
        pytest.fail(f"CI=true but {' / '.join(names)} is missing: .ci/run installs {package}")
    pytest.skip(f"{' / '.join(names)} not installed (Debian package {package}; CI installs it)")


def _version(binary: str) -> tuple[int, int]:
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    found = re.search(r"version (\d+)\.(\d+)", output.stdout + output.stderr)
    assert found is not None, f"no version in: {output.stdout + output.stderr}"
    return int(found.group(1)), int(found.group(2))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def alertmanager(bot: FakeBotApi, workdir: Path) -> AsyncIterator[str]:
    """Alertmanager on loopback, its Telegram receiver pointed at ``bot``; yields its URL."""
    binary = _binary("prometheus-alertmanager", "alertmanager")
    if _version(binary) < (0, 24):
        pytest.fail(f"{binary} is older than 0.24 and has no telegram_configs")
    port = _free_port()
    config = workdir / "alertmanager.yml"
    config.write_text(
        f"""
route:
  receiver: telegram
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: telegram
    telegram_configs:
      - api_url: {bot.api_url}
        bot_token: "{TOKEN}"
        chat_id: {CHAT}
        parse_mode: HTML
        send_resolved: true
"""
    )
    log = workdir / "alertmanager.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: a single instance
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(START_TIMEOUT):
            while True:
                if process.returncode is not None:
                    pytest.fail(f"alertmanager exited: {log.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/-/ready", timeout=1)).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield url
    finally:
        await stop_process(process, 10)


def _notification(alerts: tuple[Alert, ...], at: datetime) -> Notification:
    return Notification(
        receiver="upstream",
        group_key="route:{}",
        group_labels={},
        status="firing" if any(a.ends_at is None for a in alerts) else "resolved",
        alerts=alerts,
        common_labels={},
        common_annotations={},
        at=at,
    )


async def _wait_for(bot: FakeBotApi, marker: str) -> SentMessage:
    async with asyncio.timeout(DELIVERY_TIMEOUT):
        while True:
            for message in bot.messages:
                if marker in message.visible_text:
                    return message
            await bot.wait_for_messages(len(bot.messages) + 1, within=DELIVERY_TIMEOUT)


async def test_alertmanager_delivers_our_alerts_to_telegram(tmp_path: Path) -> None:
    """Our alertmanager receiver POSTs alerts; Alertmanager groups them and its Telegram
    notifier sends its own message (firing, then resolved) to the fake Bot API, which
    checks the token, the chat and the HTML."""
    async with FakeBotApi(TOKEN, chats=[CHAT]) as bot, alertmanager(bot, tmp_path) as url:
        config = parse_config(
            "route: {receiver: upstream}\nreceivers:\n  - name: upstream\n"
            f"    alertmanager_configs:\n      - url: {url}\n        firing_ttl: 1h\n"
        )
        started = datetime.now(UTC) - timedelta(minutes=1)
        alerts = tuple(
            Alert(
                labels={"alertname": "AccountBanned", "account": account, "severity": "critical"},
                annotations={"summary": f"Account {account} was <banned>"},
                starts_at=started,
                generator_url="http://tgfleet.local/alerts",
            )
            for account in ("acc-1", "acc-2")
        )
        async with httpx.AsyncClient() as http:
            receivers = build_receivers(config, http, policy=DeliveryPolicy(deadline=20))
            results = await receivers["upstream"].notify(_notification(alerts, datetime.now(UTC)))
            assert [r.ok for r in results] == [True], results
            firing = await _wait_for(bot, "Alerts Firing")
            assert (firing.chat_id, firing.parse_mode) == (CHAT, "HTML")
            for account in ("acc-1", "acc-2"):
                assert f"account = {account}" in firing.visible_text
                assert f"Account {account} was <banned>" in firing.visible_text

            ended = datetime.now(UTC) - timedelta(seconds=1)
            resolved = tuple(
                Alert(
                    labels=a.labels,
                    annotations=a.annotations,
                    starts_at=a.starts_at,
                    ends_at=ended,
                    generator_url=a.generator_url,
                )
                for a in alerts
            )
            results = await receivers["upstream"].notify(_notification(resolved, datetime.now(UTC)))
            assert results == [
                DeliveryResult(
                    ok=True,
                    receiver="upstream",
                    integration="alertmanager",
                    attempts=1,
                    messages=1,
                    detail={"index": 0, "status_code": 200},
                )
            ]
            await _wait_for(bot, "Alerts Resolved")
        assert all(request.status == 200 for request in bot.requests)


def test_amtool_checks_the_shipped_config(tmp_path: Path) -> None:
    """amtool accepts deploy/alertmanager/alertmanager.yml. Before 0.26 Alertmanager has no
    bot_token_file, so an older amtool checks a copy with bot_token in its place (nothing
    else changed)."""
    amtool = _binary("amtool")
    checked = DEPLOY_CONFIG
    if _version(amtool) < (0, 26):
        text = DEPLOY_CONFIG.read_text()
        assert "bot_token_file:" in text
        checked = tmp_path / "alertmanager.yml"
        checked.write_text(re.sub(r"bot_token_file: .*", 'bot_token: "1:placeholder"', text))
    result = subprocess.run(
        [amtool, "check-config", str(checked)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output
    assert "2 inhibit rules" in output
    assert "3 receivers" in output


def test_amtool_refuses_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: amtool refuses a route to an unknown receiver."""
    amtool = _binary("amtool")
    broken = tmp_path / "broken.yml"
    broken.write_text("route: {receiver: nobody}\nreceivers: [{name: somebody}]\n")
    result = subprocess.run(
        [amtool, "check-config", str(broken)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr
