"""SQL parameters never reach the logs (issue 14 item 8): not at DEBUG, not in an error's
text, in either log format, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import structlog
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tests.factories import user_with_role
from tgfleet.kit.db import create_engine, create_sessionmaker, unit_of_work
from tgfleet.logging import configure_logging
from tgfleet.models import ApiToken, Role, User

MARKER = "s3cret-parameter-value"


@pytest.fixture(params=[False, True], ids=["console", "json"])
def debug_logs(request: pytest.FixtureRequest, capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Logging as ``TGFLEET_LOG_LEVEL=DEBUG`` configures it, in the console or JSON format,
    to the captured stderr (``capfd`` first: the handler keeps the stream it finds)."""
    capfd.readouterr()
    configure_logging(level="DEBUG", json=request.param)
    yield
    configure_logging(level="INFO", json=False)


@pytest.mark.usefixtures("debug_logs")
async def test_debug_logs_hold_no_hash_or_secret(
    app: FastAPI, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    """At DEBUG, a login, a token's creation and its use leave neither the password, its
    argon2 hash, the token, the token's hash nor the JWT in the logs (the SQLite driver's
    DEBUG log used to print every statement with its parameters)."""
    admin = await user_with_role(client, app.state.sessionmaker, app.state.security, "admin")
    created = await client.post("/api/v1/auth/tokens", json={"name": "t"}, headers=admin.headers)
    assert created.status_code in {200, 201}, created.text
    secret = created.json()["token"]
    used = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"})
    assert used.status_code == 200, used.text
    async with unit_of_work(app.state.sessionmaker, deferred=True) as session:
        password_hash = await session.scalar(
            select(User.password_hash).where(User.username == admin.username)
        )
        token_hash = await session.scalar(select(ApiToken.token_hash))
    assert password_hash
    assert token_hash
    captured = capfd.readouterr()
    logs = captured.out + captured.err
    assert "auth.login" in logs  # the logs were captured
    for value in (admin.password, password_hash, secret, token_hash, admin.token):
        assert value not in logs


@pytest.mark.usefixtures("debug_logs")
async def test_integrity_error_is_logged_without_parameters(
    db_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """An IntegrityError logged with its traceback names the statement, never the values
    bound to it."""
    engine = create_engine(db_url)
    maker = create_sessionmaker(engine)

    async def duplicate() -> None:
        async with unit_of_work(maker) as session:
            for _ in range(2):
                session.add(Role(name="twice", description=MARKER, builtin=False, permissions=[]))
                await session.flush()

    try:
        with pytest.raises(IntegrityError) as caught:
            await duplicate()
        structlog.get_logger().exception("probe.failed", exc_info=caught.value)
    finally:
        await engine.dispose()
    assert MARKER not in str(caught.value)
    captured = capfd.readouterr()
    logs = captured.out + captured.err
    assert "probe.failed" in logs
    assert "IntegrityError" in logs
    assert MARKER not in logs
