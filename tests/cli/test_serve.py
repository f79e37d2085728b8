"""``tgfleet run`` and ``tgfleet worker`` start-up, as real processes on both databases:
the port is bound before anything is created or announced, and production refuses to run
accounts without the operator's Telegram app."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from sqlalchemy import text

from tests.cli._process import busy_port, free_port, serving, tgfleet, tgfleet_env
from tgfleet.kit.db import create_engine


async def _users(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(text('SELECT count(*) FROM "user"'))).scalar_one())
    finally:
        await engine.dispose()


class TestRunBindsFirst:
    async def test_busy_port_is_one_line_and_creates_nothing(
        self, db_url: str, tmp_path: Path
    ) -> None:
        """A port another process holds: one line naming the address and the fix, exit 2,
        and no admin created or password printed (they were, before the bind failed)."""
        env = tgfleet_env(db_url, tmp_path / "data")
        with busy_port() as port:
            result = tgfleet(env, "run", "--port", str(port))
        assert result.returncode == 2
        expected = (
            f"error: cannot listen on 127.0.0.1:{port}: address already in use "
            "(pick another with --port or TGFLEET_PORT)"
        )
        assert result.stderr.strip().splitlines() == [expected]
        assert "password" not in result.stdout.lower()
        assert await _users(db_url) == 0

    def test_serving_on_is_printed_once_it_answers(self, db_url: str, tmp_path: Path) -> None:
        """The moment "serving on" is printed the API answers (it was printed ~3 s before
        uvicorn listened), and the admin's password came before it."""
        env = tgfleet_env(db_url, tmp_path / "data")
        port = free_port()
        with serving(env, tmp_path / "stderr.log", "run", "--port", str(port)) as server:
            line = server.wait_for_line("serving on")
            match = re.search(r"http://(\S+)", line)
            assert match is not None
            response = httpx.get(f"http://{match.group(1)}/livez", timeout=5.0)
            assert response.status_code == 200
            assert match.group(1) == f"127.0.0.1:{port}"
            assert any("shown only this once" in earlier for earlier in server.lines)


class TestProductionNeedsTelegramApp:
    def test_run_and_worker_refuse_without_api_id(self, db_url: str, tmp_path: Path) -> None:
        """TGFLEET_ENV=prod without TGFLEET_TELEGRAM_API_ID/HASH: `run` and `worker` exit 2
        with one line (they started clients on a placeholder app), before any other check."""
        env = tgfleet_env(db_url, tmp_path / "data", TGFLEET_ENV="prod")
        for args in (("run",), ("worker",)):
            result = tgfleet(env, *args)
            assert result.returncode == 2, args
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, (args, result.stderr)
            assert "TGFLEET_TELEGRAM_API_ID" in lines[0]
            assert "TGFLEET_TELEGRAM_API_HASH" in lines[0]

    def test_what_runs_no_accounts_is_not_refused(self, db_url: str, tmp_path: Path) -> None:
        """`run --no-worker` runs no client, so it needs no Telegram app: it goes on (to
        the busy port here, which stops it before it serves); with the app set, `run` goes
        on too."""
        env = tgfleet_env(db_url, tmp_path / "data", TGFLEET_ENV="prod")
        with busy_port() as port:
            api_only = tgfleet(env, "run", "--no-worker", "--port", str(port))
            env |= {"TGFLEET_TELEGRAM_API_ID": "12345", "TGFLEET_TELEGRAM_API_HASH": "0" * 32}
            with_app = tgfleet(env, "run", "--port", str(port))
        for result in (api_only, with_app):
            assert result.returncode == 2
            assert "cannot listen" in result.stderr
            assert "TELEGRAM_API_ID" not in result.stderr
