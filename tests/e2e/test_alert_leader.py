"""Exactly one alert evaluator: two real ``tgfleet api`` processes on PostgreSQL, one leads
(advisory lock); its notifications reach a local Bot API once; kill -9 the leader and the
other evaluates within 15 s, consulting the shared notification log (no resend)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_VAULT_KEY
from tests.factories import make_fleet, report_states
from tests.fakes.telegram_bot_api import FakeBotApi
from tests.harness import Proc, free_port, telegram_alerting
from tgfleet.kit.db import create_engine, create_sessionmaker
from tgfleet.models import AccountState

pytestmark = [
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
    pytest.mark.timeout(150),
]

TOKEN = "777:leader-test-token"
CHAT = -1009999
LEADER = re.compile(r"alert\.leader\b")


async def test_one_leader_and_a_takeover_within_15_s(db_url: str, tmp_path: Path) -> None:
    engine = create_engine(db_url, pool_size=2, max_overflow=1)
    maker = create_sessionmaker(engine)
    procs: list[Proc] = []
    try:
        async with FakeBotApi(TOKEN, chats={CHAT}) as bot:
            config = tmp_path / "alerting.yml"
            config.write_text(telegram_alerting(bot.api_url, TOKEN, CHAT))

            def api(name: str) -> Proc:
                data = tmp_path / name
                data.mkdir(mode=0o700)
                env = {
                    "TGFLEET_ENV": "test",
                    "TGFLEET_DATABASE_URL": db_url,
                    "TGFLEET_VAULT_KEY": TEST_VAULT_KEY,
                    "TGFLEET_DATA_DIR": str(data),
                    "TGFLEET_LOG_LEVEL": "INFO",
                    "TGFLEET_TELEGRAM_DCS": "",
                    "TGFLEET_ALERTING_CONFIG": str(config),
                    "TGFLEET_ALERTING_EVALUATION_INTERVAL_SECONDS": "0.5",
                    "TGFLEET_ALERTING_ONLINE_RATIO_THRESHOLD": "0",
                    "TGFLEET_ARGON2_TIME_COST": "1",
                    "TGFLEET_ARGON2_MEMORY_KIB": "1024",
                    "TGFLEET_ARGON2_PARALLELISM": "1",
                    "PATH": "/usr/bin:/bin",
                }
                argv = [sys.executable, "-m", "tgfleet", "api", "--host", "127.0.0.1"]
                argv += ["--port", str(free_port())]
                proc = Proc(name, argv, env, tmp_path / f"{name}.log")
                procs.append(proc)
                return proc

            first = api("a1")
            await first.start()
            await first.wait_line(LEADER, 60)
            second = api("a2")
            await second.start()
            await second.wait_line(re.compile(r"tgfleet serving"), 60)
            await asyncio.sleep(6)  # past its first tries for the lock
            assert not LEADER.search(second.output()), second.tail()

            ids = await make_fleet(maker, 4)
            await report_states(maker, ids[:3], AccountState.QUARANTINED, reason="banned")
            [message] = await bot.wait_for_messages(1, within=20)
            await asyncio.sleep(3)
            assert len(bot.messages) == 1, "both processes notified"
            for name in ("acc000", "acc001", "acc002"):
                assert name in message.visible_text

            killed = time.monotonic()
            await first.kill()
            await second.wait_line(LEADER, 15)
            took = time.monotonic() - killed
            print(f"takeover after kill -9: {took:.1f} s")
            await asyncio.sleep(3)  # the new leader re-reads the alerts: told already
            assert len(bot.messages) == 1
            await report_states(maker, ids[3:], AccountState.QUARANTINED, reason="banned")
            messages = await bot.wait_for_messages(2, within=20)
            assert "acc003" in messages[1].visible_text
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                await proc.kill()
        await engine.dispose()
