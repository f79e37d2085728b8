"""Alerting end to end in the application: account states in the database become alerts,
the evaluator groups them, the Telegram receiver delivers to a local Bot API server — what
was delivered, in what order, how many times; across a restart; and the token never shows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import make_settings
from tests.factories import make_fleet, report_states
from tests.fakes.telegram_bot_api import FakeBotApi
from tests.harness import telegram_alerting
from tgfleet.app import create_app
from tgfleet.kit.clock import utcnow
from tgfleet.kit.db import unit_of_work
from tgfleet.models import AccountState

pytestmark = pytest.mark.timeout(90)

TOKEN = "4242:SECRET-bot-token-never-logged"
CHAT = -1001234567890


def _config(bot: FakeBotApi, group_wait: str = "1s") -> str:
    return telegram_alerting(
        bot.api_url, TOKEN, CHAT, group_wait=group_wait, extra=["send_resolved: true"]
    )


@asynccontextmanager
async def _app(db_url: str, data_dir: Path, config: Path) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        db_url,
        data_dir,
        alerting_enabled=True,
        alerting_config=config,
        alerting_evaluation_interval_seconds=0.2,
        alerting_online_ratio_threshold=0.0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def test_fifty_quarantines_one_message_then_one_resolved_notice(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeBotApi(TOKEN, chats={CHAT}) as bot:
        config = tmp_path / "alerting.yml"
        config.write_text(_config(bot))
        async with _app(db_url, tmp_path / "data", config) as app:
            ids = await make_fleet(app.state.sessionmaker, 50, running=False)
            await report_states(
                app.state.sessionmaker, ids, AccountState.QUARANTINED, reason="session_revoked"
            )
            [first] = await bot.wait_for_messages(1, within=15)
            await asyncio.sleep(2.5)  # more flushes: nothing new, nothing repeated
            assert len(bot.messages) == 1
            for i in range(50):
                assert f"acc{i:03d}" in first.visible_text
            assert first.chat_id == CHAT
            await report_states(
                app.state.sessionmaker, ids, AccountState.STOPPED, reason="operator"
            )
            messages = await bot.wait_for_messages(2, within=15)
            assert "RESOLVED" in messages[1].visible_text.upper()
            await asyncio.sleep(2.5)
            assert len(bot.messages) == 2
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    assert TOKEN.split(":")[1] not in out.out + out.err


async def test_a_restart_in_the_middle_neither_loses_nor_duplicates(
    db_url: str, tmp_path: Path
) -> None:
    async with FakeBotApi(TOKEN, chats={CHAT}) as bot:
        config = tmp_path / "alerting.yml"
        # A group wait long enough to stop the process inside it.
        config.write_text(_config(bot, group_wait="3s"))
        async with _app(db_url, tmp_path / "data", config) as app:
            ids = await make_fleet(app.state.sessionmaker, 3, running=False)
            await report_states(
                app.state.sessionmaker, ids[:2], AccountState.QUARANTINED, reason="banned"
            )
            await asyncio.sleep(1.0)  # evaluated and stored, not sent yet
            assert bot.messages == []
        async with _app(db_url, tmp_path / "data", config) as app:
            [first] = await bot.wait_for_messages(1, within=15)  # not lost
            assert "acc000" in first.visible_text
            assert "acc001" in first.visible_text
        async with _app(db_url, tmp_path / "data", config) as app:
            await asyncio.sleep(5)  # another restart: told already, so not again
            assert len(bot.messages) == 1
            await report_states(
                app.state.sessionmaker, ids[2:], AccountState.QUARANTINED, reason="banned"
            )
            messages = await bot.wait_for_messages(2, within=15)
            assert "acc002" in messages[1].visible_text


async def test_a_silence_from_the_api_mutes_and_the_test_endpoint_delivers(
    db_url: str, tmp_path: Path
) -> None:
    async with FakeBotApi(TOKEN, chats={CHAT}) as bot:
        config = tmp_path / "alerting.yml"
        config.write_text(_config(bot))
        async with _app(db_url, tmp_path / "data", config) as app:
            from tgfleet.alert import service as alert_service
            from tgfleet.audit.schemas import AuditContext

            async with unit_of_work(app.state.sessionmaker) as session:
                await alert_service.create_silence(
                    session,
                    AuditContext(actor="test"),
                    matchers=[{"name": "alertname", "value": "AccountBanned"}],
                    starts_at=None,
                    ends_at=utcnow().replace(year=utcnow().year + 1),
                    comment="known mass ban",
                )
            ids = await make_fleet(app.state.sessionmaker, 2, running=False)
            await report_states(
                app.state.sessionmaker, ids[:1], AccountState.QUARANTINED, reason="banned"
            )
            await report_states(
                app.state.sessionmaker, ids[1:], AccountState.QUARANTINED, reason="session_revoked"
            )
            [only] = await bot.wait_for_messages(1, within=15)
            await asyncio.sleep(2.5)
            assert len(bot.messages) == 1
            assert "acc001" in only.visible_text
            assert "acc000" not in only.visible_text
            results = await app.state.alerting.send_test("ops", actor="test")
            assert [r.ok for r in results] == [True]
            assert "TestNotification" in bot.messages[-1].visible_text or (
                "test" in bot.messages[-1].visible_text.lower()
            )


async def test_429_retry_after_is_obeyed(db_url: str, tmp_path: Path) -> None:
    async with FakeBotApi(TOKEN, chats={CHAT}) as bot:
        config = tmp_path / "alerting.yml"
        config.write_text(_config(bot))
        bot.fail_next(429, retry_after=2)
        async with _app(db_url, tmp_path / "data", config) as app:
            ids = await make_fleet(app.state.sessionmaker, 1, running=False)
            await report_states(
                app.state.sessionmaker, ids, AccountState.QUARANTINED, reason="banned"
            )
            [message] = await bot.wait_for_messages(1, within=20)
            refused = [r for r in bot.requests if r.status == 429]
            assert len(refused) == 1
            assert message.at - refused[0].at >= 2.0
            await asyncio.sleep(2.5)
            assert len(bot.messages) == 1  # delivered once, not once per try


async def test_the_api_lists_alerts_and_silences(db_url: str, tmp_path: Path) -> None:
    async with FakeBotApi(TOKEN, chats={CHAT}) as bot:
        config = tmp_path / "alerting.yml"
        config.write_text(_config(bot))
        async with _app(db_url, tmp_path / "data", config) as app:
            from tests.factories import user_with_role

            ids = await make_fleet(app.state.sessionmaker, 2, running=False)
            await report_states(
                app.state.sessionmaker, ids, AccountState.QUARANTINED, reason="session_revoked"
            )
            await bot.wait_for_messages(1, within=15)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                admin = await user_with_role(
                    http, app.state.sessionmaker, app.state.security, "admin"
                )
                headers = admin.headers
                listed = (await http.get("/api/v1/alerts", headers=headers)).json()
                assert {a["labels"]["account"] for a in listed["items"]} == {"acc000", "acc001"}
                assert all(a["status"] == "firing" for a in listed["items"])
                created = await http.post(
                    "/api/v1/silences",
                    headers=headers,
                    json={
                        "matchers": [{"name": "account", "value": "acc000"}],
                        "ends_at": utcnow().replace(year=utcnow().year + 1).isoformat(),
                        "comment": "replacing it",
                    },
                )
                assert created.status_code == 201, created.text
                silence_id = created.json()["id"]
                await asyncio.sleep(0.6)  # the evaluator reloads silences each tick
                listed = (await http.get("/api/v1/alerts", headers=headers)).json()
                muted = {a["labels"]["account"]: a["silenced_by"] for a in listed["items"]}
                assert muted == {"acc000": [silence_id], "acc001": []}
                expired = await http.delete(f"/api/v1/silences/{silence_id}", headers=headers)
                assert expired.json()["state"] == "expired"
                unknown = await http.post(
                    "/api/v1/alerts/test", headers=headers, json={"receiver": "nobody"}
                )
                assert unknown.status_code == 404
                assert "ops" in unknown.json()["detail"]
                history = (await http.get("/api/v1/alerts/history", headers=headers)).json()
                assert history["notifications"][0]["ok"] is True
