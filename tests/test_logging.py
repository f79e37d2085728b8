"""Logs carry what operators need and never a password, token or hash."""

from __future__ import annotations

import httpx
import pytest
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.factories import DEFAULT_PASSWORD, user_with_role
from tgfleet.auth.service import Security
from tgfleet.logging import REDACTED, configure_logging, redact_secrets


def test_redaction_processor() -> None:
    event = redact_secrets(
        None, "info", {"event": "x", "password": "p", "api_token": "t", "user": "u"}
    )
    assert event == {"event": "x", "password": REDACTED, "api_token": REDACTED, "user": "u"}


async def test_login_flow_logs_no_secrets(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    security: Security,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A login, a failed login, a token and its use: the logs hold none of the secrets."""
    configure_logging(level="DEBUG", json=True)
    try:
        admin = await user_with_role(client, sessionmaker, security, "admin", username="root")
        await client.post(
            "/api/v1/auth/login", json={"username": "root", "password": "the-wrong-password"}
        )
        created = await client.post(
            "/api/v1/auth/tokens", json={"name": "t"}, headers=admin.headers
        )
        secret = created.json()["token"]
        await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"})
        structlog.get_logger().info("probe", password="hunter2-hunter2")
    finally:
        configure_logging(level="INFO", json=False)
    captured = capfd.readouterr()
    logs = captured.out + captured.err
    assert '"event": "auth.login"' in logs or "auth.login" in logs
    for secret_value in (
        DEFAULT_PASSWORD,
        "the-wrong-password",
        admin.token,
        secret,
        "hunter2-hunter2",
    ):
        assert secret_value not in logs
